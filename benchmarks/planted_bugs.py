"""Recall on bugs planted in real library files: the pinned development corpus.

Each operator in benchmarks/planted/ finds where a file writes a rule's correct pattern and plants
that rule's bug at one site. Per package and rule, sites are sampled deterministically (sorted
paths; one shape counted once, so a pattern copied into a hundred model files is one site; spread
over the files), and each mutated file is checked in-process in place of the original, inside its
package, so its imports resolve as they do for the real file. A plant is caught when the rule
fires within 3 lines of the planted line (the finding or a location it rests on) and the unmutated
file has no finding of the rule there; a sampled site the unmutated file already has a finding at
is left out of the count.

    python benchmarks/planted_bugs.py                       # the pinned corpus (benchmarks/corpus.py)
    python benchmarks/planted_bugs.py --rule SHP101 --show-misses
    python benchmarks/planted_bugs.py --json
    python benchmarks/planted_bugs.py --corpus DIR --cap 8
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from corpus import corpus_dir
from planted import OPERATORS, Plant, Sites
from planted.sites import normalised

from sharpedges.config import find_config
from sharpedges.diagnostics import Diagnostic
from sharpedges.engine import Engine
from sharpedges.runner import DEFAULT_TIME_LIMIT, CheckOptions, build_engine, check_source

TOLERANCE = 3


@dataclass
class Outcome:
    package: str
    path: str  # relative to the package folder
    plant: Plant
    caught: bool
    error: str | None = None
    found: tuple[int, ...] = ()  # the lines of the rule's findings in the mutated file


def python_files(package: Path) -> list[Path]:
    return sorted(path for path in package.rglob("*.py") if path.is_file())


def top_level_statements(code: str) -> list[tuple[int, int]]:
    """(first, last) 0-based line indexes of each top-level class and function, decorators included."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    spans = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            spans.append((first - 1, node.end_lineno))
    return spans


def file_candidates(path: Path, rules: list[str], seen: set[str]) -> list[tuple[str, Plant]]:
    """The plants of `rules` in one file, made per top-level class or function; a statement already
    seen for a rule (the same class copied into another model, normalised) is skipped before it is
    parsed. `seen` is updated."""
    code = path.read_text(encoding="utf-8", errors="replace")
    lines = code.splitlines(keepends=True)
    found: list[tuple[str, Plant]] = []
    for first, last in top_level_statements(code):
        text = "".join(lines[first:last])
        shape = normalised(text)
        wanted = [rule for rule in rules if OPERATORS[rule][1].search(text) and f"{rule}\0{shape}" not in seen]
        if not wanted:
            continue
        seen.update(f"{rule}\0{shape}" for rule in wanted)
        try:
            sites = Sites(text, context=code)
        except Exception:  # what libcst cannot parse has no sites
            continue
        prefix, suffix = "".join(lines[:first]), "".join(lines[last:])
        for rule in wanted:
            found.extend((rule, plant.placed(prefix, suffix)) for plant in OPERATORS[rule][0](sites))
    return found


def candidates(package: Path, rules: list[str]) -> dict[str, list[tuple[Path, Plant]]]:
    """Every plant of every rule in the package, one per shape (the first, in sorted path order)."""
    found: dict[str, list[tuple[Path, Plant]]] = {rule: [] for rule in rules}
    seen: set[str] = set()
    shapes: dict[str, set[str]] = defaultdict(set)
    for path in python_files(package):
        for rule, plant in file_candidates(path, rules, seen):
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

    def engine(self, package: Path, rule: str) -> Engine:
        if (package, rule) not in self._engines:
            options = CheckOptions(paths=[str(package)], select=[rule], preview=True, use_cache=False)
            self._engines[package, rule] = build_engine(find_config(package), options, roots=(package,))
        return self._engines[package, rule]

    def check(self, task: tuple[Path, str, Path, str | None]) -> tuple[list[Diagnostic], str | None]:
        """The rule's findings in `path` as `source` (None: as the file is on disk), and its error."""
        package, rule, path, source = task
        data = path.read_bytes() if source is None else source.encode()
        result = check_source(self.engine(package, rule), str(path), data, DEFAULT_TIME_LIMIT)
        error = "; ".join(e.message for e in result.errors) or None
        return [d for d in result.diagnostics if d.rule == rule], error


_checker: Checker | None = None


def _check_in_worker(task: tuple[Path, str, Path, str | None]) -> tuple[list[Diagnostic], str | None]:
    global _checker
    if _checker is None:
        _checker = Checker()
    return _checker.check(task)


def evaluate(
    corpus: Path, rules: list[str], cap: int, packages: list[str] | None = None, jobs: int = 0
) -> list[Outcome]:
    """Plant and check. A sampled site whose unmutated file already has a finding of the rule within
    the tolerance is dropped (it would count as caught for nothing)."""
    sampled: list[tuple[Path, str, Path, Plant]] = []
    for package in sorted(p for p in corpus.iterdir() if p.is_dir() and (not packages or p.name in packages)):
        found = candidates(package, rules)
        sampled.extend((package, rule, path, plant) for rule in rules for path, plant in spread(found[rule], cap))
    originals = sorted({(package, rule, path, None) for package, rule, path, _ in sampled})
    tasks = originals + [(package, rule, path, plant.source) for package, rule, path, plant in sampled]
    with ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        results = list(pool.map(_check_in_worker, tasks, chunksize=1))
    before = {task[:3]: result[0] for task, result in zip(originals, results, strict=False)}
    outcomes = []
    for (package, rule, path, plant), (diagnostics, error) in zip(sampled, results[len(originals) :], strict=True):
        if near(before[package, rule, path], str(path), plant.line):
            continue
        caught = error is None and near(diagnostics, str(path), plant.line)
        lines = tuple(sorted({d.line for d in diagnostics}))
        outcomes.append(Outcome(package.name, str(path.relative_to(package)), plant, caught, error, lines))
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
            reason = f" [{outcome.error}]" if outcome.error else f" (findings at {list(outcome.found) or 'none'})"
            print(f"  {plant.rule} {where}: `{plant.before}` -> `{plant.after}`{reason}")
            print(snippet(plant))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=corpus_dir(), help="a folder of package folders")
    parser.add_argument("--rule", action="append", choices=sorted(OPERATORS), help="only this rule (repeatable)")
    parser.add_argument("--package", action="append", help="only this package folder (repeatable)")
    parser.add_argument("--cap", type=int, default=8, help="plants per package per rule (default 8)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--show-misses", action="store_true", help="each miss with path:line and the mutated code")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"error: no corpus at {args.corpus} (run `python benchmarks/corpus.py` first)", file=sys.stderr)
        return 2
    outcomes = evaluate(args.corpus, args.rule or sorted(OPERATORS), args.cap, args.package, args.jobs)
    if args.json:
        misses = [
            {"rule": o.plant.rule, "package": o.package, "path": o.path, "line": o.plant.line,
             "before": o.plant.before, "after": o.plant.after, "error": o.error, "found": list(o.found)}
            for o in outcomes if not o.caught
        ]  # fmt: skip
        json.dump({"summary": summary(outcomes), "misses": misses}, sys.stdout, indent=2)
        print()
    else:
        print_report(outcomes, args.show_misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
