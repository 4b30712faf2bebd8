"""Models from outside msabench: files included by path, and installed plugin packages.

By path: `--include PATH` (every command; repeatable), `MSABENCH_INCLUDE` (paths separated
by os.pathsep) and a sweep file's `include:` key. PATH is a `.py` file or a folder, whose
`.py` files (not those starting with `_`) load in name order. Each file is imported under a
private module name made from its resolved path (`msabench_plugin_<sha1[:8]>_<stem>`), so a
user's `models.py` or `bench.py` never shadows msabench's packages; a file loads once however
often it is named. The files loaded here load again in every process msabench starts
(`--jobs` workers, scheduler jobs, `perf` sessions): see `with_plugins`.

By entry point: installed packages that declare the group `msabench.models`; each entry
point's value is a module (or module:attr) whose import registers models (by convention the
entry point is named after its model). They are imported once, when the registry is first
read (models.registry, which owns them). One that fails to import is recorded and the others still load;
asking for the model named like it is then an error that names the entry point. Setting
MSABENCH_DISABLE_ENTRY_POINTS=1 skips them all (the test suite does, so an installed plugin
does not join its registry-wide tests).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from bench.config import OptionError

ENV_INCLUDE = "MSABENCH_INCLUDE"
logger = logging.getLogger(__name__)

_LOADED: dict[Path, str] = {}  # resolved file -> its module name, in load order


class PluginError(OptionError):
    """An include path that does not exist, or a plugin file that fails to load; the message
    names the path (or file and line) and where it was given (option, variable or sweep key)."""


# -- by path ---------------------------------------------------------------------------------------
def module_name(path: Path) -> str:
    """The private module name of a plugin file: unique per resolved path, never a package of ours."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    stem = re.sub(r"\W", "_", path.stem)
    return f"msabench_plugin_{digest}_{stem}"


def include_files(path: str, source: str, base: Optional[Path] = None) -> list[Path]:
    """The `.py` files `path` names (relative paths against `base`, else the working folder)."""
    given = Path(path).expanduser()
    full = (base / given if base is not None and not given.is_absolute() else given).resolve()
    if full.is_dir():
        files = sorted(f for f in full.glob("*.py") if not f.name.startswith("_"))
        if not files:
            raise PluginError(f"{source}: folder '{path}' holds no .py files to include")
        return files
    if not full.exists():
        raise PluginError(f"{source}: '{path}' does not exist (give a .py file or a folder of them)")
    if full.suffix != ".py":
        raise PluginError(f"{source}: '{path}' is not a .py file (give a .py file or a folder of them)")
    return [full]


def include(paths: Iterable[str], source: str, base: Optional[Path] = None) -> None:
    """Load every file the `paths` name; `source` says where they were given (for messages).
    Installed plugin packages load first, so a file that one of them imported is not loaded twice."""
    paths = list(paths)
    if paths:
        from models.registry import list_models

        list_models()  # built-in models and installed plugins registered first
    for path in paths:
        for file in include_files(path, source, base):
            load_file(file, source)


def load_file(path: Path, source: str) -> None:
    """Import one plugin file (once) under its private module name."""
    path = path.resolve()
    if path in _LOADED or _imported(path):
        return
    name = module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{source}: cannot import '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look it up there
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - any error in a user's file is reported with its place
        del sys.modules[name]
        raise PluginError(f"{_place(err, path)}: {type(err).__name__}: {_message(err)} "
                          f"(included by {source})") from err
    _LOADED[path] = name


def _imported(path: Path) -> bool:
    """Whether `path` is already imported as a module (e.g. by its installed package's entry point)."""
    files = (getattr(m, "__file__", None) for m in list(sys.modules.values()))
    return any(isinstance(f, str) and os.path.basename(f) == path.name and Path(f).resolve() == path for f in files)


def _place(err: BaseException, path: Path) -> str:
    """'file:line' of an error raised while importing `path`: a syntax error's own place, else the
    last line of `path` the traceback passes through."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno}"
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
    return f"{path}:{lines[-1]}" if lines else str(path)


def _message(err: BaseException) -> str:
    return err.msg if isinstance(err, SyntaxError) and err.msg else str(err)


def include_from_cli(paths: Optional[list[str]]) -> None:
    """The includes of a command: MSABENCH_INCLUDE's, then each `--include`'s."""
    include([p for p in os.environ.get(ENV_INCLUDE, "").split(os.pathsep) if p.strip()], ENV_INCLUDE)
    include(paths or [], "--include")


def loaded_files() -> tuple[str, ...]:
    """The plugin files loaded in this process, in load order."""
    return tuple(str(p) for p in _LOADED)


class WithPlugins:
    """`fn` for another process (a --jobs worker, a scheduler job, a perf session): when called
    there, it first loads the plugin files this process had loaded when it was made."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn, self.files = fn, loaded_files()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        include(self.files, "a plugin file included by the parent process")
        return self.fn(*args, **kwargs)


def plugin_models() -> list[str]:
    """The registered models that come from plugins (included files, entry points)."""
    from models.registry import get_model_entry, list_models

    return [n for n in list_models() if is_plugin(get_model_entry(n).builder)]


def is_plugin(builder: Callable[..., Any]) -> bool:
    """Whether a registered builder comes from outside msabench's `models` package."""
    return getattr(builder, "__module__", "").partition(".")[0] != "models"


def any_plugins() -> bool:
    """Whether this process has plugins to list: files included, or installed entry points."""
    from models.constants import entry_points

    return bool(_LOADED) or bool(entry_points())
