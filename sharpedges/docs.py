"""A rule's documentation in ruff's order, with where its reference implementation lives."""

from __future__ import annotations

from sharpedges.links import reference_definition


def reference_excerpt(reference: str, max_lines: int = 25) -> tuple[str, str]:
    """(location 'reference_impls/attention.py:12', first lines of the symbol's source) without
    importing torch: the file is read and parsed with `ast`."""
    found = reference_definition(reference)
    if found is None:
        return f"sharpedges.reference_impls.{reference}", ""
    path, node, source = found
    lines = source.splitlines()[node.lineno - 1 - len(node.decorator_list) : node.end_lineno]
    excerpt = "\n".join(lines[:max_lines]) + ("\n    ..." if len(lines) > max_lines else "")
    return f"reference_impls/{path.name}:{node.lineno}", excerpt


def rule_markdown(spec) -> str:
    where, excerpt = reference_excerpt(spec.reference_impl)
    parts = [
        f"# {spec.code} {spec.name}\n",
        f"{spec.title}. Severity: {spec.severity}. "
        f"{'On by default' if spec.default else 'Opt-in (select it by code or use --preview)'}.\n",
        "## What it does\n",
        spec.outline() + "\n",
        *(
            ["Other findings of this rule read:\n", *(f"- {spec.outline(name)}" for name in spec.messages), ""]
            if spec.messages
            else []
        ),
        "## Why is this bad?\n",
        spec.rationale.strip() + "\n",
        "## Example\n",
        "```python\n" + spec.examples.bad[0].rstrip() + "\n```\n",
        "## Use instead\n",
        spec.use_instead.strip() + "\n",
        "```python\n" + spec.examples.good[0].rstrip() + "\n```\n",
        "## Fix safety\n",
        {
            "none": "No automatic fix.",
            "safe": "The fix is safe: it is certain to do what the code meant and changes nothing else (`--fix`).",
            "unsafe": "The fix is unsafe: it changes numerics; review it (`--fix --unsafe-fixes`).",
        }[spec.fix]
        + (f" It is offered as unsafe when {spec.unsafe_when.strip()}" if spec.unsafe_when else "")
        + "\n",
    ]
    if spec.precision:
        parts += ["## Precision on real code\n", spec.precision.strip() + "\n"]
    if spec.options:
        parts.append("## Options\n")
        parts += [
            f"- `{name}` ({option.type}, default `{option.default}`): {option.description}\n"
            for name, option in spec.options.items()
        ]
        parts.append("")
    parts += ["## Reference implementation\n", f"`sharpedges.reference_impls.{spec.reference_impl}` ({where})\n"]
    if excerpt:
        parts.append("```python\n" + excerpt + "\n```\n")
    parts += ["## Skill\n", f"`{spec.skill}` (`sharpedges skill {spec.skill.split('#')[0]}`)\n"]
    if spec.references:
        parts.append("## References\n")
        parts += [f"- {reference}\n" for reference in spec.references]
    return "\n".join(parts)
