"""Renders skills through jinja2 templates in a sandbox.

Skill text is only ever passed to templates as data, never compiled as a template, so a field
holding `{{ ... }}` comes out literally. StrictUndefined turns a template typo into an error
instead of an empty string, and nothing here depends on time, locale or hash order, so the
same skills give the same bytes.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from sharpedges.knowledge.registry import KnowledgeBase
from sharpedges.knowledge.schema import Skill

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# The parts of a skill's Markdown, in document order; `sharpedges skill ID --section NAME` picks one.
MARKDOWN_PARTS = (
    "overview",
    "principles",
    "knowledge",
    "glossary",
    "patterns",
    "anti-patterns",
    "sharp-edges",
    "tradeoffs",
    "failure-modes",
    "decision-guides",
    "collaboration",
    "references",
)


def code_fence(source: str, language: str = "") -> str:
    """A fenced block whose fence is longer than any backtick run inside the code."""
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{source.rstrip()}\n{fence}"


def table_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def first_sentence(text: str) -> str:
    flat = one_line(text)
    match = re.match(r"(.+?[.!?])(\s|$)", flat)
    return match.group(1) if match else flat


SEVERITY_ORDER = ("CRITICAL", "HIGH", "MEDIUM", "LOW")


def by_severity(edges):
    """Sharp edges most severe first; the file order is kept within a severity."""
    return sorted(edges, key=lambda edge: SEVERITY_ORDER.index(edge.severity))


def yaml_string(text: str) -> str:
    """A double-quoted scalar: JSON string syntax is valid YAML, and strict parsers accept it."""
    return json.dumps(str(text), ensure_ascii=False)


def anchor(text: str) -> str:
    """The heading anchor GitHub would generate: lowercase, punctuation dropped, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", str(text).lower().strip())
    return slug.replace(" ", "-")


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fence=code_fence,
        cell=table_cell,
        one_line=one_line,
        yaml_string=yaml_string,
        anchor=anchor,
        first_sentence=first_sentence,
        by_severity=by_severity,
    )
    return env


def render(template: str, **context: Any) -> str:
    text = environment().get_template(template).render(**context)
    return text.rstrip("\n") + "\n"


def skill_context(kb: KnowledgeBase, skill: Skill, skill_link: str = "", **extra: Any) -> dict[str, Any]:
    """What every skill template may use: the skill, the rule specs, the other skills' names, and
    `skill_link`, a path pattern with `{id}` that turns skill ids into links ("" for plain ids);
    `extra` adds what one template needs (a section, an edge, the workflow's links)."""
    return {
        "skill": skill,
        "specs": kb.specs,
        "names": {sid: s.name for sid, s in kb.skills.items()},
        "skill_link": skill_link,
        **extra,
    }


def render_parts(kb: KnowledgeBase, skill: Skill, parts: tuple[str, ...] | list[str], skill_link: str = "") -> str:
    """The named Markdown parts joined by one blank line; parts with nothing to say are left out."""
    unknown = [part for part in parts if part not in MARKDOWN_PARTS]
    if unknown:
        raise ValueError(f"unknown section '{unknown[0]}' (choose from: {', '.join(MARKDOWN_PARTS)})")
    context = skill_context(kb, skill, skill_link)
    rendered = (render(f"markdown/{part}.md.j2", **context).strip("\n") for part in parts)
    text = "\n\n".join(chunk for chunk in rendered if chunk)
    return text + "\n" if text else ""


def render_markdown(kb: KnowledgeBase, skill: Skill, part: str | None = None) -> str:
    """The whole skill as one Markdown system prompt, or one named part of it."""
    return render_parts(kb, skill, [part] if part else MARKDOWN_PARTS)
