"""What one file may know of the other files of its project.

A file is summarised into plain facts (the `FACTS` below, JSON-able, computed once per content);
any analysis of another file may then ask for the summary of a module that file imports. A
`ProjectScope` answers those questions for one checked file and records the summaries it read,
with their digests, so that a cached result is reused only while every summary it rests on still
holds: edit a helper module, and the files that import it are checked again.

Modules resolve only to files inside the project's roots; anything else is unknown (None).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst

from sharpedges.analysis.calls import literal_number
from sharpedges.analysis.names import dotted, module_bindings
from sharpedges.analysis.vocabulary import KERNEL_TOKENS
from sharpedges.analysis.walk import is_a

FACTS: dict[str, Callable[[Any], Any]] = {}
# fact -> byte tokens a file must mention (lowered) to hold any entry of it: a file that mentions none
# has it empty, and an importer need not summarise that file to know it
FACT_TOKENS: dict[str, tuple[bytes, ...]] = {}


def summary_fact(name: str, tokens: tuple[bytes, ...] = ()):
    """Register a fact every file's summary carries (a function of its FileContext, giving a dict when
    `tokens` screen it)."""

    def register(compute):
        FACTS[name] = compute
        if tokens:
            FACT_TOKENS[name] = tokens
        return compute

    return register


def summarize(ctx) -> dict[str, Any]:
    return {
        name: compute(ctx) if name not in FACT_TOKENS or ctx.mentions(*FACT_TOKENS[name]) else {}
        for name, compute in sorted(FACTS.items())
    }


@dataclass(frozen=True)
class ImportedName:
    """Where a local name comes from: `from <dots><module> import <name>`, or `import <module>`."""

    module: str
    level: int
    name: str  # "" for a module imported whole


def imported_names(ctx) -> dict[str, ImportedName]:
    """Local name -> its source, relative imports included (ImportAliases keeps only absolute ones)."""

    def build() -> dict[str, ImportedName]:
        names: dict[str, ImportedName] = {}
        for node in ctx.index.nodes(cst.ImportFrom):
            if is_a(node.names, cst.ImportStar):
                continue
            module = dotted(node.module) if node.module is not None else ""
            if module is None:
                continue
            for alias in node.names:
                name = dotted(alias.name)
                local = (
                    alias.asname.name.value if alias.asname is not None and is_a(alias.asname.name, cst.Name) else name
                )
                if name is not None and local is not None:
                    names[local] = ImportedName(module, len(node.relative), name)
        for node in ctx.index.nodes(cst.Import):
            for alias in node.names:
                full = dotted(alias.name)
                if full is not None and alias.asname is not None and is_a(alias.asname.name, cst.Name):
                    names[alias.asname.name.value] = ImportedName(full, 0, "")
        return names

    return ctx.memo("project.imported_names", build)


# -- facts ------------------------------------------------------------------------------------------


@summary_fact("constants")
def module_constants(ctx) -> dict[str, float]:
    """Module-level names bound once to a number the code spells out (`NEG_INF = -1e9`)."""
    constants = {}
    for name, values in module_bindings(ctx.module).items():
        number = literal_number(values[0]) if len(values) == 1 else None
        if number is not None and math.isfinite(number):
            constants[name] = number
    return constants


@summary_fact("reexports")
def reexported_names(ctx) -> dict[str, dict[str, Any]]:
    """Names this module imports from another (`from .multihead_attention import MultiheadAttention` in
    a package's `__init__.py`), and where from: what an importer of the name from here follows."""
    return {local: vars(source) for local, source in sorted(imported_names(ctx).items()) if source.name}


@summary_fact("classes")
def class_kinds(ctx) -> dict[str, dict[str, Any]]:
    """Top-level classes: whether each is an `nn.Module` (true, false, or null when it rests on a base
    from another file, listed in `imported_bases` for the importer to follow)."""
    from sharpedges.analysis.tensors import module_class

    names = imported_names(ctx)
    kinds: dict[str, dict[str, Any]] = {}
    for statement in ctx.module.body:
        if not is_a(statement, cst.ClassDef):
            continue
        verdict = module_class(ctx, statement)
        entry: dict[str, Any] = {"module": verdict}
        if verdict is None:
            entry["imported_bases"] = [
                vars(names[text]) for base in statement.bases if (text := dotted(base.value)) in names
            ]
        kinds[statement.name.value] = entry
    return kinds


@summary_fact("closures")
def factory_closures(ctx) -> dict[str, list[dict[str, Any]]]:
    """Module-level factories that return closures reaching an attention kernel (summaries.py)."""
    from sharpedges.analysis.summaries import closure_summaries

    return closure_summaries(ctx)


@summary_fact("functions", tokens=KERNEL_TOKENS)
def kernel_functions(ctx) -> dict[str, dict[str, Any]]:
    """Module-level functions whose parameters reach an attention kernel (summaries.py)."""
    from sharpedges.analysis.summaries import function_summaries

    return function_summaries(ctx)


@summary_fact("score_passing")
def score_passing_functions(ctx) -> dict[str, dict[str, Any]]:
    """Module-level functions that may hand back a parameter as the same attention scores (attention.py)."""
    from sharpedges.analysis.attention import score_passing_functions

    return score_passing_functions(ctx)


@summary_fact("softmax_wrappers", tokens=(b"softmax",))
def softmax_wrappers(ctx) -> dict[str, dict[str, Any]]:
    """Module-level functions that return the softmax of a parameter (attention.py)."""
    from sharpedges.analysis.attention import softmax_wrapper_functions

    return softmax_wrapper_functions(ctx)


@summary_fact("rotations", tokens=(b"rot", b"rope"))
def rotation_layouts(ctx) -> dict[str, dict[str, str]]:
    """Module-level functions that rotate channels in one pairing layout (positions.py)."""
    from sharpedges.analysis.positions import rotation_layout_functions

    return rotation_layout_functions(ctx)


@summary_fact("half_casts")
def half_cast_imports(ctx) -> list[dict[str, Any]]:
    """Classes imported from other modules whose instances this file casts to float16 (objects.py)."""
    from sharpedges.analysis.objects import imported_half_casts

    return imported_half_casts(ctx)


@summary_fact("head_tilings", tokens=(b"repeat(", b"tile(", b"cat(", b"expand("))
def head_tilings(ctx) -> dict[str, dict[str, Any]]:
    """Module-level functions that tile a tensor's heads by one of their parameters (head_repeats.py)."""
    from sharpedges.analysis.head_repeats import parameter_tilings

    return parameter_tilings(ctx)


@summary_fact("instance_calls")
def imported_instance_calls(ctx) -> list[dict[str, Any]]:
    """Calls of instances of imported classes, with what their arguments are (importers.py)."""
    from sharpedges.analysis.importers import instance_calls

    return instance_calls(ctx)


@summary_fact("modules")
def attention_modules(ctx) -> dict[str, dict[str, Any]]:
    """Module classes whose forward reads a parameter as an attention mask or hands it to a kernel (summaries.py)."""
    from sharpedges.analysis.summaries import module_summaries

    return module_summaries(ctx)


@summary_fact("value_parameters")
def attention_value_parameters(ctx) -> dict[str, dict[str, Any]]:
    """Module classes whose forward hands parameters to an attention kernel's values (derived.py)."""
    from sharpedges.analysis.derived import module_value_parameters

    return module_value_parameters(ctx)


@summary_fact("mask_builders", tokens=(b"mask", b"tril", b"triu"))
def mask_builders(ctx) -> dict[str, dict[str, Any]]:
    """Module-level functions that return a mask whose meaning their code decides (masks.py)."""
    from sharpedges.analysis.masks import mask_builder_functions

    return mask_builder_functions(ctx)


@summary_fact("causal_instances")
def causal_imported_instances(ctx) -> list[dict[str, Any]]:
    """Classes imported from other modules that this file builds in a causal model (masks.py)."""
    from sharpedges.analysis.masks import causal_instances

    return causal_instances(ctx)


@summary_fact("residual_sequences")
def module_residual_sequences(ctx) -> dict[str, dict[str, Any]]:
    """Module classes that add each module of a constructor argument to the stream (blocks.py)."""
    from sharpedges.analysis.blocks import residual_sequences

    return residual_sequences(ctx)


# -- the scope of one checked file ------------------------------------------------------------------

SummaryLoader = Callable[[Path], "tuple[str, dict[str, Any]] | None"]
MAX_NEIGHBOURS = 200  # a folder of more modules than this is not read for the files that import one
MAX_STAR_SOURCES = 16  # a package index that stars in more modules than this is not read through
MAX_REEXPORT_HOPS = 4  # a name imported from a package, re-exported by its __init__ from a submodule...
# A question many files of a folder ask (is this attention built in a causal model?) reads only a
# package-sized folder: a model zoo of a hundred files would be parsed once more for each of them.
SMALL_PACKAGE = 30


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if p.is_file())


def folder_digest(folder: Path) -> str:
    """A digest of which Python files a folder holds: a result that read the folder's importers holds
    while no module is added, removed or renamed there."""
    return hashlib.sha256("\n".join(p.name for p in python_files(folder)).encode()).hexdigest()


def is_folder_key(key: str) -> bool:
    """A dependency on a folder's list of files is keyed by the folder's path and a trailing separator."""
    return key.endswith(os.sep)


# A dependency on whether a file mentions any of some byte tokens (what let a check skip its summary) is
# keyed by the file's path, this marker and the tokens; its digest is "present" or "absent".
MENTION_MARKER = "\0mentions\0"


def mention_key(path: Path, tokens: tuple[bytes, ...]) -> str:
    return str(path) + MENTION_MARKER + ",".join(token.decode() for token in tokens)


def is_mention_key(key: str) -> bool:
    return MENTION_MARKER in key


def mention_digest(key: str) -> str:
    path, _, tokens = key.partition(MENTION_MARKER)
    return "present" if mentions(Path(path), tuple(token.encode() for token in tokens.split(","))) else "absent"


def mentions(path: Path, tokens: tuple[bytes, ...]) -> bool:
    """Whether the file's lowered bytes hold any of `tokens`: read once per file version and tokens."""
    try:
        status = path.stat()
    except OSError:
        return False
    return _version_mentions(str(path), status.st_mtime_ns, status.st_size, tokens)


@functools.lru_cache(maxsize=4096)
def _version_mentions(path: str, mtime_ns: int, size: int, tokens: tuple[bytes, ...]) -> bool:
    try:
        data = Path(path).read_bytes().lower()
    except OSError:
        return False
    return any(token in data for token in tokens)


@dataclass
class ProjectScope:
    """The project as one checked file sees it. `load` gives (digest, summary) of a file."""

    importer: Path
    roots: tuple[Path, ...]
    load: SummaryLoader
    read: dict[str, str] = field(default_factory=dict)  # file -> digest of the summary this check read
    # answers already given for this file (a module named by many calls is resolved once)
    _files: dict[tuple[ImportedName, Path], Path | None] = field(default_factory=dict, repr=False)
    _found: dict[tuple[ImportedName, str, Path], tuple[Any, Path] | None] = field(default_factory=dict, repr=False)
    # path -> its resolved path, shared by the scopes of one run: every file of a folder asks it of each
    # of its neighbours
    real_paths: dict[Path, Path] = field(default_factory=dict, repr=False)

    def real_path(self, path: Path) -> Path:
        real = self.real_paths.get(path)
        if real is None:
            real = self.real_paths[path] = path.resolve()
        return real

    def module_file(self, source: ImportedName, importer: Path | None = None) -> Path | None:
        """The project file a module import names, or None when it is not inside the roots."""
        importer = importer or self.importer
        key = (ImportedName(source.module, source.level, ""), importer)
        if key not in self._files:
            self._files[key] = self._module_file(source, importer)
        return self._files[key]

    def _module_file(self, source: ImportedName, importer: Path) -> Path | None:
        parts = [part for part in source.module.split(".") if part]
        if source.level:
            base = importer.parent
            for _ in range(source.level - 1):
                base = base.parent
            bases = [base]
        else:
            bases = list(dict.fromkeys([_package_top(importer), *self.roots]))
        for base in bases:
            for candidate in (
                base.joinpath(*parts).with_suffix(".py") if parts else None,
                base.joinpath(*parts, "__init__.py"),
            ):
                if candidate is not None and candidate.is_file() and self._inside(candidate):
                    return candidate
        return None

    def summary(self, source: ImportedName, importer: Path | None = None) -> dict[str, Any] | None:
        path = self.module_file(source, importer)
        if path is None or self.real_path(path) == self.real_path(self.importer):
            return None
        loaded = self.load(path)
        if loaded is None:
            return None
        digest, summary = loaded
        self.read[str(path)] = digest
        return summary

    def lookup(self, source: ImportedName, fact: str, importer: Path | None = None) -> tuple[Any, Path] | None:
        """The entry the module `source` names holds for its name under `fact`, and the file it is in:
        followed through re-exports (`from fairseq.modules import MultiheadAttention`, which
        fairseq/modules/__init__.py imports from `.multihead_attention`), a few hops at most."""
        importer = importer or self.importer
        key = (source, fact, importer)
        if key not in self._found:
            self._found[key] = self._lookup(source, fact, importer)
        return self._found[key]

    def _lookup(self, source: ImportedName, fact: str, importer: Path) -> tuple[Any, Path] | None:
        tokens = FACT_TOKENS.get(fact)
        for _ in range(MAX_REEXPORT_HOPS):
            module = ImportedName(source.module, source.level, "")
            path = self.module_file(module, importer)
            if path is not None and tokens and path.name != "__init__.py" and not mentions(path, tokens):
                self.read[mention_key(path, tokens)] = "absent"  # its fact is empty: no need to summarise it
                return None
            summary = self.summary(module, importer) if path is not None else None
            if path is None or summary is None:
                return None
            entry = summary.get(fact, {}).get(source.name)
            if entry is not None:
                return entry, path
            forwarded = summary.get("reexports", {}).get(source.name)
            if forwarded is None:
                return None
            source, importer = ImportedName(**forwarded), path
        return None

    def star_imported(self, local: str, sources: tuple[tuple[str, int], ...]) -> str | None:
        """The library name a name of the checked file stands for when only a star import of a project
        module (`from .llama import *`) binds it: what that module imports under the name from outside
        the project (`from torch.nn.functional import scaled_dot_product_attention`)."""
        if len(sources) > MAX_STAR_SOURCES:  # transformers' models/__init__.py stars in 546 packages
            return None
        for module, level in sources:
            summary = self.summary(ImportedName(module, level, ""))
            entry = None if summary is None else summary.get("reexports", {}).get(local)
            if entry is None or entry["level"] != 0:
                continue
            if self.module_file(ImportedName(entry["module"], 0, "")) is None:  # a library, not the project
                return f"{entry['module']}.{entry['name']}"
        return None

    def defines(self, source: ImportedName, importer: Path) -> bool:
        """Whether the name an import of `importer` names is the checked file's own: imported from it, or
        from a package that re-exports it from there."""
        for _ in range(MAX_REEXPORT_HOPS):
            module = ImportedName(source.module, source.level, "")
            path = self.module_file(module, importer)
            if path is None:
                return False
            if self.real_path(path) == self.real_path(self.importer):
                return True
            summary = self.summary(module, importer)
            forwarded = None if summary is None else summary.get("reexports", {}).get(source.name)
            if forwarded is None:
                return False
            source, importer = ImportedName(**forwarded), path
        return False

    def neighbours(
        self, limit: int = MAX_NEIGHBOURS, tokens: tuple[bytes, ...] = ()
    ) -> list[tuple[Path, dict[str, Any]]]:
        """(path, summary) of the other Python files in the checked file's folder, inside the roots; none
        when the folder holds more than `limit` of them. With `tokens`, only the files that mention one
        of them (lowered): the rest are not summarised, and that they mention none is a dependency."""
        folder = self.importer.parent
        files = [
            p for p in python_files(folder) if self.real_path(p) != self.real_path(self.importer) and self._inside(p)
        ]
        if len(files) > limit:
            return []
        self.read[str(folder) + os.sep] = folder_digest(folder)
        found = []
        for path in files:
            if tokens and not mentions(path, tokens):
                self.read[mention_key(path, tokens)] = "absent"
                continue
            loaded = self.load(path)
            if loaded is not None:
                self.read[str(path)] = loaded[0]
                found.append((path, loaded[1]))
        return found

    def folder_mentions(self, tokens: tuple[bytes, ...], limit: int = MAX_NEIGHBOURS) -> bool | None:
        """Whether another module of the checked file's folder (not a package's `__init__.py`, which only
        re-exports) mentions one of `tokens` (lowered); None when the folder holds more than `limit`."""
        folder = self.importer.parent
        files = [
            p for p in python_files(folder) if self.real_path(p) != self.real_path(self.importer) and self._inside(p)
        ]
        self.read[str(folder) + os.sep] = folder_digest(folder)
        if len(files) > limit:
            return None
        found = False
        for path in files:
            if path.name == "__init__.py":
                continue
            present = mentions(path, tokens)
            self.read[mention_key(path, tokens)] = "present" if present else "absent"
            found = found or present
        return found

    def _inside(self, path: Path) -> bool:
        real = self.real_path(path)
        return any(real == root or root in real.parents for root in self.roots)


def _package_top(importer: Path) -> Path:
    """The folder an absolute import of the importer's own package starts from."""
    directory = importer.parent
    while (directory / "__init__.py").is_file() and directory.parent != directory:
        directory = directory.parent
    return directory


MAX_CLASS_HOPS = 8


def imported_module_class(ctx, local: str) -> bool | None:
    """Whether a class imported from a project module is an `nn.Module` (None: cannot say)."""
    scope: ProjectScope | None = getattr(ctx, "project", None)
    source = imported_names(ctx).get(local)
    if scope is None or source is None or not source.name:
        return None
    return _module_class_at(scope, source, scope.importer, 0)


def _module_class_at(scope: ProjectScope, source: ImportedName, importer: Path, hops: int) -> bool | None:
    found = scope.lookup(source, "classes", importer)
    if found is None or hops >= MAX_CLASS_HOPS:
        return None
    entry, path = found
    if entry["module"] is not None:
        return entry["module"]
    verdicts = [
        _module_class_at(scope, ImportedName(**base), path, hops + 1) for base in entry.get("imported_bases", [])
    ]
    if any(verdicts):
        return True
    return (
        False
        if verdicts and all(v is False for v in verdicts) and len(verdicts) == len(entry["imported_bases"])
        else None
    )


def imported_constant(ctx, local: str) -> float | None:
    """The number a name imported from a project module is bound to there, when the file is
    checked with its project (None otherwise, or when the module binds no such constant)."""
    scope: ProjectScope | None = getattr(ctx, "project", None)
    source = imported_names(ctx).get(local)
    if scope is None or source is None or not source.name:
        return None
    found = scope.lookup(source, "constants")
    return None if found is None else found[0]
