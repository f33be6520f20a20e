"""The floor: parse every file with libcst and nothing else, with the same process pool `check` uses.

    python benchmarks/parse_floor.py [--jobs N] [--metadata] DIR
--metadata also resolves libcst's position and qualified-name metadata (what TorchFix and Fixit pay).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

import libcst as cst


def parse(path: str) -> int:
    try:
        cst.parse_module(Path(path).read_bytes())
    except Exception:
        return 0
    return 1


def parse_with_metadata(path: str) -> int:
    from libcst.metadata import FullRepoManager, MetadataWrapper, PositionProvider, QualifiedNameProvider  # noqa: F401

    try:
        wrapper = MetadataWrapper(cst.parse_module(Path(path).read_bytes()))
        wrapper.resolve(PositionProvider)
        wrapper.resolve(QualifiedNameProvider)
    except Exception:
        return 0
    return 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--metadata", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (sorted)")
    args = parser.parse_args()
    files = sorted(str(p) for p in Path(args.root).rglob("*.py"))
    if args.limit:
        files = files[: args.limit]
    work = parse_with_metadata if args.metadata else parse
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            parsed = sum(pool.imap_unordered(work, files, chunksize=4))
    else:
        parsed = sum(map(work, files))
    print(f"parsed {parsed}/{len(files)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
