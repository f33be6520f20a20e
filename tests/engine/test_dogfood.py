"""sharpedges on its own tree: the only findings are the bundled examples' bugs, and no file of ours
(the analysis layer is full of helpers that call helpers) makes any rule time out."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_own_tree_is_clean_except_the_examples(run_cli):
    paths = [
        str(REPO / part) for part in ("sharpedges", "detectors", "reference_impls", "tests", "benchmarks", "examples")
    ]
    result = run_cli("check", "--format", "json", "--no-cache", "--preview", *paths)
    document = json.loads(result.stdout)
    assert document["errors"] == []
    outside = [d for d in document["diagnostics"] if "/examples/" not in d["path"]]
    assert outside == []
