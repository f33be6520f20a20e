"""What the files that import this one hand to its modules: the reverse of `project.py`'s imports.

A file's summary lists the calls it makes to instances of classes it imports from other modules
(`self.attend = Attend(...)`, then `self.attend(q, k, v)`), with what each argument is when that
matters to a rule (keys built from a cache). When a module's `forward` is checked, the files next to
it that import it say what its parameters receive, so a cache concatenated in one file meets the
attention kernel that runs in another.

Only the checked file's own folder is read: the modules of a package call each other there. Every
summary read, and the folder's list of files, is a dependency of the cached result.
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.project import SMALL_PACKAGE, ImportedName, ProjectScope, imported_names
from sharpedges.analysis.walk import is_a


def instance_calls(ctx: FileContext) -> list[dict[str, Any]]:
    """Calls of `self.x(...)` where `self.x` holds an instance of a class imported from another module,
    with the facts of the arguments that have any (positional ones keyed by position)."""
    from sharpedges.analysis.caches import built_from_cache
    from sharpedges.analysis.summaries import in_branch

    names = imported_names(ctx)
    found = []
    for call in ctx.calls():
        attr = self_attribute(call.func)
        holder = ctx.class_of(call) if attr is not None else None
        function = ctx.function_of(call)
        if holder is None or function is None or in_branch(ctx, call) or any(a.star for a in call.args):
            continue
        source = _imported_class(ctx, holder, attr, names)
        if source is None:
            continue
        arguments: dict[str, dict[str, Any]] = {}
        positional = [a for a in call.args if a.keyword is None]
        for arg in call.args:
            key = arg.keyword.value if arg.keyword is not None else str(positional.index(arg))
            if built_from_cache(ctx, function, arg.value, ctx.order(call)):
                arguments[key] = {"cache": True}
        if arguments:
            found.append({"module": source.module, "level": source.level, "class": source.name, "arguments": arguments})
    return found


def _imported_class(
    ctx: FileContext, holder: cst.ClassDef, attr: str | None, names: dict[str, ImportedName]
) -> ImportedName | None:
    """The imported class `self.attr` is built from (`self.attend = Attend(...)`, `Attend` imported)."""
    for assignment in ctx.class_facts(holder).assignments.get(attr or "", ()):
        value = assignment.value
        if is_a(value, cst.Call) and is_a(value.func, cst.Name):
            source = names.get(value.func.value)
            if source is not None and source.name:
                return source
    return None


def importer_arguments(ctx: FileContext, cls: cst.ClassDef) -> list[dict[str, dict[str, Any]]]:
    """What the files next to this one pass when they call instances of `cls`, a top-level class of
    this file: one mapping (argument position or keyword -> facts) per call."""
    scope: ProjectScope | None = getattr(ctx, "project", None)
    if scope is None or ctx.class_of(cls) is not None:
        return []

    def compute() -> list[dict[str, dict[str, Any]]]:
        found = []
        for path, summary in scope.neighbours():
            for entry in summary.get("instance_calls", ()):
                if entry["class"] == cls.name.value and scope.defines(_imported(entry), path):
                    found.append(entry["arguments"])
        return found

    return ctx.memo(("importer_arguments", cls.name.value), compute)


HALF_TOKENS = (b"half", b"float16")  # a file that mentions neither casts nothing to float16


def importer_half_casts(ctx: FileContext) -> frozenset[str]:
    """The top-level classes of this file that a file next to it casts to float16 (`imported_half_casts`
    of its summary: `model = GPT(config).half()` in a script beside `model.py`)."""
    scope: ProjectScope | None = getattr(ctx, "project", None)
    if scope is None:
        return frozenset()

    def compute() -> frozenset[str]:
        return frozenset(
            entry["class"]
            for path, summary in scope.neighbours(limit=SMALL_PACKAGE, tokens=HALF_TOKENS)
            for entry in summary.get("half_casts", ())
            if scope.defines(_imported(entry), path)
        )

    return ctx.memo("importer_half_casts", compute)


def _imported(entry: dict[str, Any]) -> ImportedName:
    """The import an importer's summary entry records (`module`, `level`, `class`)."""
    return ImportedName(entry["module"], entry["level"], entry["class"])
