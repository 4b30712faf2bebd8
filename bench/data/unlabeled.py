"""Semi-IIN's unlabeled clips (source "unlabeled_clips"): `unlabeled.npz` with float arrays
'text', 'audio' and 'vision' (N, T, width) in the labeled data's feature views, checked
before training and handed to the self-training stage's `on_stage_start` (`state.stage_data`)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.base import DataError
from models.semi_iin import UNLABELED_FILE, UNLABELED_KEYS


class UnlabeledDataError(DataError):
    """The self-training stage was asked for but its unlabeled features are missing or unusable."""


def _header_shapes(path: Path, need: str) -> dict[str, tuple[int, ...]]:
    """The shape of each array in the .npz, read from the headers only."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [k for k in UNLABELED_KEYS if f"{k}.npy" not in names]
            if missing:
                raise UnlabeledDataError(str(path), f"{need}; {path.name} lacks {', '.join(repr(k) for k in missing)}",
                                         key=",".join(missing))
            shapes = {}
            for k in UNLABELED_KEYS:
                with z.open(f"{k}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shapes[k] = read(f)[0]
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        if isinstance(err, UnlabeledDataError):
            raise
        raise UnlabeledDataError(str(path), f"{need}; {path.name} is not a readable .npz file ({err})") from None
    return shapes


def check_unlabeled_dir(directory: str, dims: tuple[int, int, int]) -> Path:
    """The path of the unlabeled features file, or an error naming exactly what is needed."""
    path = Path(directory).expanduser() / UNLABELED_FILE
    need = (f"Semi-IIN's self-training stage (unlabeled_dir={directory}) needs {path} holding float arrays "
            f"'text' (N, T_t, {dims[0]}), 'audio' (N, T_a, {dims[1]}) and 'vision' (N, T_v, {dims[2]}): unlabeled "
            "clips with the labeled data's feature views and widths (pre-extracted text features, not token ids; "
            "any T, the model pads/truncates to seq_lens). The paper self-trains on 3,236 AMI clips with frozen "
            "RoBERTa-large/HuBERT-large/FabNet features, which msabench does not ship; without unlabeled_dir the "
            "model trains the supervised row only")
    if not path.is_file():
        raise UnlabeledDataError(str(path), f"{need}; {path} does not exist")
    shapes = _header_shapes(path, need)
    for k, width in zip(UNLABELED_KEYS, dims, strict=True):
        s = shapes[k]
        if len(s) != 3 or s[2] != width or s[0] != shapes["text"][0] or s[0] == 0:
            raise UnlabeledDataError(str(path), f"{need}; '{k}' has shape {tuple(s)}", key=k)
    return path


def load(cfg: Any, directory: str) -> dict[str, torch.Tensor]:
    """The checked unlabeled clips {'text', 'audio', 'vision'} (float32) for a config's widths."""
    path = check_unlabeled_dir(directory, cfg.dims)
    with np.load(path) as f:
        return {k: torch.as_tensor(np.asarray(f[k], dtype=np.float32)) for k in UNLABELED_KEYS}
