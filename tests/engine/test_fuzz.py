"""Fuzzing: generated programs and damaged real files through every detector and every output format.

Whatever a file holds, nothing escapes the engine, no detector crashes, and every problem is one
`errors` entry of one line that every format shows. Mutations are seeded, so a failure names a
case that reproduces; the hostile-file cases (huge, binary, FIFO, ...) live in test_bad_input.py.
"""

from __future__ import annotations

import ast
import json
import os
import random
import subprocess
import sys
from functools import cache
from pathlib import Path

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings

from sharpedges.diagnostics import FileResult
from sharpedges.engine import Engine, bracket_depth_exceeds
from sharpedges.outputs import FORMATS, render
from sharpedges.outputs.concise import summary
from sharpedges.registry import all_rules
from sharpedges.runner import RunResult
from sharpedges.specs import load_specs
from tests.engine.test_cli_check import UNSCALED

REPO = Path(__file__).resolve().parents[2]
# Generated and damaged programs make the compiler warn ("'int' object is not callable"); the
# warnings say nothing about sharpedges.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")
SEED = 20240808
CORPUS_SAMPLE = 8
CORPUS_MAX_BYTES = 24_000  # small files keep the run fast; big ones add no new syntax
MUTANTS_PER_OPERATION = 2
EXAMPLES_PER_KIND = 2
# Bytes that change how Python tokenizes, so flips reach the parser's error paths, not only names.
TOKEN_BYTES = b"()[]{}:;,.=@*+-<>!%&|^~#\\'\"\n\r\t \x0c0123456789"


# -- mutations: each takes bytes and a seeded Random, returns damaged bytes ---------------------


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if damaged:
            byte = rng.choice(TOKEN_BYTES) if rng.random() < 0.7 else rng.randint(1, 255)
            damaged[rng.randrange(len(damaged))] = byte
    return bytes(damaged)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def delete_lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        if lines:
            del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def duplicate_lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True) or [b"\n"]
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines) + 1), lines[where])
    return b"".join(lines)


def damage_indentation(data: bytes, rng: random.Random) -> bytes:
    lines = data.splitlines(keepends=True) or [b"\n"]
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(len(lines))
        line = lines[where]
        lines[where] = rng.choice(
            [
                b" " + line,
                line.lstrip(b" \t"),
                b"\t" + line.lstrip(b" "),
                line.replace(b"    ", b"\t", 1),
                b"  " * rng.randint(1, 40) + line,
            ]
        )
    return b"".join(lines)


def nest_parentheses(data: bytes, rng: random.Random) -> bytes:
    """Wrap one expression (or, if the file is not valid Python here, the whole file as a new
    statement) in up to 400 parentheses: beyond CPython's 200, the engine must refuse it."""
    depth = rng.randint(1, 400)
    expression = _random_expression(data, rng)
    if expression is None:
        return data + b"\nx = " + b"(" * depth + b"softmax(q)" + b")" * depth + b"\n"
    lines = data.splitlines(keepends=True)
    first, col, last, end_col = expression
    lines[last] = lines[last][:end_col] + b")" * depth + lines[last][end_col:]
    lines[first] = lines[first][:col] + b"(" * depth + lines[first][col:]
    return b"".join(lines)


def nest_blocks(data: bytes, rng: random.Random) -> bytes:
    """The whole file inside up to 120 nested `if True:` (Python's tokenizer stops at 100)."""
    depth = rng.randint(1, 120)
    header = b"".join(b"    " * level + b"if True:\n" for level in range(depth))
    body = b"".join(b"    " * depth + line if line.strip() else line for line in data.splitlines(keepends=True))
    return header + (body if body.strip() else b"    " * depth + b"pass\n")


def _random_expression(data: bytes, rng: random.Random) -> tuple[int, int, int, int] | None:
    """(first line, byte column, last line, end byte column), 0-based lines, of a random expression."""
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return None
    in_fstrings = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for inner in ast.walk(node)
        if inner is not node
    }  # their positions are not the source's
    expressions = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.expr)
        and node.end_lineno is not None
        and not isinstance(node, (ast.Starred, ast.Slice))
        and id(node) not in in_fstrings
    ]
    if not expressions:
        return None
    node = rng.choice(expressions)
    return node.lineno - 1, node.col_offset, node.end_lineno - 1, node.end_col_offset


MUTATIONS = (flip_bytes, truncate, delete_lines, duplicate_lines, damage_indentation, nest_parentheses, nest_blocks)


# -- what must hold for any input --------------------------------------------------------------


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine(all_rules().values(), screen=False)  # no screen: every detector runs on every file


@pytest.fixture(scope="session")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@cache
def _explanation(code: str) -> dict:
    from sharpedges.knowledge.explain import explain_rule

    return explain_rule(code)


def survives(engine: Engine, path: Path, data: bytes) -> FileResult:
    """Check `data` as the file `path` (written, so formats that quote source read the damage)
    and render every format; fail on anything but clean findings and one-line file errors."""
    path.write_bytes(data)
    result = engine.check(str(path), data)
    crashes = [error.message for error in result.errors if " crashed: " in error.message]
    assert not crashes, f"{path.name}: {crashes}"
    assert result.parsed or result.errors, "an unparsed file must say why"
    for error in result.errors:
        assert error.path == str(path)
        assert error.message and "\n" not in error.message and "\r" not in error.message, error.message
    run = RunResult(result.diagnostics, result.errors, 1)
    specs = load_specs()
    rendered = {name: render(name, run, specs) for name in FORMATS}
    concise = rendered["concise"].splitlines()
    assert len(concise) == len(result.diagnostics) + len(result.errors) + len(summary(run).splitlines())
    assert json.loads(rendered["json"])["summary"]["errors"] == len(result.errors)
    sarif = json.loads(rendered["sarif"])["runs"][0]
    assert len(sarif["invocations"][0]["toolExecutionNotifications"]) == len(result.errors)
    assert len(rendered["github"].splitlines()) == len(result.diagnostics) + len(result.errors)
    _render_markdown(run)
    return result


def _render_markdown(run: RunResult) -> None:
    from sharpedges.outputs.markdown import render as render_markdown
    from sharpedges.review import Review

    explanations = {code: _explanation(code) for code in {d.rule for d in run.diagnostics}}
    text = render_markdown(Review(run, explanations, "HEAD", [e.path for e in run.errors], all_lines=True))
    assert ("could not be checked" in text) == bool(run.errors)


# -- generated programs ------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@FUZZ_SETTINGS
@given(source=hypothesmith.from_grammar())
def test_programs_from_the_grammar(engine, scratch, source):
    survives(engine, scratch / "grammar.py", source.encode("utf-8", "surrogatepass"))


@pytest.mark.slow
@settings(FUZZ_SETTINGS, max_examples=40)  # libcst's node strategy generates slowly
@given(source=hypothesmith.from_node())
def test_programs_from_libcst_nodes(engine, scratch, source):
    result = survives(engine, scratch / "node.py", source.encode("utf-8", "surrogatepass"))
    assert result.parsed  # libcst generated it, so libcst parses it


# -- damaged real files ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus_sample() -> list[Path]:
    """A fixed sample of small corpus files that mention attention, so the detectors do real work."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import corpus
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    try:
        root = corpus.build()
    except Exception as exc:  # no network, no pip: the rule examples still run
        pytest.skip(f"corpus cannot be built: {type(exc).__name__}: {exc}")
    files = [
        path
        for path in corpus.python_files(root)
        if path.stat().st_size <= CORPUS_MAX_BYTES and b"softmax" in path.read_bytes()
    ]
    return random.Random(SEED).sample(files, min(CORPUS_SAMPLE, len(files)))


def rule_examples() -> list[tuple[str, bytes]]:
    """Each rule's first examples of both kinds: what its detector looks for, and its near misses."""
    return [
        (f"{code}-{kind}{index}", source.encode())
        for code, spec in sorted(load_specs().items())
        for kind, sources in (("bad", spec.examples.bad), ("good", spec.examples.good))
        for index, source in enumerate(sources[:EXAMPLES_PER_KIND])
    ]


def mutants(name: str, data: bytes, per_operation: int = MUTANTS_PER_OPERATION):
    """(case id, damaged bytes): each mutation `per_operation` times, seeded by the case id."""
    for mutation in MUTATIONS:
        for round_ in range(per_operation):
            case = f"{name}:{mutation.__name__}:{round_}"
            yield case, mutation(data, random.Random(f"{SEED}:{case}"))


@pytest.mark.slow
def test_mutated_rule_examples(engine, scratch):
    cases = 0
    for name, data in rule_examples():
        for _case, damaged in mutants(name, data):
            survives(engine, scratch / "example.py", damaged)
            cases += 1
    assert cases >= len(MUTATIONS) * MUTANTS_PER_OPERATION * len(load_specs())


def test_mutated_corpus_files(engine, scratch, corpus_sample):
    for path in corpus_sample:
        for _case, damaged in mutants(path.name, path.read_bytes()):
            survives(engine, scratch / "corpus.py", damaged)


def test_deep_parentheses_are_refused_or_checked(engine, scratch):
    for depth in (199, 200, 201, 400):
        source = UNSCALED.replace("q @ k", "(" * depth + "q @ k" + ")" * depth)
        result = survives(engine, scratch / "parens.py", source.encode())
        assert result.parsed == (depth <= 200)


@pytest.mark.parametrize(
    "chain", ["a + " * 1200 + "a", "not " * 1200 + "a", "-" * 1200 + "a", "lambda: " * 600 + "a", "a" + ".b" * 300]
)
def test_long_chains_without_brackets_are_an_error_for_that_file(engine, scratch, chain):
    """Nesting without brackets passes the bracket check and libcst's parser, then exhausts
    recursion in libcst's position provider: an error for that file, never an escape."""
    result = survives(engine, scratch / "chain.py", f"{UNSCALED}\nDEEP = {chain}\n".encode())
    assert result.diagnostics or any("nested too deeply" in error.message for error in result.errors)


# -- the real command over a directory of mutants ----------------------------------------------


def test_cli_over_a_directory_of_mutants(tmp_path: Path, corpus_sample):
    sources = [(name, data) for name, data in rule_examples()[::6]] + [
        (path.name, path.read_bytes()) for path in corpus_sample[:3]
    ]
    for index, (name, data) in enumerate(sources):
        for case, damaged in mutants(name, data, per_operation=1):
            (tmp_path / f"m{index:02d}_{case.split(':')[1]}.py").write_bytes(damaged)
    files = sorted(tmp_path.glob("*.py"))
    assert len(files) >= 50
    unparseable = {path.name for path in files if not _libcst_parses(path.read_bytes())}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sharpedges",
            "check",
            "--format",
            "json",
            "--no-cache",
            "--select",
            "ALL",
            "--preview",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "SHARPEDGES_NO_SCREEN": "1"},
    )  # parse every file
    assert completed.returncode in (0, 1, 2)
    assert "Traceback" not in completed.stderr
    assert completed.stdout.startswith("{"), completed.stderr
    document = json.loads(completed.stdout)
    errors = [Path(error["path"]).name for error in document["errors"]]
    assert not [e for e in document["errors"] if "crashed" in e["message"]]
    assert len(errors) == len(set(errors))  # one entry per file
    assert unparseable <= set(errors)
    assert document["summary"]["files"] == len(files)
    assert completed.returncode == (2 if errors else 1 if document["diagnostics"] else 0)


def _libcst_parses(data: bytes) -> bool:
    if bracket_depth_exceeds(data):  # refused unparsed, and libcst would take minutes
        return False
    try:
        cst.parse_module(data)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_nesting_deep_enough_to_overflow_the_native_parser_neither_crashes_nor_hangs(tmp_path: Path, jobs):
    """10,000 levels without brackets overflow libcst's parser on an 8 MiB stack: the process
    died (one process) or the pool waited forever for its dead worker (many). A flat chain
    (`a and a ...`, one level for Python) is parsed on a thread with stack enough; a nested one
    (an elif chain) is refused by Python's own parser before libcst sees it."""
    (tmp_path / "boolean_chain.py").write_text("# softmax\nready = a" + " and a" * 12_000 + "\n")
    (tmp_path / "elif_chain.py").write_text("# softmax\nif a:\n    pass\n" + "elif a:\n    pass\n" * 12_000)
    for index in range(9):  # enough files for a process pool
        (tmp_path / f"small_{index}.py").write_text(UNSCALED)
    completed = subprocess.run(
        [sys.executable, "-m", "sharpedges", "check", "--format", "json", "--no-cache", "--jobs", jobs, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    document = json.loads(completed.stdout)
    assert document["errors"] == [
        {"path": str(tmp_path / "elif_chain.py"), "message": "nested too deeply (more than 500 levels), not checked"}
    ]
    assert document["summary"]["files"] == 11 and len(document["diagnostics"]) == 9
