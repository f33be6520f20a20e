"""The skill schema is strict: every mistake is refused with the file and the field named."""

from __future__ import annotations

import pytest
import yaml

from sharpedges.knowledge.schema import load_skill
from sharpedges.yaml_io import DataFileError
from tests.knowledge.skill_worlds import make_skill


def write(tmp_path, data, name="demo-skill"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_minimal_skill_loads(tmp_path):
    skill = load_skill(write(tmp_path, make_skill("demo-skill")))
    assert skill.id == "demo-skill" and len(skill.sharp_edges) == 5


def test_unknown_top_level_field_names_file_and_field(tmp_path):
    data = make_skill("demo-skill") | {"colour": "blue"}
    with pytest.raises(DataFileError, match=r"demo-skill\.yaml: field 'colour': Extra inputs are not permitted"):
        load_skill(write(tmp_path, data))


def test_unknown_nested_field_names_its_path(tmp_path):
    data = make_skill("demo-skill")
    data["sharp_edges"][2]["fix"] = "nope"
    with pytest.raises(DataFileError, match=r"demo-skill\.yaml: field 'sharp_edges\.2\.fix'"):
        load_skill(write(tmp_path, data))


def test_bad_severity_names_the_edge(tmp_path):
    data = make_skill("demo-skill")
    data["sharp_edges"][2]["severity"] = "SEVERE"
    with pytest.raises(DataFileError, match=r"field 'sharp_edges\.2\.severity'"):
        load_skill(write(tmp_path, data))


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("philosophy"), "philosophy"),
        (lambda d: d.update(principles=["only one"]), "principles"),
        (lambda d: d.update(sharp_edges=d["sharp_edges"][:4]), "sharp_edges"),
        (lambda d: d.update(description="Helps with things."), "description"),
        (lambda d: d.update(version="one"), "version"),
        (lambda d: d["sharp_edges"][0].update(rules=["SHP1"]), "sharp_edges.0.rules"),
        (lambda d: d["sharp_edges"][1].update(id="Not Kebab"), "sharp_edges.1.id"),
        (lambda d: d["sharp_edges"][1].update(id="edge-0"), "sharp_edges"),
        (lambda d: d["triggers"].update(keywords=[]), "triggers.keywords"),
        (lambda d: d.update(description="Use when " + "x" * 1100 + " Not for y."), "description"),
        (lambda d: d.update(description="Use when training anything."), "description"),  # never says when not to
        (lambda d: d["sharp_edges"][0].pop("summary"), "sharp_edges.0.summary"),
        (lambda d: d["sharp_edges"][0].update(summary="Two lines.\nNot one."), "sharp_edges.0.summary"),
        (lambda d: d["sharp_edges"][0].update(summary="no full stop"), "sharp_edges.0.summary"),
        (lambda d: d["sharp_edges"][0].update(summary="x" * 200 + "."), "sharp_edges.0.summary"),
        (lambda d: d["sharp_edges"][0].update(grep="masked_fill("), "sharp_edges.0.grep"),
    ],
)
def test_each_violation_is_refused_with_its_field(tmp_path, mutate, field):
    data = make_skill("demo-skill")
    mutate(data)
    with pytest.raises(DataFileError) as caught:
        load_skill(write(tmp_path, data))
    assert f"field '{field}'" in str(caught.value)
    assert "demo-skill.yaml" in str(caught.value)


def test_id_must_match_file_name(tmp_path):
    with pytest.raises(DataFileError, match=r"other-name\.yaml: field 'id'"):
        load_skill(write(tmp_path, make_skill("demo-skill"), name="other-name"))


def test_unsafe_yaml_tag_is_refused_with_file_and_line(tmp_path):
    path = tmp_path / "demo-skill.yaml"
    path.write_text("id: demo-skill\nname: !!python/object/apply:os.system ['echo pwned']\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"demo-skill\.yaml:2: "):
        load_skill(path)
