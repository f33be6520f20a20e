"""The pinned real corpus (transformers, timm, x-transformers, torchtune, litgpt; 1.43M lines):
every rule runs over all of it with no crash and no time-out, the byte screen changes nothing,
and every fix leaves a file that parses and needs no second fix."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from sharpedges.fixes import apply_edits, still_parses
from sharpedges.registry import all_rules
from sharpedges.runner import CheckOptions, run_check

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def corpus() -> Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import corpus as pinned

    try:
        return pinned.build()
    except Exception as exc:  # no network and no cached wheels
        pytest.skip(f"pinned corpus unavailable: {exc}")


@pytest.fixture(scope="session")
def screened_run(corpus: Path):
    return run_check(CheckOptions(paths=[str(corpus)], preview=True, use_cache=False))


def test_every_rule_runs_over_the_corpus_without_a_crash(corpus, screened_run):
    assert screened_run.files == len(list(corpus.rglob("*.py")))
    assert screened_run.errors == [], "\n".join(f"{e.path}: {e.message}" for e in screened_run.errors[:20])


def test_byte_screen_changes_no_finding(corpus, screened_run):
    unscreened = run_check(CheckOptions(paths=[str(corpus)], preview=True, use_cache=False, screen=False))
    assert unscreened.errors == []
    assert [d.to_json() for d in unscreened.diagnostics] == [d.to_json() for d in screened_run.diagnostics]


def test_fixes_on_the_corpus_parse_and_are_idempotent(corpus, screened_run, tmp_path):
    fixable = {}
    for d in screened_run.diagnostics:
        if d.fix:
            fixable.setdefault(d.path, []).append(d.fix)
    for path, fixes in fixable.items():
        copy = tmp_path / Path(path).relative_to(corpus)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        text, _ = apply_edits(copy.read_text(encoding="utf-8"), fixes)
        assert still_parses(text), f"fixing {path} would break it"
        copy.write_text(text, encoding="utf-8")
    if not fixable:
        return
    again = run_check(CheckOptions(paths=[str(tmp_path)], preview=True, use_cache=False))
    assert not [d for d in again.diagnostics if d.fix], "fixes are not idempotent"

