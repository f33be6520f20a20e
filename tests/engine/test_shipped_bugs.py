"""The shipped-bug recall set (benchmarks/shipped_bugs.yaml) without downloading anything: its schema,
its rule codes, and the holdout part fixed by the rule written in its header."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pydantic
import pytest
import yaml

from sharpedges.registry import all_rules

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "shipped_bugs.py"


@pytest.fixture(scope="module")
def shipped_bugs():
    spec = importlib.util.spec_from_file_location("shipped_bugs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "benchmarks" / "shipped_bugs.yaml").read_text())


def test_the_set_validates_and_is_big_enough(shipped_bugs):
    data = shipped_bugs.load()
    assert len(data.cases) >= 37
    assert len({case.id for case in data.cases}) == len(data.cases)


def test_every_case_expects_a_rule_that_exists(shipped_bugs):
    rules = set(all_rules())
    unknown = {case.id: case.rule for case in shipped_bugs.load().cases if case.rule not in rules}
    assert unknown == {}


def test_the_holdout_follows_the_rule_in_the_header(shipped_bugs, raw):
    assert f"round {shipped_bugs.HOLDOUT_ROUND}" in raw["holdout_rule"]
    for case in raw["cases"]:
        assert case["holdout"] is shipped_bugs.is_held_out(case.get("round", 1)), case["id"]


def test_the_holdout_is_a_whole_fresh_round_that_spans_families(shipped_bugs):
    cases = shipped_bugs.load().cases
    held = [case for case in cases if case.holdout]
    assert {case.round for case in held} == {shipped_bugs.HOLDOUT_ROUND}
    # a fresh round large enough to measure on its own; the set grows by every opened round, so a share of
    # it would ask each round to outgrow all the earlier ones
    assert len(held) >= 15
    assert len({case.family for case in held}) >= 4
    assert len({case.family for case in cases if not case.holdout}) >= 6


def test_a_holdout_flag_that_contradicts_the_rule_is_rejected(shipped_bugs, raw):
    case = dict(raw["cases"][0], holdout=not raw["cases"][0]["holdout"])
    with pytest.raises(pydantic.ValidationError, match="holdout rule"):
        shipped_bugs.ShippedBug.model_validate(case)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lines": [12, 3]}, "1-based line range"),
        ({"also_lines": [[0, 2]]}, "1-based line range"),
        ({"fixed": "SAME"}, "same release"),
        ({"path": "../outside.py"}, "relative path"),
        ({"rule": "SHP999"}, "pattern"),
        ({"severity": "high"}, "Extra inputs"),
    ],
)
def test_malformed_cases_are_rejected_with_the_reason(shipped_bugs, raw, change, message):
    case = dict(raw["cases"][0], **change)
    if case["fixed"] == "SAME":
        case["fixed"] = case["buggy"]
    with pytest.raises(pydantic.ValidationError, match=message):
        shipped_bugs.ShippedBug.model_validate(case)


def test_a_duplicate_id_is_rejected(shipped_bugs, raw):
    doubled = dict(raw, cases=[raw["cases"][0], raw["cases"][0]])
    with pytest.raises(pydantic.ValidationError, match="duplicate case id"):
        shipped_bugs.ShippedBugs.model_validate(doubled)


def test_sdist_layouts_are_located_without_the_network(shipped_bugs, tmp_path):
    nested = tmp_path / "pkg-1.0" / "pkg" / "mod.py"
    nested.parent.mkdir(parents=True)
    nested.write_text("x = 1\n")
    assert shipped_bugs.locate(tmp_path, "pkg/mod.py") == nested
    with pytest.raises(FileNotFoundError):
        shipped_bugs.locate(tmp_path, "pkg/other.py")


def test_an_archive_from_the_index_is_a_pure_wheel_first_then_any_wheel_then_the_sdist(shipped_bugs):
    """What the harness reads when pip cannot download a release (a setup.py needing CUDA, a wheel for no
    Python here): the file of exactly that version, the most portable one."""

    def entry(filename: str) -> dict:
        return {"filename": filename, "url": f"https://files.example/{filename}"}

    sdist, cp310 = entry("equiformer-pytorch-0.0.11.tar.gz"), entry("torchvision-0.14.1-cp310-cp310-linux_x86_64.whl")
    files = [entry("equiformer-pytorch-0.0.1.tar.gz"), entry("equiformer_pytorch-0.0.11.1.tar.gz"), sdist]
    assert shipped_bugs.pick_archive(files, "equiformer-pytorch", "0.0.11") is sdist
    pure = entry("torchvision-0.14.1-py3-none-any.whl")
    assert shipped_bugs.pick_archive([sdist, cp310], "torchvision", "0.14.1") is cp310
    assert shipped_bugs.pick_archive([cp310, pure], "torchvision", "0.14.1") is pure
    with pytest.raises(FileNotFoundError, match=r"torchvision==0\.15\.0: no file"):
        shipped_bugs.pick_archive([cp310, pure], "torchvision", "0.15.0")


def test_a_case_is_admitted_only_when_its_file_differs_between_releases_and_holds_its_lines(
    shipped_bugs, raw, tmp_path, monkeypatch
):
    """`--verify` runs no detector: it fetches both releases and reads the case's file in each."""
    case = shipped_bugs.ShippedBug.model_validate(dict(raw["cases"][0], lines=[2, 3]))
    releases = {case.buggy: "import torch\nx = 1\ny = 2\n", case.fixed: "import torch\nx = 1\ny = 3\n"}

    def release_dir(package: str, version: str) -> Path:
        assert package == case.package
        folder = tmp_path / version
        (folder / case.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / case.path).write_text(releases[version])
        return folder

    monkeypatch.setattr(shipped_bugs, "release_dir", release_dir)
    assert shipped_bugs.admission_problems(case) == []
    releases[case.fixed] = releases[case.buggy]
    assert shipped_bugs.admission_problems(case) == [f"{case.path} is byte-identical in {case.buggy} and {case.fixed}"]
    far = case.model_copy(update={"lines": (2, 9)})
    assert f"lines 2-9 lie outside {case.path} (3 lines in {case.buggy})" in shipped_bugs.admission_problems(far)
