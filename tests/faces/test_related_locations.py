"""Findings carry the locations their claim rests on, and every face uses them: review keeps a
finding whose cause changed, SARIF lists them as related locations, the Markdown review names them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sharpedges.diagnostics import Diagnostic
from sharpedges.review import touches_change
from tests.detectors.modules import NANOGPT_ATTENTION

REPO = Path(__file__).resolve().parents[2]


def finding(**extra) -> Diagnostic:
    return Diagnostic(
        rule="SHP202",
        name="causal-mask-inverted",
        severity="error",
        path="model.py",
        line=20,
        column=9,
        end_line=20,
        end_column=40,
        message="mask sees the future",
        help="sharpedges rule SHP202",
        **extra,
    )


BUILT_HERE = {"line": 12, "column": 16, "end_line": 12, "end_column": 30, "message": "the mask is built here"}


def test_review_keeps_a_finding_whose_cause_changed():
    rests = finding(related=[BUILT_HERE])
    assert touches_change(rests, {"model.py": frozenset({12})})  # only the mask's line changed
    assert touches_change(rests, {"model.py": frozenset({20})})
    assert not touches_change(rests, {"model.py": frozenset({5, 30})})
    assert not touches_change(finding(), {"model.py": frozenset({12})})
    elsewhere = finding(related=[{**BUILT_HERE, "path": "masks.py"}])
    assert touches_change(elsewhere, {"masks.py": frozenset({12})})
    assert not touches_change(elsewhere, {"model.py": frozenset({12})})


def test_related_locations_survive_json_and_the_cache_shape():
    from sharpedges.cache import valid_entry

    data = finding(related=[BUILT_HERE]).to_json()
    assert data["related"] == [BUILT_HERE] and Diagnostic.from_json(json.loads(json.dumps(data))) == finding(
        related=[BUILT_HERE]
    )
    assert valid_entry({"key": "k", "diagnostics": [data], "errors": [], "deps": {}, "warnings": []}, "k")
    broken = {**data, "related": [{"line": "12"}]}
    assert not valid_entry({"key": "k", "diagnostics": [broken], "errors": [], "deps": {}, "warnings": []}, "k")


def test_sarif_lists_related_locations_and_stays_valid():
    import jsonschema

    from sharpedges.outputs.sarif import document
    from sharpedges.runner import RunResult
    from sharpedges.specs import load_specs

    sarif = document(RunResult([finding(related=[BUILT_HERE])], [], 1), load_specs())
    [result] = sarif["runs"][0]["results"]
    assert result["relatedLocations"] == [
        {
            "id": 1,
            "message": {"text": "the mask is built here"},
            "physicalLocation": {
                "artifactLocation": {"uri": "model.py"},
                "region": {"startLine": 12, "startColumn": 16, "endLine": 12, "endColumn": 30},
            },
        }
    ]
    # shared/ lies beside the checkout (CI copies it there); a clone elsewhere reads the workspace's.
    schema_path = next(
        path
        for base in (REPO.parent / "shared", Path("/work/shared"))
        if (path := base / "schemas" / "sarif-schema-2.1.0.json").exists()
    )
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(sarif, schema)


def test_the_markdown_review_names_where_the_claim_rests():
    from sharpedges.knowledge.explain import explain_rule
    from sharpedges.outputs.markdown import render
    from sharpedges.review import Review
    from sharpedges.runner import RunResult

    review = Review(
        RunResult([finding(related=[BUILT_HERE])], [], 1),
        {"SHP202": explain_rule("SHP202")},
        "HEAD",
        ["model.py"],
        False,
    )
    assert "- rests on `model.py:12`: the mask is built here" in render(review)


@pytest.mark.parametrize(
    "old, new, rule, reported_line",
    [
        ("torch.tril(", "torch.triu(", "SHP202", 24),  # the mask inverted where it is built (line 14)
        (" * (1.0 / math.sqrt(k.size(-1)))", "", "SHP101", 25),  # the scale dropped on line 23
    ],
    ids=["mask-inverted-at-construction", "scale-removed-from-scores"],
)
def test_review_reports_a_finding_caused_by_a_change_on_another_line(run_cli, tmp_path, old, new, rule, reported_line):
    import os

    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, env={**os.environ, **env})

    (tmp_path / "model.py").write_text(NANOGPT_ATTENTION)
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-q", "-m", "base")
    (tmp_path / "model.py").write_text(NANOGPT_ATTENTION.replace(old, new))
    result = run_cli("review", "--base", "main", "--format", "json", "--no-cache", "--select", rule)
    assert result.returncode == 1, result.stdout + result.stderr
    [finding_] = json.loads(result.stdout)["diagnostics"]
    assert (finding_["rule"], finding_["line"]) == (rule, reported_line)
    assert finding_["related"] and finding_["related"][0]["line"] in (14, 23)
