"""Which skill should own a request: trigger terms matched on word boundaries, scored across skills.

Substring matching (the seed's handoff regexes) sends "inner dimension" to NER, "sample" to SAM and
"division" to vision. Here a term matches only as whole words (separators and a plural ending are
tolerated), a term inside a longer matched term does not count on its own ("vision transformer"
beats "transformer"), neutral phrases from routing.yaml swallow words that look like triggers but
belong to no skill ("memory alignment"), a skill's negative cues count against it, and a request
whose best score stays under MIN_SCORE belongs to no skill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from sharpedges.knowledge.schema import Skill
from sharpedges.yaml_io import DataFileError, load_yaml

NEUTRAL_PHRASES_FILE = Path(__file__).resolve().parent / "routing.yaml"
KEYWORD_WEIGHT = 1.0
PHRASE_WEIGHT = 2.0
EXTRA_WORD_WEIGHT = 0.5  # a multi-word keyword is more specific than a single word
NEGATIVE_WEIGHT = 3.0
MIN_SCORE = 1.0
_SEPARATORS = re.compile(r"[\s\-_/]+")


@dataclass(frozen=True)
class Term:
    text: str
    owner: str | None  # None: a neutral phrase
    kind: str  # keyword | phrase | negative | neutral
    pattern: re.Pattern[str]

    @property
    def weight(self) -> float:
        words = len(_SEPARATORS.split(self.text))
        base = PHRASE_WEIGHT if self.kind == "phrase" else KEYWORD_WEIGHT
        return base + EXTRA_WORD_WEIGHT * (words - 1)


@dataclass(frozen=True)
class Match:
    skill: str
    score: float
    reason: str


@dataclass(frozen=True)
class Route:
    skill: str | None
    matches: list[Match]

    def to_json(self) -> dict:
        return {"skill": self.skill,
                "matches": [{"skill": m.skill, "score": m.score, "reason": m.reason} for m in self.matches]}


def compile_term(text: str) -> re.Pattern[str]:
    """Whole words only; "kv cache" also matches "kv-cache" and "KV_cache"; a plural ending is allowed."""
    words = [re.escape(word) for word in _SEPARATORS.split(text.strip().lower()) if word]
    body = r"[\s\-_/]*".join(words)
    plural = "(?:e?s)?" if words[-1][-1:].isalpha() else ""
    return re.compile(rf"(?<![a-z0-9]){body}{plural}(?![a-z0-9])")


class Router:
    def __init__(self, skills: Iterable[Skill], neutral_phrases: Iterable[str] = (), hub: str | None = None):
        self.hub = hub
        self.terms: list[Term] = []
        for skill in skills:
            for kind, texts in (("keyword", skill.triggers.keywords), ("phrase", skill.triggers.phrases),
                                ("negative", skill.triggers.negative)):
                self.terms += [Term(t.lower(), skill.id, kind, compile_term(t)) for t in dict.fromkeys(texts)]
        self.terms += [Term(t.lower(), None, "neutral", compile_term(t)) for t in neutral_phrases]

    def route(self, text: str) -> Route:
        lowered = text.lower()
        found = [(term, hit.span()) for term in self.terms for hit in term.pattern.finditer(lowered)]
        counted = _outermost([(term, span) for term, span in found if term.kind != "negative"])
        hits: dict[str, dict[str, Term]] = {}
        for term, _span in counted:
            if term.owner is not None:
                hits.setdefault(term.owner, {}).setdefault(term.text, term)  # each term counts once
        negatives: dict[str, dict[str, Term]] = {}
        for term, _span in found:
            if term.kind == "negative":
                negatives.setdefault(term.owner, {}).setdefault(term.text, term)
        matches = []
        for skill in hits:
            positive = sum(term.weight for term in hits[skill].values())
            penalty = NEGATIVE_WEIGHT * len(negatives.get(skill, {}))
            score = round(positive - penalty, 2)
            if score > 0:
                matches.append(Match(skill, score, _reason(hits[skill], negatives.get(skill, {}))))
        matches.sort(key=lambda m: (-m.score, m.skill == self.hub, m.skill))
        owner = matches[0].skill if matches and matches[0].score >= MIN_SCORE else None
        return Route(owner, matches)


def _outermost(found: list[tuple[Term, tuple[int, int]]]) -> list[tuple[Term, tuple[int, int]]]:
    """Drop every hit lying inside a strictly longer hit: the longer phrase is the better evidence."""
    kept = []
    for term, (start, end) in found:
        inside_longer = any(s <= start and end <= e and (e - s) > (end - start) for _other, (s, e) in found)
        if not inside_longer:
            kept.append((term, (start, end)))
    return kept


def _reason(hits: dict[str, Term], negatives: dict[str, Term]) -> str:
    parts = [f"{term.kind} '{term.text}'" for term in hits.values()]
    parts += [f"negative cue '{term.text}' (-{NEGATIVE_WEIGHT:g})" for term in negatives.values()]
    return "matched " + ", ".join(parts)


def load_neutral_phrases(path: Path = NEUTRAL_PHRASES_FILE) -> list[str]:
    data = load_yaml(path)
    phrases = data.get("neutral_phrases") if isinstance(data, dict) else None
    if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
        raise DataFileError(f"{path}: field 'neutral_phrases': must be a list of non-empty strings")
    return phrases


@lru_cache(maxsize=1)
def default_router() -> Router:
    from sharpedges.knowledge.registry import HUB_SKILL, load_knowledge

    return Router(load_knowledge().skills.values(), load_neutral_phrases(), hub=HUB_SKILL)
