"""Which skill should own a request: trigger terms matched on word boundaries and weighted by how
specific they are, with a retrieval fallback over the skills' own text.

Substring matching (regex handoffs) sends "inner dimension" to NER, "sample" to SAM and "division"
to vision. Here a term matches only as whole words (separators and a plural ending are tolerated),
letters and digits are split apart on both sides so versions and counts do not hide a term
("FSDP2" is "fsdp 2", "YOLOv8" is "yolo 8", "8xH100" is "8 xh 100"), a term inside a longer matched
term does not count on its own ("vision transformer" beats "transformer"), neutral phrases from
routing.yaml swallow words that look like triggers but belong to no skill ("memory alignment"), and
a skill's negative cues count against it.

A term's weight is its kind's base weight times its specificity: how few skills mention it anywhere
in their text (an inverse document frequency over the skills themselves, so no list is tuned by
hand). "fine-tune" is in most skills and weighs little; "siglip" is in one and decides. Ties go to
the match whose best term is the more specific, then away from the hub. A request that matches no
trigger is scored against each skill's whole text (BM25), and routed only when enough of its rare
words agree; otherwise, or under MIN_SCORE, it belongs to no skill.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from typing_extensions import TypedDict  # pydantic (the MCP server's output schema) needs this one before 3.12

from sharpedges.knowledge.schema import Skill
from sharpedges.yaml_io import DataFileError, load_yaml

ROUTING_DATA_FILE = Path(__file__).resolve().parent / "routing.yaml"
KEYWORD_WEIGHT = 1.0
PHRASE_WEIGHT = 2.0
EXTRA_WORD_WEIGHT = 0.5  # a multi-word keyword is more specific than a single word
NEGATIVE_WEIGHT = 3.0
SPECIFICITY_FLOOR = 0.25  # the weight share a term keeps even when every skill mentions it
# The hub is the generalist every request may touch ("a Mistral model"); a specialist with as much
# evidence owns the request, and the hub hands off to it anyway.
HUB_DISCOUNT = 0.8
MIN_SCORE = 1.0  # evidence (unweighted) a request needs to be routed on its triggers
# Retrieval fallback (BM25 over each skill's text). A request is about ML at all only if it uses a
# word at least ANCHOR_SHARE of the skills use ("loss", "layer", "tokens"); it is routed only if it
# also shares a rare word (used by at most RARE_SHARE of the skills) with the winner, and scores enough.
FALLBACK_ANCHOR_SHARE = 0.5
FALLBACK_RARE_SHARE = 0.4
FALLBACK_MIN_SCORE = 5.0
BM25_K1, BM25_B = 1.2, 0.75
_SEPARATORS = re.compile(r"[\s\-_/]+")
_VERSION_V = re.compile(r"(?<=[a-z]{2})v(?=\d)")  # yolov8 -> yolo 8, but not "v8" alone
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])")
_WORD = re.compile(r"[a-z][a-z0-9+]*")


def normalise(text: str) -> str:
    """Lower case, letters and digits split apart (a version 'v' dropped): FSDP2 -> fsdp 2, YOLOv8 -> yolo 8."""
    return _LETTER_DIGIT.sub(" ", _VERSION_V.sub(" ", text.lower()))


@dataclass(frozen=True)
class Term:
    text: str
    owner: str | None  # None: a neutral phrase
    kind: str  # keyword | phrase | negative | neutral
    pattern: re.Pattern[str]
    specificity: float = 1.0  # 1.0: only its own skill mentions it; SPECIFICITY_FLOOR: every skill does

    @property
    def evidence(self) -> float:
        """How much a match says, before specificity: what MIN_SCORE is measured against."""
        words = len(_SEPARATORS.split(self.text))
        base = PHRASE_WEIGHT if self.kind == "phrase" else KEYWORD_WEIGHT
        return base + EXTRA_WORD_WEIGHT * (words - 1)

    @property
    def weight(self) -> float:
        return self.evidence * self.specificity


class RouteMatch(TypedDict):
    skill: str
    score: float
    reason: str


class RouteAnswer(TypedDict):
    """`sharpedges route --format json` and the MCP `route` tool."""

    skill: str | None
    matches: list[RouteMatch]


@dataclass(frozen=True)
class Match:
    skill: str
    score: float
    reason: str


@dataclass(frozen=True)
class Route:
    skill: str | None
    matches: list[Match]

    def to_json(self) -> RouteAnswer:
        return {
            "skill": self.skill,
            "matches": [{"skill": m.skill, "score": m.score, "reason": m.reason} for m in self.matches],
        }


def compile_term(text: str) -> re.Pattern[str]:
    """Whole words only; "kv cache" also matches "kv-cache" and "KV_cache"; a plural ending is allowed."""
    words = [re.escape(word) for word in _SEPARATORS.split(normalise(text).strip()) if word]
    body = r"[\s\-_/]*".join(words)
    plural = "(?:e?s)?" if words[-1][-1:].isalpha() else ""
    return re.compile(rf"(?<![a-z0-9]){body}{plural}(?![a-z0-9])")


def skill_text(skill: Skill) -> str:
    """Everything a skill says, as one normalised string: what specificity and retrieval read."""

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    return normalise(" ".join(strings(skill.model_dump(mode="json"))))


class Router:
    def __init__(
        self,
        skills: Iterable[Skill],
        neutral_phrases: Iterable[str] = (),
        hub: str | None = None,
        stop_words: Iterable[str] = (),
    ):
        skills = list(skills)
        self.hub = hub
        texts = {skill.id: skill_text(skill) for skill in skills}
        self.terms: list[Term] = []
        for skill in skills:
            for kind, entries in (
                ("keyword", skill.triggers.keywords),
                ("phrase", skill.triggers.phrases),
                ("negative", skill.triggers.negative),
            ):
                for text in dict.fromkeys(entries):
                    pattern = compile_term(text)
                    specificity = _specificity(pattern, skill.id, texts)
                    self.terms.append(Term(text.lower(), skill.id, kind, pattern, specificity))
        self.terms += [Term(t.lower(), None, "neutral", compile_term(t)) for t in neutral_phrases]
        self.retriever = _Retriever(texts, set(stop_words))

    def route(self, text: str) -> Route:
        lowered = normalise(text)
        found = [(term, hit.span()) for term in self.terms for hit in term.pattern.finditer(lowered)]
        counted = _outermost([(term, span) for term, span in found if term.kind != "negative"])
        hits: dict[str, dict[str, Term]] = {}
        for term, _span in counted:
            if term.owner is not None:
                hits.setdefault(term.owner, {}).setdefault(term.text, term)  # each term counts once
        negatives: dict[str, dict[str, Term]] = {}
        for term, _span in found:
            if term.kind == "negative" and term.owner is not None:
                negatives.setdefault(term.owner, {}).setdefault(term.text, term)
        scored = []
        for skill in hits:
            penalty = NEGATIVE_WEIGHT * len(negatives.get(skill, {}))
            discount = HUB_DISCOUNT if skill == self.hub else 1.0
            score = round(discount * sum(term.weight for term in hits[skill].values()) - penalty, 2)
            evidence = sum(term.evidence for term in hits[skill].values()) - penalty
            if score > 0:
                sharpest = max(term.specificity for term in hits[skill].values())
                match = Match(skill, score, _reason(hits[skill], negatives.get(skill, {})))
                scored.append((match, sharpest, evidence))
        scored.sort(key=lambda entry: (-entry[0].score, -entry[1], entry[0].skill == self.hub, entry[0].skill))
        matches = [match for match, _sharpest, _evidence in scored]
        if scored and scored[0][2] >= MIN_SCORE:
            return Route(matches[0].skill, matches)
        if not counted:  # no trigger and no neutral phrase: ask the skills' text
            retrieved = self.retriever.route(lowered)
            if retrieved is not None:
                return Route(retrieved.skill, [retrieved])
        return Route(None, matches)


def _specificity(pattern: re.Pattern[str], owner: str, texts: dict[str, str]) -> float:
    """The owner's share of every mention of the term across the skills' text: 1.0 when only the
    owner uses it ("siglip"), near SPECIFICITY_FLOOR when every skill does ("fine-tuning")."""
    mentions = {skill: len(pattern.findall(text)) for skill, text in texts.items()}
    total = sum(mentions.values())
    share = mentions.get(owner, 0) / total if total else 1.0
    return round(SPECIFICITY_FLOOR + (1 - SPECIFICITY_FLOOR) * share, 4)


class _Retriever:
    """BM25 over each skill's text, for requests that name no trigger ("retrieval-augmented generation")."""

    def __init__(self, texts: dict[str, str], stop_words: set[str]):
        self.stop_words = stop_words
        self.counts = {skill: Counter(self.words(text)) for skill, text in texts.items()}
        self.lengths = {skill: sum(counts.values()) for skill, counts in self.counts.items()}
        self.average_length = sum(self.lengths.values()) / max(1, len(self.lengths))
        mentions = Counter(word for counts in self.counts.values() for word in counts)
        total = len(self.counts)
        self.idf = {word: math.log(1 + (total - n + 0.5) / (n + 0.5)) for word, n in mentions.items()}
        self.rare = {word for word, n in mentions.items() if n <= max(1, FALLBACK_RARE_SHARE * total)}
        self.anchors = {word for word, n in mentions.items() if n >= FALLBACK_ANCHOR_SHARE * total}

    def words(self, text: str) -> list[str]:
        return [_stem(word) for word in _WORD.findall(text) if len(word) > 2 and word not in self.stop_words]

    def route(self, normalised_text: str) -> Match | None:
        query = set(self.words(normalised_text))
        if not query & self.anchors:
            return None  # no word the skills share: not an ML request
        best: tuple[float, str, list[str]] | None = None
        for skill, counts in self.counts.items():
            shared = sorted(word for word in query if counts[word])
            norm = BM25_K1 * (1 - BM25_B + BM25_B * self.lengths[skill] / self.average_length)
            score = sum(self.idf[word] * counts[word] * (BM25_K1 + 1) / (counts[word] + norm) for word in shared)
            if best is None or score > best[0]:
                best = (score, skill, shared)
        if best is None:
            return None
        score, skill, shared = best
        rare = [word for word in shared if word in self.rare]
        if score < FALLBACK_MIN_SCORE or not rare:
            return None
        return Match(skill, round(score, 2), "retrieved from skill text: " + ", ".join(f"'{w}'" for w in rare))


def _stem(word: str) -> str:
    """A light suffix strip so "truncates", "truncated" and "truncation" meet: retrieval only."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _outermost(found: list[tuple[Term, tuple[int, int]]]) -> list[tuple[Term, tuple[int, int]]]:
    """Drop every hit lying inside a strictly longer hit: the longer phrase is the better evidence.
    One sweep over the distinct spans by start (longest first at each start): a span lies inside a
    longer one exactly when an earlier span in that order reaches at least as far."""
    inside: set[tuple[int, int]] = set()
    reach = -1
    for start, end in sorted({span for _term, span in found}, key=lambda span: (span[0], -span[1])):
        if reach >= end:
            inside.add((start, end))
        reach = max(reach, end)
    return [(term, span) for term, span in found if span not in inside]


def _reason(hits: dict[str, Term], negatives: dict[str, Term]) -> str:
    parts = [f"{term.kind} '{term.text}'" for term in hits.values()]
    parts += [f"negative cue '{term.text}' (-{NEGATIVE_WEIGHT:g})" for term in negatives.values()]
    return "matched " + ", ".join(parts)


def _string_list(path: Path, data: object, field: str) -> list[str]:
    values = data.get(field) if isinstance(data, dict) else None
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise DataFileError(f"{path}: field '{field}': must be a list of non-empty strings")
    return values


def load_neutral_phrases(path: Path = ROUTING_DATA_FILE) -> list[str]:
    return _string_list(path, load_yaml(path), "neutral_phrases")


def load_stop_words(path: Path = ROUTING_DATA_FILE) -> list[str]:
    return _string_list(path, load_yaml(path), "stop_words")


@lru_cache(maxsize=1)
def default_router() -> Router:
    from sharpedges.knowledge.registry import HUB_SKILL, load_knowledge

    return Router(load_knowledge().skills.values(), load_neutral_phrases(), hub=HUB_SKILL, stop_words=load_stop_words())
