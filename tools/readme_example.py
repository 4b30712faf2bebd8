"""Copy the committed example table (docs/example/table_synthetic.md) into README.md's
example block. Regenerate the file first (README, "Tables and figures"):

    python -m bench run --models pase,mult
    python -m bench run --models pase --set use_sgm=false
    python -m bench table --datasets synthetic --format md --out docs/example
    python tools/readme_example.py

The README's figure, docs/img/contributions_synthetic_pase.png, comes from the same results:

    python -m bench figure contributions --model pase --out docs/img
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "docs/example/table_synthetic.md"
# torch.backends.cpu.get_cpu_capability() where SOURCE was made (an AMD EPYC): CPUs with wider vectors
# (AVX512) run other kernel code paths, which round differently, so the numbers reproduce exactly only here
CPU_CAPABILITY = "AVX2"
# the README's commands whose results the example shows, then the one that writes SOURCE
COMMANDS = ["python -m bench run --models pase,mult",
            "python -m bench run --models pase --set use_sgm=false",
            "python -m bench table --datasets synthetic --format md --out docs/example"]
BLOCK = re.compile(r"(<!-- example-table: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /example-table -->)", re.DOTALL)


def readme_block(readme: str) -> tuple[str, str]:
    """(the file the README's example block names, the block's text)."""
    match = BLOCK.search(readme)
    if match is None:
        raise ValueError("README.md: no `<!-- example-table: PATH -->` ... `<!-- /example-table -->` block")
    return match["path"], match["body"]


def with_block(readme: str, body: str) -> str:
    """README text with the example block's text replaced by `body`."""
    readme_block(readme)  # the block must exist
    return BLOCK.sub(lambda m: m[1] + body.rstrip("\n") + "\n" + m[4], readme, count=1)


def main() -> int:
    readme = ROOT / "README.md"
    path, _ = readme_block(readme.read_text())
    readme.write_text(with_block(readme.read_text(), (ROOT / path).read_text()))
    print(f"README.md: example block copied from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
