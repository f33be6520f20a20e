"""Recall on bugs planted in real library files: the pinned development corpus.

Each operator in benchmarks/planted/ finds where a file writes a rule's correct pattern and plants
that rule's bug at one site. Per package and rule, sites are sampled deterministically (sorted
paths; one shape counted once, so a pattern copied into a hundred model files is one site; spread
over the files), and each mutated file is checked in-process in place of the original, inside its
package, so its imports resolve as they do for the real file. A plant is caught when the rule
fires within 3 lines of the planted line (the finding or a location it rests on) and the unmutated
file has no finding of the rule there; a site the unmutated file already has a finding at is not
planted.

    python benchmarks/planted_bugs.py                       # the pinned corpus (benchmarks/corpus.py)
    python benchmarks/planted_bugs.py --rule SHP101 --show-misses
    python benchmarks/planted_bugs.py --json
    python benchmarks/planted_bugs.py --corpus DIR --cap 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from planted import OPERATORS, Plant, Sites

from sharpedges.config import find_config
from sharpedges.diagnostics import Diagnostic
from sharpedges.engine import Engine
from sharpedges.runner import CheckOptions, build_engine

CORPUS = Path(os.environ.get("SHARPEDGES_CORPUS_CACHE", Path.home() / ".cache" / "sharpedges")) / "corpus"
TOLERANCE = 3


@dataclass
class Outcome:
    package: str
    path: str  # relative to the package folder
    plant: Plant
    caught: bool
    error: str | None = None


def python_files(package: Path) -> list[Path]:
    return sorted(path for path in package.rglob("*.py") if path.is_file())


def candidates(package: Path, rules: list[str]) -> dict[str, list[tuple[Path, Plant]]]:
    """Every plant of every rule in the package, one per shape (the first, in sorted path order)."""
    found: dict[str, list[tuple[Path, Plant]]] = {rule: [] for rule in rules}
    shapes: dict[str, set[str]] = defaultdict(set)
    for path in python_files(package):
        code = path.read_text(encoding="utf-8", errors="replace")
        wanted = [rule for rule in rules if OPERATORS[rule][1] in code]
        if not wanted:
            continue
        try:
            sites = Sites(code)
        except Exception:  # a file libcst cannot parse has no sites
            continue
        for rule in wanted:
            for plant in OPERATORS[rule][0](sites):
                key = plant.shape + "\0" + plant.before + "\0" + plant.after
                if key not in shapes[rule]:
                    shapes[rule].add(key)
                    found[rule].append((path, plant))
    return found


def spread(items: list[tuple[Path, Plant]], cap: int) -> list[tuple[Path, Plant]]:
    """At most `cap` items: one per file first, spread evenly over the sorted list, then more per file."""
    by_file: dict[Path, list[tuple[Path, Plant]]] = defaultdict(list)
    for item in items:
        by_file[item[0]].append(item)
    rounds: list[tuple[Path, Plant]] = []
    depth = 0
    while len(rounds) < len(items):
        rounds.extend(group[depth] for group in by_file.values() if depth < len(group))
        depth += 1
    first_round = sum(1 for group in by_file.values() if group)
    if first_round > cap:
        step = first_round / cap
        return [rounds[int(i * step)] for i in range(cap)]
    return rounds[:cap]


def near(diagnostics: list[Diagnostic], path: str, line: int) -> bool:
    return any(
        where == path and first - TOLERANCE <= line <= last + TOLERANCE
        for diagnostic in diagnostics
        for where, first, last in diagnostic.related_spans()
    )


class Checker:
    """One engine per (package, rule), with the package's folder as a project root."""

    def __init__(self) -> None:
        self._engines: dict[tuple[Path, str], Engine] = {}
        self._original: dict[tuple[Path, str], list[Diagnostic]] = {}

    def engine(self, package: Path, rule: str) -> Engine:
        if (package, rule) not in self._engines:
            options = CheckOptions(paths=[str(package)], select=[rule], preview=True, use_cache=False)
            self._engines[package, rule] = build_engine(find_config(package), options, roots=(package,))
        return self._engines[package, rule]

    def check(self, package: Path, rule: str, path: Path, source: bytes) -> tuple[list[Diagnostic], str | None]:
        result = self.engine(package, rule).check(str(path), source)
        error = "; ".join(e.message for e in result.errors) or None
        return [d for d in result.diagnostics if d.rule == rule], error

    def original(self, package: Path, rule: str, path: Path) -> list[Diagnostic]:
        if (path, rule) not in self._original:
            self._original[path, rule] = self.check(package, rule, path, path.read_bytes())[0]
        return self._original[path, rule]


def evaluate(corpus: Path, rules: list[str], cap: int, packages: list[str] | None = None) -> list[Outcome]:
    checker = Checker()
    outcomes = []
    for package in sorted(p for p in corpus.iterdir() if p.is_dir() and (not packages or p.name in packages)):
        found = candidates(package, rules)
        for rule in rules:
            fresh = [
                (p, plant)
                for p, plant in found[rule]
                if not near(checker.original(package, rule, p), str(p), plant.line)
            ]
            for path, plant in spread(fresh, cap):
                diagnostics, error = checker.check(package, rule, path, plant.source.encode())
                caught = error is None and near(diagnostics, str(path), plant.line)
                outcomes.append(Outcome(package.name, str(path.relative_to(package)), plant, caught, error))
    return outcomes


def summary(outcomes: list[Outcome]) -> dict:
    rules: dict[str, dict] = {}
    for outcome in sorted(outcomes, key=lambda o: (o.plant.rule, o.package)):
        rule = rules.setdefault(outcome.plant.rule, {"planted": 0, "caught": 0, "packages": {}})
        package = rule["packages"].setdefault(outcome.package, {"planted": 0, "caught": 0})
        for counts in (rule, package):
            counts["planted"] += 1
            counts["caught"] += outcome.caught
    return {
        "planted": len(outcomes),
        "caught": sum(o.caught for o in outcomes),
        "errors": sum(o.error is not None for o in outcomes),
        "rules": rules,
    }


def snippet(plant: Plant, context: int = 2) -> str:
    lines = plant.source.splitlines()
    low, high = max(plant.line - 1 - context, 0), min(plant.line + context, len(lines))
    return "\n".join(f"    {n + 1:5} {'>' if n + 1 == plant.line else ' '} {lines[n]}" for n in range(low, high))


def print_report(outcomes: list[Outcome], show_misses: bool) -> None:
    data = summary(outcomes)
    print(
        f"planted bugs caught: {data['caught']}/{data['planted']}"
        + (f" ({data['errors']} not checked)" if data["errors"] else "")
    )
    packages = sorted({o.package for o in outcomes})
    print(f"{'rule':8} {'caught':>9}  " + "  ".join(f"{p[:14]:>14}" for p in packages))
    for rule, counts in data["rules"].items():
        cells = []
        for package in packages:
            got = counts["packages"].get(package)
            cells.append(f"{got['caught']:>7}/{got['planted']:<6}" if got else f"{'-':>14}")
        print(f"{rule:8} {counts['caught']:>4}/{counts['planted']:<4}  " + "  ".join(cells))
    if not show_misses:
        return
    print("\nmisses:")
    for outcome in outcomes:
        if not outcome.caught:
            plant = outcome.plant
            where = f"{outcome.package}/{outcome.path}:{plant.line}"
            reason = f" [{outcome.error}]" if outcome.error else ""
            print(f"  {plant.rule} {where}: `{plant.before}` -> `{plant.after}`{reason}")
            print(snippet(plant))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="a folder of package folders")
    parser.add_argument("--rule", action="append", choices=sorted(OPERATORS), help="only this rule (repeatable)")
    parser.add_argument("--package", action="append", help="only this package folder (repeatable)")
    parser.add_argument("--cap", type=int, default=8, help="plants per package per rule (default 8)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--show-misses", action="store_true", help="each miss with path:line and the mutated code")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"error: no corpus at {args.corpus} (run `python benchmarks/corpus.py` first)", file=sys.stderr)
        return 2
    outcomes = evaluate(args.corpus, args.rule or sorted(OPERATORS), args.cap, args.package)
    if args.json:
        misses = [
            {"rule": o.plant.rule, "package": o.package, "path": o.path, "line": o.plant.line,
             "before": o.plant.before, "after": o.plant.after, "error": o.error}
            for o in outcomes if not o.caught
        ]  # fmt: skip
        json.dump({"summary": summary(outcomes), "misses": misses}, sys.stdout, indent=2)
        print()
    else:
        print_report(outcomes, args.show_misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
