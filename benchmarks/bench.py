"""Benchmark `sharpedges check` against the bare-libcst-parse floor on the pinned real corpus, all in one run.

    python benchmarks/bench.py [--runs 3] [--quick] [--json out.json]
    python benchmarks/bench.py --compare REV [--runs 5] [--quick]

Every measurement is a whole process (wall time, CPU time of it and its workers, peak RSS), the median
of --runs runs. --quick uses a deterministic subset of the corpus for a fast look.

--compare REV answers "is this change faster or slower than REV?" where one run's ratio to the floor
moves by more than the change: it installs REV's sharpedges into a scratch folder and times the cold
all-rules one-process check of the working tree's code and of REV's in turn (ABAB...), so both see the
same machine, and prints each pair's ratio and their median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import build, python_files  # noqa: E402

MISSION = "SHP101,SHP201,SHP202,SHP301,SHP401,SHP501,SHP502"


def measure(command: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Run `command` in a fresh wrapper process so RUSAGE_CHILDREN covers only it and its workers."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - start\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': rc, 'wall': wall, 'cpu': u.ru_utime + u.ru_stime, 'rss_mib': u.ru_maxrss / 1024}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    return json.loads(out.stdout)


def median_of(runs: int, command: list[str], cwd: Path, before=None, env=None) -> dict:
    samples = []
    for _ in range(runs):
        if before:
            before()
        samples.append(measure(command, cwd, env))
    return {key: statistics.median(s[key] for s in samples) for key in ("wall", "cpu", "rss_mib")} | {
        "rc": samples[-1]["rc"]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 400-file subset")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--skip-metadata", action="store_true", help="skip the slow position+qualified-name reference")
    parser.add_argument(
        "--torchfix",
        type=Path,
        default=shutil.which("torchfix"),
        help="the torchfix 0.7.0 executable (install it in its own venv: it pins an older libcst)",
    )
    parser.add_argument("--compare", metavar="REV", help="time this tree's code against revision REV, in turn")
    args = parser.parse_args()

    corpus = build()
    files = python_files(corpus)
    work = Path(tempfile.mkdtemp(prefix="sharpedges-bench-"))
    target = work / "corpus"
    if args.quick:
        files = files[:: max(1, len(files) // 400)]
    for path in files:
        destination = target / path.relative_to(corpus)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    lines = sum(p.read_bytes().count(b"\n") for p in target.rglob("*.py"))
    cores = os.cpu_count() or 1
    cache = work / "cache"
    env = {"PYTHONDONTWRITEBYTECODE": ""}  # start-up counts with bytecode caching, as users have it
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sharpedges = [sys.executable, "-m", "sharpedges", "check", "--exit-zero", "--format", "json"]
    floor = [sys.executable, str(HERE / "parse_floor.py"), str(target)]

    def clear_cache():
        shutil.rmtree(cache, ignore_errors=True)

    touched = sorted(target.rglob("*.py"))[len(files) // 2]

    def touch_one():
        touched.write_text(touched.read_text() + f"\n# touched {time.time_ns()}\n")

    if args.compare:
        return compare(args.compare, args.runs, work, lines, len(files))

    rows: dict[str, dict] = {}
    run = lambda name, command, **kw: rows.__setitem__(name, median_of(args.runs, command, work, **kw))  # noqa: E731
    run("floor: libcst parse, 1 process", [*floor, "--jobs", "1"])
    run(f"floor: libcst parse, {cores} processes", [*floor, "--jobs", str(cores)])
    if not args.skip_metadata:
        sample = 200 if not args.quick else 50
        rows[f"reference: parse + positions + qualified names, 1 process, first {sample} files"] = median_of(
            1, [*floor, "--jobs", "1", "--metadata", "--limit", str(sample)], work
        )
        rows[f"reference: parse only, 1 process, first {sample} files"] = median_of(
            1, [*floor, "--jobs", "1", "--limit", str(sample)], work
        )
    run("check SHP101 only, cold, all cores", [*sharpedges, "--no-cache", "--select", "SHP101", "corpus"])
    run("check mission rules, cold, all cores", [*sharpedges, "--no-cache", "--select", MISSION, "corpus"])
    run("check all rules, cold, 1 process", [*sharpedges, "--no-cache", "--preview", "--jobs", "1", "corpus"])
    run("check all rules, cold, all cores", [*sharpedges, "--no-cache", "--preview", "corpus"])
    run(
        "check all rules, cold (cache written), all cores",
        [*sharpedges, "--preview", "--cache-dir", str(cache), "corpus"],
        before=clear_cache,
    )
    measure([*sharpedges, "--preview", "--cache-dir", str(cache), "corpus"], work)  # make sure it is warm
    run("check all rules, warm, all cores", [*sharpedges, "--preview", "--cache-dir", str(cache), "corpus"])
    run(
        "check all rules, warm, 1 process",
        [*sharpedges, "--preview", "--jobs", "1", "--cache-dir", str(cache), "corpus"],
    )
    run(
        "check all rules, warm + one file touched, all cores",
        [*sharpedges, "--preview", "--cache-dir", str(cache), "corpus"],
        before=touch_one,
    )
    if args.torchfix:
        run("TorchFix 0.7.0, all cores", [str(args.torchfix), "corpus"])
    small = work / "small.py"
    small.write_text("import torch\n\ndef f(x):\n    return torch.softmax(x @ x.transpose(-2, -1) / 8, dim=-1)\n")
    run("start-up: python -c pass", [sys.executable, "-c", "pass"], env=env)
    run('start-up: python -c "import libcst"', [sys.executable, "-c", "import libcst"], env=env)
    run("start-up: sharpedges check small.py", [*sharpedges[:4], "small.py"], env=env)

    print(
        f"\ncorpus: {len(files)} files, {lines:,} lines; "
        f"machine: {cores} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; median of {args.runs} run(s)\n"
    )
    print(f"| {'measurement':62} | wall s | CPU s | peak RSS MiB | lines/s |")
    print(f"|{'-' * 64}|-------:|------:|-------------:|--------:|")
    for name, row in rows.items():
        rate = f"{lines / row['wall']:,.0f}" if "start-up" not in name and "reference" not in name else ""
        print(f"| {name:62} | {row['wall']:6.2f} | {row['cpu']:5.1f} | {row['rss_mib']:12.0f} | {rate:>7} |")

    def ratio(a: str, b: str) -> float:
        return rows[a]["wall"] / rows[b]["wall"]

    ratios = {
        "cold all rules / parse floor (all cores), target <= 1.0": ratio(
            "check all rules, cold, all cores", f"floor: libcst parse, {cores} processes"
        ),
        "cold all rules / parse floor (1 process), target <= 1.0": ratio(
            "check all rules, cold, 1 process", "floor: libcst parse, 1 process"
        ),
        "warm / cold (all cores), target <= 0.05": ratio(
            "check all rules, warm, all cores", "check all rules, cold, all cores"
        ),
        "start-up / import libcst, target <= 1.5": ratio(
            "start-up: sharpedges check small.py", 'start-up: python -c "import libcst"'
        ),
        "mission rules / SHP101 only, target <= 1.3": ratio(
            "check mission rules, cold, all cores", "check SHP101 only, cold, all cores"
        ),
        "all rules / mission rules, target <= 1.5": ratio(
            "check all rules, cold, all cores", "check mission rules, cold, all cores"
        ),
    }
    if "TorchFix 0.7.0, all cores" in rows:
        ratios["TorchFix / check all rules (all cores), target >= 20"] = ratio(
            "TorchFix 0.7.0, all cores", "check all rules, cold, all cores"
        )
    print()
    for name, value in ratios.items():
        print(f"- {name}: {value:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "files": len(files),
                "lines": lines,
                "cores": cores,
                "runs": args.runs,
                "python": platform.python_version(),
                "rows": rows,
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


def install_revision(revision: str, folder: Path) -> Path:
    """REV's package, built from `git archive` and installed (no dependencies) into `folder/site`."""
    source, site = folder / "source", folder / "site"
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", revision], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
    )
    return site


def compare(revision: str, runs: int, work: Path, lines: int, files: int) -> int:
    """The cold all-rules one-process check, this tree's code and REV's in turn."""
    site = install_revision(revision, work / "revision")
    command = [sys.executable, "-m", "sharpedges", "check", "--exit-zero", "--format", "json", "--no-cache"]
    command += ["--preview", "--jobs", "1", "corpus"]
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(measure(command, work)["wall"])
        theirs.append(measure(command, work, env={"PYTHONPATH": str(site)})["wall"])
    print(f"\ncorpus: {files} files, {lines:,} lines; cold, all rules, 1 process; {runs} pair(s), in turn\n")
    print("| pair | this tree s | " + f"{revision} s | ratio |")
    print("|---:|---:|---:|---:|")
    for number, (a, b) in enumerate(zip(ours, theirs, strict=True), 1):
        print(f"| {number} | {a:.2f} | {b:.2f} | {a / b:.3f} |")
    median = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    print(f"\n- this tree / {revision}, median of the pairs: {median:.3f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
