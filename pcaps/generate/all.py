"""Make every sample capture again: runs each ``*_gen.py`` generator in this folder in turn."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generators() -> list[str]:
    return sorted(f"pcaps.generate.{p.stem}" for p in HERE.glob("*_gen.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE.parent)
    args = parser.parse_args(argv)
    failed = []
    for module in generators():
        print(f"== {module}", flush=True)
        if subprocess.call([sys.executable, "-m", module, "--out", str(args.out)]) != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
