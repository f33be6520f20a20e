"""Routing: whole-word triggers scored across skills, measured on a labelled set of real requests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.knowledge.skill_worlds import make_skill

from sharpedges.knowledge.routing import MIN_SCORE, Router, compile_term, load_neutral_phrases
from sharpedges.knowledge.schema import Skill

CASES = yaml.safe_load((Path(__file__).parent / "routing_cases.yaml").read_text(encoding="utf-8"))["cases"]
ACCURACY_THRESHOLD = 0.9


def skill(skill_id, keywords, phrases=(), negative=()):
    data = make_skill(skill_id, keywords=keywords)
    data["triggers"] = {"keywords": keywords, "phrases": list(phrases), "negative": list(negative)}
    return Skill.model_validate(data)


@pytest.fixture(scope="module")
def toy_router():
    """The seed's trigger words, which as substrings misroute the classic traps."""
    return Router([
        skill("nlp-advanced", ["ner", "entity"]),
        skill("computer-vision-deep", ["sam", "vision", "segment"], phrases=["vision transformer"]),
        skill("reinforcement-learning", ["rlhf", "alignment", "ppo"], negative=["sequence alignment"]),
        skill("transformer-architecture", ["attention", "transformer"], phrases=["kv cache"]),
    ], neutral_phrases=["memory alignment"], hub="transformer-architecture")


@pytest.mark.parametrize("text", ["fix the inner dimension of this matmul", "draw a sample of rows",
                                  "integer division by zero", "fix memory alignment of my buffers",
                                  "a sampler for my dataloader"])
def test_substring_traps_route_nowhere(toy_router, text):
    assert toy_router.route(text).skill is None


@pytest.mark.parametrize("text, owner", [
    ("NER for legal documents", "nlp-advanced"), ("use SAM for masks", "computer-vision-deep"),
    ("RLHF with PPO", "reinforcement-learning"), ("my KV-cache grows", "transformer-architecture"),
    ("kv_cache memory", "transformer-architecture"), ("segments of the image", "computer-vision-deep"),
])
def test_whole_words_and_their_variants_match(toy_router, text, owner):
    assert toy_router.route(text).skill == owner


def test_a_longer_phrase_swallows_the_words_inside_it(toy_router):
    route = toy_router.route("a vision transformer for images")
    assert route.skill == "computer-vision-deep"
    assert [m.skill for m in route.matches] == ["computer-vision-deep"]


def test_negative_cue_counts_against_its_skill(toy_router):
    assert toy_router.route("alignment of a chat model").skill == "reinforcement-learning"
    assert toy_router.route("sequence alignment of proteins").skill is None


def test_ties_go_to_the_specialist_not_the_hub(toy_router):
    route = toy_router.route("attention in NER")
    assert route.skill == "nlp-advanced"
    assert {m.skill for m in route.matches} == {"nlp-advanced", "transformer-architecture"}


def test_json_shape_and_threshold(toy_router):
    payload = toy_router.route("transformer").to_json()
    assert payload["skill"] == "transformer-architecture"
    assert payload["matches"][0] == {"skill": "transformer-architecture", "score": MIN_SCORE,
                                     "reason": "matched keyword 'transformer'"}
    assert toy_router.route("").to_json() == {"skill": None, "matches": []}


def test_term_compilation_is_literal():
    assert compile_term("c++").search("written in c++ today")
    assert not compile_term("a.b").search("axb")


def test_neutral_phrases_file_loads():
    assert "memory alignment" in load_neutral_phrases()


def test_routing_accuracy_on_the_labelled_set(real_kb):
    from sharpedges.knowledge.routing import default_router

    router = default_router()
    assert len(CASES) >= 90
    assert {case["skill"] for case in CASES} >= set(real_kb.skills)
    misses = [(case["text"], case["skill"], router.route(case["text"]).skill) for case in CASES
              if router.route(case["text"]).skill != case["skill"]]
    accuracy = 1 - len(misses) / len(CASES)
    print(f"\nrouting accuracy: {accuracy:.1%} ({len(CASES) - len(misses)}/{len(CASES)})")
    for text, expected, got in misses:
        print(f"  miss: {text!r}: expected {expected}, got {got}")
    assert accuracy >= ACCURACY_THRESHOLD, f"accuracy {accuracy:.1%}; misses: {misses}"


def test_every_trap_routes_right(real_kb):
    from sharpedges.knowledge.routing import default_router

    traps = [case for case in CASES if "trap" in case]
    assert len(traps) >= 8
    wrong = [(c["text"], c["skill"], default_router().route(c["text"]).skill) for c in traps
             if default_router().route(c["text"]).skill != c["skill"]]
    assert not wrong


def test_route_cli_json_through_the_real_command(real_kb):
    result = subprocess.run([sys.executable, "-m", "sharpedges", "route", "--format", "json",
                             "fine-tune", "llama", "with", "LoRA"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"skill", "matches"}
    assert payload["skill"] == "llm-fine-tuning"
    for match in payload["matches"]:
        assert set(match) == {"skill", "score", "reason"} and isinstance(match["score"], float)
    scores = [match["score"] for match in payload["matches"]]
    assert scores == sorted(scores, reverse=True)


def test_route_cli_off_topic_gives_null_and_text_default(real_kb):
    result = subprocess.run([sys.executable, "-m", "sharpedges", "route", "--format", "json", "bake bread"],
                            capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout) == {"skill": None, "matches": []}
    text = subprocess.run([sys.executable, "-m", "sharpedges", "route", "kv cache memory"],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and text.stdout.splitlines()[0] == "transformer-architecture"
