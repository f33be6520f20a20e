"""The runner: cache, processes, shards, time limits, atomic fixes, progress."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sharpedges.engine import Engine
from sharpedges.registry import Rule, all_rules
from sharpedges.runner import CheckOptions, check_source, run_check, stderr_progress
from tests.engine.test_cli_check import SCALED, UNSCALED

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Twenty files, some buggy, copied from the bundled examples and the SHP101 fixtures."""
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(10):
        (root / f"bad_{i}.py").write_text(UNSCALED + f"\n# file {i}\n")
        (root / f"good_{i}.py").write_text(SCALED + f"\n# file {i}\n")
    for example in (REPO / "examples").glob("*.py"):
        shutil.copy(example, root / example.name)
    return root


def as_json(result) -> str:
    return json.dumps(
        {"d": [d.to_json() for d in result.diagnostics], "e": [e.to_json() for e in result.errors]}, sort_keys=True
    )


def test_one_process_and_many_give_identical_results(tree: Path):
    one = run_check(CheckOptions(paths=[str(tree)], jobs=1, use_cache=False))
    many = run_check(CheckOptions(paths=[str(tree)], jobs=4, use_cache=False))
    assert as_json(one) == as_json(many)
    assert len(one.diagnostics) >= 10


def test_files_named_one_by_one_share_the_engine_of_their_config(tree: Path, monkeypatch):
    """pre-commit names each staged file: files under no [tool.sharpedges] table get one engine (not
    one per file and per folder), with the same findings as the folder named once."""
    import sharpedges.runner as runner

    built = []
    real_build = runner.build_engine
    monkeypatch.setattr(runner, "build_engine", lambda *a, **k: built.append(1) or real_build(*a, **k))
    (tree / "sub").mkdir()
    (tree / "bad_0.py").rename(tree / "sub" / "bad_0.py")
    files = sorted(str(p) for p in tree.rglob("*.py"))
    one_by_one = run_check(CheckOptions(paths=files, jobs=1, use_cache=False))
    assert len(built) == 1
    assert as_json(one_by_one) == as_json(run_check(CheckOptions(paths=[str(tree)], jobs=1, use_cache=False)))


def test_warm_cache_gives_identical_results_and_is_used(tree: Path, tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    cold = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    assert (cache / ".gitignore").read_text().strip().endswith("*")
    calls = []
    monkeypatch.setattr(Engine, "check", lambda self, path, data: calls.append(path))
    warm = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    assert calls == []  # nothing re-checked
    assert as_json(cold) == as_json(warm)


def test_cache_key_covers_content_and_rule_selection(tree: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    ignored = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1, ignore=["SHP101"]))
    assert not [d for d in ignored.diagnostics if d.rule == "SHP101"]
    (tree / "good_0.py").write_text(UNSCALED)
    changed = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    assert any(d.path.endswith("good_0.py") for d in changed.diagnostics)


def test_corrupt_or_foreign_cache_entries_are_ignored(tree: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    cold = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    entries = sorted(cache.rglob("*.json"))
    assert entries
    entries[0].write_text("{not json")
    entries[1].write_text(json.dumps({"key": "someone else's", "diagnostics": [], "errors": []}))
    for index, entry in enumerate(entries[2:]):
        digest, body = entry.read_text().split("\n", 1)
        data = json.loads(body)
        if index % 2:  # edited behind the digest's back: a finding hidden
            data["diagnostics"] = []
            entry.write_text(digest + "\n" + json.dumps(data))
        else:  # a consistent digest over a body of the wrong shape: no traceback, a miss
            data["diagnostics"] = ["garbage", {"rule": 1}]
            body = json.dumps(data)
            entry.write_text(hashlib.sha256(body.encode()).hexdigest() + "\n" + body)
    again = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    assert as_json(cold) == as_json(again)


def test_symlinks_planted_in_the_cache_are_never_followed(tree: Path, tmp_path: Path):
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    cache.mkdir()
    (cache / ".gitignore").symlink_to(outside / "created-through-a-link")
    (cache / "v2").symlink_to(outside, target_is_directory=True)
    cold = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    assert list(outside.iterdir()) == []
    again = run_check(CheckOptions(paths=[str(tree)], cache_dir=str(cache), jobs=1))
    assert as_json(cold) == as_json(again)


def test_two_concurrent_runs_share_a_cache_safely(tree: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "sharpedges",
        "check",
        "--format",
        "json",
        "--cache-dir",
        str(cache),
        "--jobs",
        "2",
        str(tree),
    ]
    first, second = (subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2))
    outputs = [first.communicate()[0], second.communicate()[0]]
    assert outputs[0] == outputs[1]
    third = subprocess.run(command, capture_output=True, text=True).stdout
    assert third == outputs[0]
    assert not list(cache.rglob(".tmp-*"))


def test_shards_partition_the_files(tree: Path):
    whole = run_check(CheckOptions(paths=[str(tree)], use_cache=False, jobs=1))
    parts = [run_check(CheckOptions(paths=[str(tree)], use_cache=False, jobs=1, shard=(k, 3))) for k in (1, 2, 3)]
    assert sum(p.files for p in parts) == whole.files
    union = sorted((d for p in parts for d in p.diagnostics), key=lambda d: d.sort_key())
    assert [d.to_json() for d in union] == [d.to_json() for d in whole.diagnostics]
    assert all(p.files < whole.files for p in parts)


def test_shard_flag_is_validated(run_cli, tmp_path):
    result = run_cli("check", "--shard", "4/3", ".")
    assert result.returncode == 2 and "K <= N" in result.stderr


def test_a_detector_that_hangs_is_stopped_and_named(monkeypatch):
    rule = all_rules()["SHP101"]

    class Hang(rule.detector):
        def check(self, ctx):
            while True:
                pass

    engine = Engine([Rule(rule.spec, Hang)])
    result = check_source(engine, "slow.py", UNSCALED.encode(), time_limit=0.5)
    (error,) = result.errors
    assert error.rule == "SHP101" and "timed out after 0.5 s in SHP101" in error.message


def test_progress_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert stderr_progress() is None


def test_progress_line_on_a_terminal(monkeypatch, capsys):
    import sharpedges.runner as runner

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    clock = iter([0.0, 5.0, 6.0])
    monkeypatch.setattr(runner.time, "monotonic", lambda: next(clock))
    report = stderr_progress()
    report(1, 2)
    report(2, 2)
    assert capsys.readouterr().err == "\rsharpedges: checked 1/2 files\rsharpedges: checked 2/2 files\n"


def test_machine_formats_never_show_progress(run_cli, tree):
    result = run_cli("check", "--format", "json", "--no-cache", str(tree))
    assert result.stderr == ""


def test_atomic_write_leaves_the_original_when_interrupted(tmp_path: Path, monkeypatch):
    from sharpedges import fixes

    target = tmp_path / "model.py"
    target.write_text("original\n")
    target.chmod(0o640)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(fixes.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fixes.write_fixed(target, b"original\n", b"half-written\n")
    assert target.read_text() == "original\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.py"]
    monkeypatch.undo()
    fixes.write_fixed(target, b"original\n", b"new\n")
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640


def test_apply_edits_skips_overlaps_and_refuses_unparseable_results():
    from sharpedges.diagnostics import DiagnosticFix, Edit
    from sharpedges.fixes import apply_edits, still_parses

    text = "a = f(x)\nb = g(y)\n"

    def fix(line, column, end_column, original, content):
        return DiagnosticFix("safe", (Edit(line, column, line, end_column, content, original),))

    fix_a, overlapping, fix_b = fix(1, 5, 9, "f(x)", "h(x)"), fix(1, 7, 8, "x", "z"), fix(2, 5, 9, "g(y)", "k(y)")
    outcome = apply_edits(text, [fix_a, overlapping, fix_b])
    assert outcome.text == "a = h(x)\nb = k(y)\n" and outcome.applied == 2 and outcome.refused == 0
    stale = apply_edits(text, [fix(1, 5, 9, "f(z)", "h(z)")])  # the span no longer holds the code it replaces
    assert stale.text == text and stale.applied == 0 and stale.refused == 1
    assert not still_parses("a = (\n")


def test_fix_end_to_end_with_a_rule_that_offers_one(run_cli, tmp_path: Path):
    fixable = [rule for rule in all_rules().values() if rule.spec.fix != "none"]
    assert fixable, "several rules declare fixes"
    rule = fixable[0]
    flags = ["--unsafe-fixes"] if rule.spec.fix == "unsafe" else []
    for index, source in enumerate(rule.spec.examples.bad):
        (tmp_path / f"case_{index}.py").write_text(source)
    before = {p.name: p.read_text() for p in tmp_path.glob("case_*.py")}
    diff = run_cli("check", "--select", rule.code, "--diff", *flags, ".")
    assert diff.returncode == 1 and "+++ b/" in diff.stdout
    assert {p.name: p.read_text() for p in tmp_path.glob("case_*.py")} == before  # --diff writes nothing
    run_cli("check", "--select", rule.code, "--fix", *flags, "--no-cache", ".")
    after = {p.name: p.read_text() for p in tmp_path.glob("case_*.py")}
    assert after != before
    from sharpedges.fixes import still_parses

    assert all(still_parses(text) for text in after.values())
    again = run_cli("check", "--select", rule.code, "--diff", *flags, "--no-cache", ".")
    assert again.returncode == 0 and again.stdout == ""  # idempotent


def test_yaml_with_python_tags_is_refused_with_file_and_line(tmp_path: Path):
    from sharpedges.specs import validate_spec_file
    from sharpedges.yaml_io import DataFileError

    spec = tmp_path / "SHP101.yaml"
    spec.write_text("code: SHP101\nname: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(DataFileError, match=r"SHP101.yaml:2: .*python/object"):
        validate_spec_file(spec)


def test_malformed_spec_names_file_and_field(tmp_path: Path):
    from sharpedges.specs import validate_spec_file
    from sharpedges.yaml_io import DataFileError

    spec = tmp_path / "SHP101.yaml"
    data = (REPO / "rules" / "SHP101.yaml").read_text().replace("severity: error", "severity: fatal")
    spec.write_text(data)
    with pytest.raises(DataFileError, match=r"SHP101.yaml: field 'severity'"):
        validate_spec_file(spec)
    spec.write_text(data.replace("severity: fatal", "severity: error\nseverty: error"))
    with pytest.raises(DataFileError, match=r"field 'severty'"):
        validate_spec_file(spec)


def test_registry_refuses_unpaired_specs_and_detectors(tmp_path: Path, monkeypatch):
    import sharpedges.registry as registry

    registry.all_rules.cache_clear()
    try:
        specs = dict(registry.load_specs())
        extra = next(iter(specs.values()))
        monkeypatch.setattr(registry, "load_specs", lambda: {**specs, "SHP990": extra})
        with pytest.raises(registry.RegistryError, match="rule spec without a detector: SHP990"):
            registry.all_rules()
        registry.all_rules.cache_clear()
        monkeypatch.setattr(registry, "load_specs", lambda: {k: v for k, v in specs.items() if k != "SHP101"})
        with pytest.raises(registry.RegistryError, match="detector without a rule spec: SHP101"):
            registry.all_rules()
    finally:
        registry.all_rules.cache_clear()


def test_an_edited_or_broken_spec_cache_falls_back_to_the_yaml(run_cli, tmp_path: Path):
    specs = tmp_path / "specs"
    env = {"SHARPEDGES_SPEC_CACHE": str(specs)}
    (tmp_path / "model.py").write_text(UNSCALED)
    assert run_cli("check", "--no-cache", "model.py", env=env).returncode == 1
    [cached] = specs.glob("*.json")
    digest, body = cached.read_text().split("\n", 1)
    every_rule_off = json.dumps([{**spec, "default": False} for spec in json.loads(body)])
    one_rule_gone = json.dumps(json.loads(body)[1:])
    for content in (
        digest + "\n" + every_rule_off,  # edited behind the digest's back
        hashlib.sha256(b"[1, 2]").hexdigest() + "\n[1, 2]",  # consistent, but not specs
        hashlib.sha256(one_rule_gone.encode()).hexdigest() + "\n" + one_rule_gone,
        "garbage",
    ):
        cached.write_text(content)
        result = run_cli("check", "--no-cache", "model.py", env=env)
        assert result.returncode == 1 and "SHP101" in result.stdout and result.stderr == ""


def test_a_time_limit_anywhere_in_a_file_is_that_files_error_not_a_traceback():
    """The alarm may land inside libcst's position provider, whose context managers turn it into
    a KeyError about their own bookkeeping (a 100,000-line traceback once): it is still a timeout.
    Run in a process of its own, as the CLI runs: the test process's gc callbacks (hypothesis) would
    run the alarm's handler where no check would."""
    script = (
        "from sharpedges.engine import Engine\n"
        "from sharpedges.registry import all_rules\n"
        "from sharpedges.runner import check_source\n"
        "source = 'import torch\\n\\ndef f():\\n    x = torch.zeros(3)\\n' + '    x.float()\\n' * 20000\n"
        "result = check_source(Engine([all_rules()['SHP702']]), 'big.py', source.encode(), time_limit=0.5)\n"
        "print(result.timed_out, len(result.diagnostics), [(e.path, e.message) for e in result.errors])\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0 and completed.stderr == "", completed.stderr[-2000:]
    assert completed.stdout.startswith("True 0 [('big.py', 'timed out after 0.5 s")


def test_a_broken_spec_met_while_the_arguments_are_read_is_one_line(monkeypatch, capsys):
    """`--select SHP1` checks the selector against the rule specs while argparse reads it: a spec that
    cannot be loaded then is the same one-line error as anywhere else, not a traceback."""
    import sharpedges.specs as specs
    from sharpedges.cli import main
    from sharpedges.yaml_io import DataFileError

    def broken(directory=None):
        raise DataFileError("rules/SHP103.yaml: field 'messages': a message is one line")

    monkeypatch.setattr(specs, "load_specs", broken)
    assert main(["check", "--select", "SHP1", "--no-cache", "examples"]) == 2
    err = capsys.readouterr().err
    assert err == "sharpedges: error: rules/SHP103.yaml: field 'messages': a message is one line\n"
