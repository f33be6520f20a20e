"""Qualified names from the module's own import statements: one cheap pass, no scope analysis.

`F.softmax`, `nn.functional.softmax`, `torch.nn.functional.softmax` and `from torch.nn.functional
import softmax as sm; sm(...)` all resolve to `torch.nn.functional.softmax`. Names imported nowhere
fall back to the conventions every PyTorch file follows (`F`, `nn`, `torch`), so snippets without
imports still resolve.
"""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.walk import is_a

CONVENTIONAL_ALIASES = {
    "torch": "torch",
    "nn": "torch.nn",
    "F": "torch.nn.functional",
    "np": "numpy",
    "math": "math",
    "einops": "einops",
    "einsum": "torch.einsum",
}

# Some public names are re-exports; map them onto one spelling so rules list each op once.
CANONICAL = {
    "torch.nn.functional.softmax": "torch.softmax",
    "torch.special.softmax": "torch.softmax",
    "torch.nn.functional.log_softmax": "torch.log_softmax",
    "torch.Tensor.softmax": "torch.softmax",
    "torch.functional.einsum": "torch.einsum",
    "einops.einsum": "torch.einsum",
    "opt_einsum.contract": "torch.einsum",
    "torch.nn.modules.activation.Softmax": "torch.nn.Softmax",
    "torch.nn.modules.activation.MultiheadAttention": "torch.nn.MultiheadAttention",
    "torch.nn.modules.transformer.TransformerEncoderLayer": "torch.nn.TransformerEncoderLayer",
    "torch.nn.modules.transformer.TransformerDecoderLayer": "torch.nn.TransformerDecoderLayer",
    "torch.nn.modules.transformer.TransformerEncoder": "torch.nn.TransformerEncoder",
    "torch.nn.modules.transformer.TransformerDecoder": "torch.nn.TransformerDecoder",
}


def dotted(expr: cst.BaseExpression) -> str | None:
    """`a.b.c` as text, or None for anything that is not a plain name/attribute chain."""
    parts: list[str] = []
    while is_a(expr, cst.Attribute):
        parts.append(expr.attr.value)
        expr = expr.value
    if not is_a(expr, cst.Name):
        return None
    parts.append(expr.value)
    return ".".join(reversed(parts))


class ImportAliases:
    """Local name -> fully qualified dotted name, from every import statement in the module."""

    __slots__ = ("_aliases",)

    def __init__(
        self, imports: list[cst.Import], import_froms: list[cst.ImportFrom], tree: cst.Module | None = None
    ) -> None:
        aliases: dict[str, str] = {}
        for node in imports:
            for alias in node.names:
                full = dotted(alias.name)
                if full is None:
                    continue
                if alias.asname is not None and is_a(alias.asname.name, cst.Name):
                    aliases[alias.asname.name.value] = full
                else:
                    head = full.split(".")[0]
                    aliases[head] = head
        for import_from in import_froms:
            if import_from.relative or import_from.module is None or is_a(import_from.names, cst.ImportStar):
                continue
            module = dotted(import_from.module)
            if module is None:
                continue
            for alias in import_from.names:
                name = dotted(alias.name)
                if name is None:
                    continue
                local = name
                if alias.asname is not None and is_a(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                aliases[local] = f"{module}.{name}"
        self._aliases = aliases
        # Ex) `MList = nn.ModuleList` at the top of the module, bound once: a name for what it names
        if tree is not None:
            for local, value in _module_aliases(tree).items():
                qualified = self.qualify(value)
                if qualified is not None and qualified.split(".")[0] != local and local not in aliases:
                    aliases[local] = qualified

    def knows(self, head: str) -> bool:
        """Whether an import of the file (or a conventional alias such as `F`) binds this name."""
        return head in self._aliases or head in CONVENTIONAL_ALIASES

    def qualify(self, expr: cst.BaseExpression) -> str | None:
        """The qualified, canonical name of a name/attribute chain, or None."""
        text = dotted(expr)
        if text is None:
            return None
        head, _, rest = text.partition(".")
        base = self._aliases.get(head) or CONVENTIONAL_ALIASES.get(head) or head
        full = f"{base}.{rest}" if rest else base
        return CANONICAL.get(full, full)


def module_bindings(module: cst.Module) -> dict[str, list[cst.BaseExpression]]:
    """What the module's top level binds each name to, in order (`x = ...`, `x: T = ...`)."""
    bound: dict[str, list[cst.BaseExpression]] = {}
    for statement in module.body:
        if not is_a(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if is_a(small, cst.Assign):
                for target in small.targets:
                    if is_a(target.target, cst.Name):
                        bound.setdefault(target.target.value, []).append(small.value)
            elif is_a(small, cst.AnnAssign) and small.value is not None and is_a(small.target, cst.Name):
                bound.setdefault(small.target.value, []).append(small.value)
    return bound


def _module_aliases(module: cst.Module) -> dict[str, cst.BaseExpression]:
    """Names the module's top level binds once, each to a dotted name (`MList = nn.ModuleList`)."""
    return {
        name: values[0]
        for name, values in module_bindings(module).items()
        if len(values) == 1 and is_a(values[0], cst.Attribute) and dotted(values[0]) is not None
    }
