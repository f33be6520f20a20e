"""Build the pinned real-code corpus: five wheels from `pip download --no-deps`, their Python files
unpacked into ~/.cache/sharpedges/corpus/<package>/ (or $SHARPEDGES_CORPUS).

    python benchmarks/corpus.py          # prints the corpus directory
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

PINNED = ("transformers==5.23.0", "timm==1.0.31", "x-transformers==2.31.10", "torchtune==0.6.1", "litgpt==0.5.13")
CACHE = Path(os.environ.get("SHARPEDGES_CORPUS_CACHE", Path.home() / ".cache" / "sharpedges"))


def corpus_dir() -> Path:
    return Path(os.environ.get("SHARPEDGES_CORPUS", CACHE / "corpus"))


def build(quiet: bool = True) -> Path:
    """Download (once) and unpack (once) the pinned wheels; returns the corpus directory. Safe to
    call from several processes at once (parallel test workers): one builds, the others wait."""
    target = corpus_dir()
    done = target / ".complete"
    if done.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".build.lock", "w") as lock:
        _exclusive(lock)
        if not done.exists():
            _build(target, done)
    if not quiet:
        print(f"corpus ready in {target}", file=sys.stderr)
    return target


def _exclusive(lock) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: builds are not run in parallel there
        return
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)


def _build(target: Path, done: Path) -> None:
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [
        p
        for p in PINNED
        if not list(wheels.glob(p.split("==")[0].replace("-", "_") + "-" + p.split("==")[1] + "-*.whl"))
    ]
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *missing], check=True
        )
    for wheel in sorted(wheels.glob("*.whl")):
        package = wheel.name.split("-")[0]
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.endswith(".py") and ".dist-info/" not in member:
                    archive.extract(member, target / package)
    done.write_text("\n".join(PINNED) + "\n")


def python_files(root: Path | None = None) -> list[Path]:
    return sorted((root or corpus_dir()).rglob("*.py"))


if __name__ == "__main__":
    print(build(quiet=False))
