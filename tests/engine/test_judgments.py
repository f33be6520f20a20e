"""The judged findings of both corpora (benchmarks/judgments/*.yaml) are well formed, and the report
built from them counts verdicts per rule and names the findings that disappeared or are new.
No network: the corpora themselves are not needed here."""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from sharpedges.specs import load_specs

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import validation_corpus  # noqa: E402


@pytest.mark.parametrize("corpus", ["validation", "pinned"])
def test_every_judgment_names_a_known_rule_a_verdict_and_a_reason(corpus):
    judged = validation_corpus.load_judgments(corpus)
    assert judged, f"benchmarks/judgments/{corpus}.yaml holds no judgment"
    codes = set(load_specs())
    for (package, path, line, rule), entry in judged.items():
        assert rule in codes
        assert entry["verdict"] in ("true", "deliberate", "false")
        assert package and path.endswith(".py") and line > 0
        assert "\n" not in entry["reason"]


def test_a_judgment_without_a_valid_verdict_is_refused(tmp_path, monkeypatch):
    (tmp_path / "validation.yaml").write_text(
        "judgments:\n- {package: p, path: a.py, line: 3, rule: SHP702, verdict: maybe, reason: r}\n"
    )
    monkeypatch.setattr(validation_corpus, "JUDGMENTS", tmp_path)
    with pytest.raises(SystemExit, match="verdict must be one of"):
        validation_corpus.load_judgments("validation")


def test_a_bare_yaml_true_reads_as_the_true_verdict(tmp_path, monkeypatch):
    (tmp_path / "validation.yaml").write_text(
        "judgments:\n- {package: p, path: a.py, line: 3, rule: SHP702, verdict: true, reason: r}\n"
    )
    monkeypatch.setattr(validation_corpus, "JUDGMENTS", tmp_path)
    assert validation_corpus.load_judgments("validation")[("p", "a.py", 3, "SHP702")]["verdict"] == "true"


def test_compare_counts_verdicts_and_names_disappeared_and_new_findings():
    judged = {
        ("p", "a.py", 3, "SHP702"): {"verdict": "true", "reason": "r"},
        ("p", "a.py", 9, "SHP702"): {"verdict": "false", "reason": "r"},
    }
    findings = [
        {"path": "./p/a.py", "line": 3, "rule": "SHP702", "message": "m3"},
        {"path": "./p/sub/b.py", "line": 5, "rule": "SHP701", "message": "m5"},
    ]
    counts, gone, unjudged = validation_corpus.compare(findings, judged)
    assert counts == {"SHP702": {"true": 1}, "SHP701": {"unjudged": 1}}
    assert gone == [("p", "a.py", 9, "SHP702")]
    assert unjudged == [(("p", "sub/b.py", 5, "SHP701"), "m5")]


def test_archives_yield_only_python_files_without_the_sdist_folder(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/model.py", "x = 1\n")
        archive.writestr("pkg/data.json", "{}")
        archive.writestr("pkg-1.0.dist-info/extra.py", "")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name, data in (("pkg-1.0/pkg/model.py", b"x = 1\n"), ("pkg-1.0/README", b"r")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert validation_corpus._archive_members(wheel) == [("pkg/model.py", b"x = 1\n")]
    assert validation_corpus._archive_members(sdist) == [("pkg/model.py", b"x = 1\n")]


def test_the_default_set_bar_counts_deliberate_findings_against_a_rule():
    meets_bar = validation_corpus.meets_bar
    assert meets_bar(Counter())
    assert meets_bar(Counter(true=9, false=1)) and not meets_bar(Counter(true=8, false=2))
    assert meets_bar(Counter(true=4, deliberate=1)) and not meets_bar(Counter(true=3, deliberate=2))
    assert not meets_bar(Counter(deliberate=1))
