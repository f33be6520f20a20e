"""Recall on transformer bugs that shipped in real releases (benchmarks/shipped_bugs.yaml).

For each case the buggy and the fixed release are fetched with `pip download --no-deps` (cached
in ~/.cache/sharpedges/shipped_bugs, or $SHARPEDGES_SHIPPED_BUGS_CACHE) and the case's file in each
is checked with `python -m sharpedges check --preview --no-cache --select <rule>` of the
interpreter running this script (so: of the checkout installed in it). A case is caught when a
finding of its rule lands within its line range (give or take the YAML's `line_tolerance`); its
fixed release is quiet when that file has no finding of the rule at all. A case whose bug shows at
two places (a mask built in one method and consumed in another) lists the second in `also_lines`.

    python benchmarks/shipped_bugs.py                      # tuning part, then holdout counts
    python benchmarks/shipped_bugs.py --part tune --json
    python benchmarks/shipped_bugs.py --case x-transformers-rotary-on-values
    python benchmarks/shipped_bugs.py --part holdout --show-holdout-misses   # only at the very end
    python benchmarks/shipped_bugs.py --part holdout --verify   # admit a fresh round: runs no detector
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

DATA = Path(__file__).resolve().with_name("shipped_bugs.yaml")
CACHE = Path(os.environ.get("SHARPEDGES_SHIPPED_BUGS_CACHE", Path.home() / ".cache" / "sharpedges" / "shipped_bugs"))
PARTS = ("tune", "holdout")


HOLDOUT_ROUND = 9  # the round of cases held out now; see `holdout_rule` in the YAML


def is_held_out(round_: int) -> bool:
    """The holdout rule: a case is held out when it was added in the holdout round. The cases of that
    round were gathered and verified by reading both releases, before any detector ran on them.
    (Round 1's holdout, sha1(id) % 3 == 0, and rounds 2 and 3 were measured for the last time and then
    opened: see the YAML.)"""
    return round_ == HOLDOUT_ROUND


class ShippedBug(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    package: str = Field(min_length=1)
    buggy: str = Field(min_length=1, description="a release on PyPI that ships the bug")
    fixed: str = Field(min_length=1, description="a later release on PyPI where it is fixed")
    path: str = Field(min_length=1, description="the file inside the distribution, as in the wheel")
    fixed_path: str | None = Field(None, description="the file in the fixed release, where it moved")
    lines: tuple[int, int] = Field(description="first and last line of the bug in the buggy release")
    also_lines: list[tuple[int, int]] = Field(
        default_factory=list,
        description="other ranges where a finding also names this bug (where a value built at `lines` is consumed)",
    )
    rule: str = Field(pattern=r"^SHP[1-7]\d\d$")
    link: HttpUrl
    shape: str = Field(min_length=10)
    verified: str | None = Field(None, description="what was read in each release to confirm the case")
    round: int = Field(1, ge=1, le=HOLDOUT_ROUND, description="the round of gathering that added the case")
    holdout: bool

    @field_validator("path", "fixed_path")
    @classmethod
    def relative_python_file(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/") or not value.endswith(".py")):
            raise ValueError(f"{value!r} is not a relative path to a .py file")
        return value

    @model_validator(mode="after")
    def consistent(self) -> ShippedBug:
        for first, last in (self.lines, *self.also_lines):
            if not 1 <= first <= last:
                raise ValueError(f"{self.id}: {[first, last]} is not a 1-based line range")
        if self.buggy == self.fixed:
            raise ValueError(f"{self.id}: buggy and fixed are the same release")
        if self.holdout != is_held_out(self.round):
            expected = is_held_out(self.round)
            raise ValueError(f"{self.id}: holdout is {self.holdout}, but the holdout rule says {expected}")
        return self

    @property
    def family(self) -> str:
        return self.rule[:4] + "xx"

    @property
    def part(self) -> str:
        return "holdout" if self.holdout else "tune"


class ShippedBugs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    holdout_rule: str = Field(min_length=10)
    line_tolerance: int = Field(ge=0, le=10)
    cases: list[ShippedBug] = Field(min_length=1)

    @model_validator(mode="after")
    def unique(self) -> ShippedBugs:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"duplicate case id {case.id}")
            seen.add(case.id)
        return self


def load(path: Path = DATA) -> ShippedBugs:
    return ShippedBugs.model_validate(yaml.safe_load(path.read_text()))


# --- fetching ------------------------------------------------------------------------------------


def release_dir(package: str, version: str) -> Path:
    """The Python files of `package==version`, downloaded and unpacked once."""
    target = CACHE / f"{package}-{version}"
    if (target / ".complete").exists():
        return target
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", download, f"{package}=={version}"]
        if subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            # pip cannot take it: an sdist whose setup.py needs torch or CUDA to say what it needs
            # (xformers 0.0.3, equiformer-pytorch), or a wheel for no Python of this machine (torchvision
            # 0.14.1). Only its .py files are read, so the archive itself is fetched from the index.
            download_from_index(package, version, Path(download))
        archive = next(Path(download).iterdir())
        shutil.rmtree(target, ignore_errors=True)
        unpack_python_files(archive, target)
    (target / ".complete").write_text(archive.name + "\n")
    return target


INDEX = "https://pypi.org/simple"


def download_from_index(package: str, version: str, folder: Path) -> Path:
    """One archive of `package==version` from the index's JSON API (PEP 691), its sha256 checked."""
    name = re.sub(r"[-_.]+", "-", package).lower()
    request = urllib.request.Request(f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        chosen = pick_archive(json.load(response)["files"], package, version)
    with urllib.request.urlopen(chosen["url"], timeout=300) as response:
        data = response.read()
    expected = chosen.get("hashes", {}).get("sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{chosen['filename']}: sha256 does not match the index")
    target = folder / chosen["filename"]
    target.write_bytes(data)
    return target


def pick_archive(files: list[dict[str, Any]], package: str, version: str) -> dict[str, Any]:
    """The index entry to read `package==version` from: a pure wheel, else any wheel, else the sdist."""

    def name_and_version(filename: str) -> tuple[str, str]:
        if filename.endswith(".whl"):  # `name-1.0-py3-none-any.whl`: no dash inside the name or the version
            name, version = filename.split("-")[:2]
        else:  # `name-1.0.tar.gz`, `name-1.0.zip`
            name, _, version = filename.removesuffix(".zip").removesuffix(".tar.gz").rpartition("-")
        return re.sub(r"[-_.]+", "-", name).lower(), version

    wanted = (re.sub(r"[-_.]+", "-", package).lower(), version)
    mine = [f for f in files if name_and_version(f["filename"]) == wanted]
    if not mine:
        raise FileNotFoundError(f"{package}=={version}: no file on {INDEX}")
    return min(mine, key=lambda f: (not f["filename"].endswith("-none-any.whl"), not f["filename"].endswith(".whl")))


def unpack_python_files(archive: Path, target: Path) -> None:
    def safe(name: str) -> bool:
        return name.endswith(".py") and not name.startswith("/") and ".." not in name.split("/")

    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                if safe(name):
                    zipped.extract(name, target)
    else:
        with tarfile.open(archive) as tarred:
            members = [m for m in tarred.getmembers() if m.isfile() and safe(m.name)]
            # the members are plain files with safe relative names; the "data" filter (3.11.4+) checks again
            if hasattr(tarfile, "data_filter"):
                tarred.extractall(target, members=members, filter="data")
            else:
                tarred.extractall(target, members=members)


def locate(root: Path, path: str) -> Path:
    """`path` as in the wheel; an sdist nests it under `<name>-<version>/` (and maybe `src/`)."""
    for candidate in (root / path, *sorted(root.glob(f"*/{path}")), *sorted(root.glob(f"*/src/{path}"))):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path} not found in {root}")


def case_files(case: ShippedBug) -> tuple[Path, Path]:
    """The case's file in its buggy and in its fixed release."""
    return (
        locate(release_dir(case.package, case.buggy), case.path),
        locate(release_dir(case.package, case.fixed), case.fixed_path or case.path),
    )


FETCH_ERRORS = (subprocess.CalledProcessError, OSError, ValueError, StopIteration)  # one case, not the run


# --- admitting a case ------------------------------------------------------------------------------


def admission_problems(case: ShippedBug) -> list[str]:
    """What keeps a case out of the set, found without running any detector (so a fresh round can be
    checked before anyone learns how the rules fare on it): a release that cannot be fetched, the file
    missing from either release, lines outside the buggy file, or a file that is byte-identical in both
    releases (the fix is elsewhere, so no check of this file can tell them apart)."""
    try:
        buggy, fixed = case_files(case)
    except FETCH_ERRORS as exc:
        return [f"could not fetch: {exc}"]
    problems = []
    source = buggy.read_bytes()
    length = len(source.splitlines())
    for first, last in (case.lines, *case.also_lines):
        if last > length:
            problems.append(f"lines {first}-{last} lie outside {case.path} ({length} lines in {case.buggy})")
    if source == fixed.read_bytes():
        problems.append(f"{case.path} is byte-identical in {case.buggy} and {case.fixed}")
    return problems


# --- checking ------------------------------------------------------------------------------------


def project_of(located: Path, path: str) -> Path:
    """The directory a release's top-level package sits in (the wheel's root, an sdist's folder or its
    `src/`): where a user of that release would stand to run `sharpedges check`."""
    return located.parents[len(Path(path).parts) - 1]


def findings_by_file(rule: str, files: list[Path], project: Path) -> tuple[dict[Path, list[int]], dict[Path, str]]:
    """One `sharpedges check` run, from the release's project directory as a user would run it (so
    its imports resolve inside the project), for the files of one rule: the lines of its findings per
    file, and the files it could not check."""
    command = [
        sys.executable,
        "-m",
        "sharpedges",
        "check",
        "--preview",
        "--no-cache",
        "--exit-zero",
        "--select",
        rule,
        "--format",
        "json",
        *map(str, files),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=project)
    if completed.returncode not in (0, 2):
        raise RuntimeError(f"sharpedges failed on {rule}: {completed.stderr.strip()[-500:]}")
    report = json.loads(completed.stdout)
    lines: dict[Path, list[int]] = defaultdict(list)
    for diagnostic in report["diagnostics"]:
        if diagnostic["rule"] == rule:
            lines[Path(diagnostic["path"])].append(diagnostic["line"])
    errors = {Path(error["path"]): error["message"] for error in report["errors"]}
    return lines, errors


def evaluate(data: ShippedBugs, cases: list[ShippedBug]) -> list[dict]:
    files: dict[str, tuple[Path, Path]] = {}  # case id -> (buggy, fixed) source file
    fetch_errors: dict[str, str] = {}
    for case in cases:
        try:
            files[case.id] = case_files(case)
        except FETCH_ERRORS as exc:
            fetch_errors[case.id] = f"could not fetch: {exc}"
    runs: dict[tuple[str, Path], set[Path]] = defaultdict(set)
    for case in cases:
        if case.id in files:
            buggy, fixed = files[case.id]
            runs[case.rule, project_of(buggy, case.path)].add(buggy)
            runs[case.rule, project_of(fixed, case.fixed_path or case.path)].add(fixed)
    found: dict[str, tuple[dict[Path, list[int]], dict[Path, str]]] = defaultdict(lambda: (defaultdict(list), {}))
    for (rule, project), paths in sorted(runs.items()):
        lines, errors = findings_by_file(rule, sorted(paths), project)
        for path, found_lines in lines.items():
            found[rule][0][path] += found_lines
        found[rule][1].update(errors)

    results = []
    for case in cases:
        error = fetch_errors.get(case.id)
        result: dict[str, Any] = {
            "id": case.id,
            "part": case.part,
            "rule": case.rule,
            "family": case.family,
            "package": case.package,
            "buggy": case.buggy,
            "fixed": case.fixed,
            "lines": list(case.lines),
            "shape": case.shape,
            "link": str(case.link),
        }
        if case.id in files:
            buggy, fixed = files[case.id]
            lines, errors = found[case.rule]
            error = errors.get(buggy) or errors.get(fixed)
            ranges = [
                (first - data.line_tolerance, last + data.line_tolerance)
                for first, last in (case.lines, *case.also_lines)
            ]
            result["buggy_findings"] = sorted(lines.get(buggy, []))
            result["fixed_findings"] = sorted(lines.get(fixed, []))
            result["caught"] = any(low <= line <= high for line in result["buggy_findings"] for low, high in ranges)
            result["fixed_quiet"] = not result["fixed_findings"]
        if error is not None:
            result.update(error=error, caught=False, fixed_quiet=None)
        results.append(result)
    return results


# --- reporting -----------------------------------------------------------------------------------


def summarise(results: list[dict]) -> dict:
    families: dict[str, dict[str, int]] = {}
    for result in sorted(results, key=lambda r: r["family"]):
        family = families.setdefault(result["family"], {"cases": 0, "caught": 0, "fixed_quiet": 0})
        family["cases"] += 1
        family["caught"] += result["caught"]
        family["fixed_quiet"] += bool(result["fixed_quiet"])
    checked = [r for r in results if "error" not in r]
    return {
        "cases": len(results),
        "caught": sum(r["caught"] for r in results),
        "fixed_checked": len(checked),
        "fixed_quiet": sum(bool(r["fixed_quiet"]) for r in checked),
        "errors": len(results) - len(checked),
        "families": families,
    }


def percent(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"


def print_part(part: str, results: list[dict], show_cases: bool) -> None:
    summary = summarise(results)
    print(f"\n== {part} part: {summary['cases']} cases")
    print(f"recall on the buggy releases: {percent(summary['caught'], summary['cases'])}")
    print(f"fixed releases quiet for the rule in the file: {percent(summary['fixed_quiet'], summary['fixed_checked'])}")
    if summary["errors"]:
        print(f"cases that could not be checked: {summary['errors']}")
    print(f"{'family':8} {'caught':>12} {'fixed quiet':>12}")
    for family, counts in summary["families"].items():
        print(f"{family:8} {counts['caught']:>5}/{counts['cases']:<6} {counts['fixed_quiet']:>5}/{counts['cases']:<6}")
    if not show_cases:
        return
    misses = [r for r in results if not r["caught"]]
    if misses:
        print("\nmisses (buggy release, no finding of the rule within the lines):")
        for r in misses:
            where = r.get("error") or f"findings at {r['buggy_findings'] or 'none'}"
            print(
                f"  {r['id']} [{r['rule']}] {r['package']}=={r['buggy']} {r['lines'][0]}-{r['lines'][1]}: "
                f"{r['shape']} ({where})"
            )
    noisy = [r for r in results if r["fixed_quiet"] is False]
    if noisy:
        print("\nfixed releases that are not quiet:")
        for r in noisy:
            print(f"  {r['id']} [{r['rule']}] {r['package']}=={r['fixed']}: findings at {r['fixed_findings']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--case", action="append", default=[], metavar="ID", help="only this case (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--show-holdout-misses",
        action="store_true",
        help="list the holdout part's misses too (only once tuning is over)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check that each case can be admitted (releases, file, lines) without running any detector",
    )
    args = parser.parse_args(argv)

    data = load()
    known = {case.id for case in data.cases}
    unknown = [case_id for case_id in args.case if case_id not in known]
    if unknown:
        print(f"error: unknown case id(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    cases = [c for c in data.cases if (args.part in ("all", c.part)) and (not args.case or c.id in args.case)]
    if args.verify:
        problems = {case.id: found for case in cases if (found := admission_problems(case))}
        for case_id, found in problems.items():
            print(f"{case_id}: {'; '.join(found)}")
        print(f"{len(cases) - len(problems)} of {len(cases)} cases can be admitted")
        return 1 if problems else 0
    results = evaluate(data, cases)
    by_part = {part: [r for r in results if r["part"] == part] for part in PARTS}

    if args.json:
        parts: dict[str, Any] = {}
        for part, part_results in by_part.items():
            if not part_results:
                continue
            shown = part == "tune" or args.show_holdout_misses
            parts[part] = {"summary": summarise(part_results), "cases": part_results if shown else None}
        json.dump({"line_tolerance": data.line_tolerance, "parts": parts}, sys.stdout, indent=2)
        print()
        return 0
    for part, part_results in by_part.items():
        if part_results:
            print_part(part, part_results, show_cases=part == "tune" or args.show_holdout_misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
