"""SHP702: the result of an out-of-place tensor op (or of an autograd Function) is thrown away."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

import libcst as cst

from sharpedges.analysis.calls import method_name, receiver
from sharpedges.analysis.moe import is_balancing_apply
from sharpedges.analysis.names import dotted
from sharpedges.analysis.summaries import runs_a_module
from sharpedges.analysis.tensors import (
    HAS_INPLACE_VARIANT,
    PURE_FUNCTIONS,
    SHARED_OUT_OF_PLACE_METHODS,
    TENSOR_ONLY_METHODS,
    TensorFacts,
    writes_in_place,
)
from sharpedges.analysis.walk import is_a
from sharpedges.detector import Detector, Finding

AUTOGRAD_FUNCTIONS = {"torch.autograd.Function", "torch.autograd.function.Function", "Function"}
# Expecting an exception is a reason to call an op for nothing.
RAISES_CONTEXTS = ("raises", "assertRaises", "assertRaisesRegex")
# What `x = <call>` can assign to: the receiver must be a target Python accepts.
ASSIGNABLE = (cst.Name, cst.Attribute, cst.Subscript)
COLLECTION_MUTATORS = ("append", "extend", "insert", "update", "setdefault")
_ASSIGNED = re.compile(rb"[ \t]*=(?!=)")  # what follows a name that is assigned (or a keyword's name)


class DiscardedOpResult(Detector):
    code = "SHP702"
    tokens = tuple(
        sorted(
            {f".{name}(".encode() for name in TENSOR_ONLY_METHODS | SHARED_OUT_OF_PLACE_METHODS}
            | {b".apply("}
            | {f"{name.rsplit('.', 1)[1]}(".encode() for name in PURE_FUNCTIONS}
        )
    )
    # A bare statement: a receiver chain (names, dots, bracketed parts) at a line start, after `;`
    # or after a one-line `if x:`, then the op; `print(x.float())` or `y = x.float()` cannot match.
    _ops = b"|".join(
        sorted(
            {name.encode() for name in TENSOR_ONLY_METHODS | SHARED_OUT_OF_PLACE_METHODS}
            | {b"apply"}
            | {name.rsplit(".", 1)[1].encode() for name in PURE_FUNCTIONS}
        )
    )
    pattern = re.compile(
        rb"(?:^|[;:])[ \t]*(?:(?:[\w.]|\[[^\n]{0,200}?\]|\([^\n]{0,200}?\)){1,40}?\.)?(?:" + _ops + rb")\(",
        re.MULTILINE,
    )
    # Or a name bound to such an op: `attn = dots.softmax(dim=-1)`, screened further by `_rebound_unread`.
    _bound_to_op = re.compile(rb"^[ \t]*(\w+)[ \t]*=[^=\n][^\n]{0,200}?\b(?:" + _ops + rb")\(", re.MULTILINE)

    @classmethod
    def may_match(cls, lowered_source: bytes) -> bool:
        if super().may_match(lowered_source):
            return True
        if any(token in lowered_source for token in cls.tokens) and any(
            _rebound_unread(lowered_source, bound) for bound in cls._bound_to_op.finditer(lowered_source)
        ):
            return True
        # a module's output left unread: only torch.nn modules and their subclasses are followed
        return b"nn." in lowered_source and _binds_a_call_left_unread(lowered_source)

    def check(self, ctx):
        tensor_facts: dict[cst.FunctionDef | None, TensorFacts] = {}
        for statement in ctx.index.nodes(cst.Expr):
            call = statement.value
            if not is_a(call, cst.Call) or self._expects_raise(ctx, statement):
                continue
            name = method_name(call)
            if writes_in_place(name, call):
                continue
            if ctx.callee(call) in PURE_FUNCTIONS:
                yield Finding(call, variant="function", facts={"function": dotted(call.func)})
            elif name == "apply":
                if self._pure_autograd_function(ctx, receiver(call)) and not is_balancing_apply(ctx, call):
                    yield Finding(call, variant="autograd-function", facts={"function": dotted(call.func)})
            elif name is not None and self._out_of_place_on_tensor(ctx, call, name, tensor_facts):
                yield _lost_result(ctx, call, name)
        yield from self._overwritten_results(ctx, tensor_facts)
        yield from self._unread_results(ctx)

    def _overwritten_results(self, ctx, tensor_facts) -> Iterator[Finding]:
        """`attn = dots.softmax(dim=-1)` bound again before anything reads it: the op's result is lost
        as surely as a bare statement's."""
        for assign in ctx.index.nodes(cst.Assign):
            call = assign.value
            if len(assign.targets) != 1 or not is_a(assign.targets[0].target, cst.Name) or not is_a(call, cst.Call):
                continue
            if not _bound_again_unmentioned(ctx, assign, assign.targets[0].target.value):
                continue  # cheap first: most results are read by the next statement
            function = ctx.function_of(assign)
            name = method_name(call)
            if function is None or not (
                ctx.callee(call) in PURE_FUNCTIONS
                or (name is not None and self._out_of_place_on_tensor(ctx, call, name, tensor_facts))
            ):
                continue
            facts = ctx.function_facts(function)
            target = assign.targets[0].target.value
            definition = next(d for d in facts.definitions[target] if d.node is assign)
            later = facts.overwritten_unread(definition)
            if later is not None:
                yield Finding(
                    call,
                    variant="overwritten",
                    facts={"target": target, "call": ctx.code(call.func)},
                    related=((later.node, "overwritten"),),
                )

    def _unread_results(self, ctx) -> Iterator[Finding]:
        """`attn_out = attn(x)` that nothing reads afterwards, while the lines after it go on with `x`: the
        module's output is lost and its input takes its place (`x = x + residual`). An output left unread
        at the end of a computation (a head computed for a later TODO, features a caller does not return)
        is dead code, not a lost result, and stays quiet."""
        last_mentions: dict[cst.FunctionDef, dict[str, int]] = {}
        for assign in ctx.index.nodes(cst.Assign):
            call = assign.value
            target = _first_bound_name(assign)
            if target is None or not is_a(call, cst.Call):
                continue
            function = ctx.function_of(assign)
            if function is None or target.startswith("_"):
                continue
            last = last_mentions.get(function)
            if last is None:
                last = last_mentions[function] = _last_mentions(ctx, function)
            if last.get(target, 0) > ctx.index.last_order(assign):
                continue  # cheap first: most names are mentioned again
            if not runs_a_module(ctx, call):
                continue
            facts = ctx.function_facts(function)
            definition = next(d for d in facts.definitions[target] if d.node is assign)
            if facts.never_read(definition) and _goes_on_with_its_input(ctx, facts, call, assign):
                yield Finding(call, variant="unread", facts={"target": target, "call": ctx.code(call.func)})

    @staticmethod
    def _out_of_place_on_tensor(ctx, call, name, tensor_facts) -> bool:
        owner = receiver(call)
        qualified = ctx.qualify(owner) if owner is not None else None
        if owner is None or (qualified or "").split(".")[0] in ("torch", "numpy", "np", "math"):
            return False
        function = ctx.function_of(call)
        facts = tensor_facts.get(function)
        if facts is None:
            facts = tensor_facts[function] = TensorFacts(ctx, function)
        at = ctx.order(call)
        if facts.is_tensor(owner, at):
            return name in TENSOR_ONLY_METHODS or name in SHARED_OUT_OF_PLACE_METHODS
        if name not in TENSOR_ONLY_METHODS or facts.known_not_tensor(owner, at):
            return False
        # a method only tensors have, on a receiver of unknown type; a stored object (`self.cache.clamp(...)`)
        # may be a user class with a method of that name
        owner_name = dotted(owner)
        return owner_name is None or not owner_name.startswith("self.")

    @staticmethod
    def _expects_raise(ctx, statement) -> bool:
        for ancestor in ctx.index.ancestors(statement):
            if is_a(ancestor, cst.With):
                for item in ancestor.items:
                    call = item.item
                    if is_a(call, cst.Call) and (dotted(call.func) or "").endswith(RAISES_CONTEXTS):
                        return True
        return False

    @staticmethod
    def _pure_autograd_function(ctx, owner) -> bool:
        """A Function class defined in this file whose forward changes nothing in place."""
        name = dotted(owner) if owner is not None else None
        if name is None:
            return False
        for cls in ctx.index.nodes(cst.ClassDef):
            if cls.name.value != name:
                continue
            if not any(q in AUTOGRAD_FUNCTIONS for q in ctx.class_facts(cls).base_names()):
                return False
            forward = ctx.class_facts(cls).methods.get("forward")
            if forward is None:
                return False
            for inner in ctx.index.descendants(forward, cst.Call):
                method = method_name(inner) or ""
                qualified = ctx.callee(inner) or ""
                if (
                    method in ("mark_dirty", "copy_")
                    or (method.endswith("_") and not method.startswith("_"))
                    or qualified.startswith(("torch.distributed", "dist."))
                ):
                    return False
            return not _fills_an_argument(ctx, forward)
        return False


def _fills_an_argument(ctx, forward: cst.FunctionDef) -> bool:
    """DeepSpeed's `CheckpointFunction.forward(ctx, fn, all_outputs, *args)` does `all_outputs += outputs`:
    a forward that fills a list (or dict) it is given hands its results back through it."""
    params = {p.name.value for p in forward.params.params[1:]}
    for node in ctx.index.descendants(forward, (cst.AugAssign, cst.Assign, cst.Call)):
        if is_a(node, cst.AugAssign) and is_a(node.target, cst.Name) and node.target.value in params:
            return True
        if is_a(node, cst.Assign) and any(
            is_a(t.target, cst.Subscript) and is_a(t.target.value, cst.Name) and t.target.value.value in params
            for t in node.targets
        ):
            return True
        if (
            is_a(node, cst.Call)
            and method_name(node) in COLLECTION_MUTATORS
            and is_a(target := receiver(node), cst.Name)
            and target.value in params
        ):
            return True
    return False


def _rebound_unread(source: bytes, bound: re.Match[bytes]) -> bool:
    """The lines after `name = <op>(...)` bind `name` again from something else before any line reads it
    (`attn = self.dropout(dots)`): the byte form of `_bound_again_unmentioned`. It reads less as a
    mention than the syntax does (not `self.name`, `f(name=...)`, a comment) so it never drops a file
    the detector would flag."""
    word = re.compile(rb"(?<![\w.])" + re.escape(bound.group(1)) + rb"\b")
    at = source.find(b"\n", bound.end()) + 1
    while at > 0 and (found := word.search(source, at)) is not None:
        line_end = source.find(b"\n", found.end())
        before = source[source.rfind(b"\n", 0, found.start()) + 1 : found.start()]
        after = source[found.end() : len(source) if line_end < 0 else line_end]
        assigned = _ASSIGNED.match(after) is not None
        if b"#" in before or (assigned and before.strip()):
            at = found.end()  # in a comment, or a keyword argument
        elif assigned:
            return word.search(after.split(b"#", 1)[0]) is None  # bound again: from something else?
        else:
            return False
    return False


# `name = self.attn(...)`, `out, cache = attn(...)`, `x = self.layers[0](...)`: a module's call, maybe
_BOUND_TO_CALL = re.compile(
    rb"^([ \t]*)(\w+)[ \t]*(?:,[^=\n]*)?=[ \t]*(?:self\.)?\w+(?:\[[^\n]*?\])?[ \t]*\(", re.MULTILINE
)
_DEF = re.compile(rb"^([ \t]*)(?:async[ \t]+)?def[ \t]", re.MULTILINE)
_CODE_LINE = re.compile(rb"^([ \t]*)[^ \t\n#]", re.MULTILINE)


def _binds_a_call_left_unread(source: bytes) -> bool:
    """Some `name = <call>(...)` in a function whose later lines, up to the function's end, never read
    `name`: the byte form of `FunctionFacts.never_read` for the unread variant. What might not be a
    reading (a comment, a string, a keyword, an assignment target, `for name in`, a nested function's
    parameter) does not count as one, so it never drops a file the detector would flag."""
    starts: list[int] = []
    indents: list[int] = []
    for found in _DEF.finditer(source):
        starts.append(found.start())
        indents.append(len(found.group(1)))
    ends: dict[int, int] = {}  # def -> where its body ends
    for bound in _BOUND_TO_CALL.finditer(source):
        indent = len(bound.group(1))
        enclosing = bisect.bisect_left(starts, bound.start()) - 1
        while enclosing >= 0 and indents[enclosing] >= indent:
            enclosing -= 1
        if enclosing < 0 or source[max(0, bound.start() - 400) : bound.start()].rstrip().endswith((b"(", b",", b"[")):
            continue  # module-level code, or a keyword argument of a call around it
        statement_end = _statement_end(source, bound.start())
        if enclosing not in ends:  # from its first binding on: past a signature split over lines
            ends[enclosing] = _scope_end(source, statement_end, indents[enclosing])
        if not _read_between(source, bound.group(2), statement_end, ends[enclosing]):
            return True
    return False


def _statement_end(source: bytes, start: int) -> int:
    """Where the statement starting at `start` ends: the first line break outside brackets."""
    line_end = source.find(b"\n", start)
    line = source[start : len(source) if line_end < 0 else line_end]
    if sum(map(line.count, (b"(", b"[", b"{"))) == sum(map(line.count, (b")", b"]", b"}"))):
        return len(source) if line_end < 0 else line_end  # most statements: one line
    depth, at = 0, start
    while at < len(source):
        char = source[at]
        if char in b"([{":
            depth += 1
        elif char in b")]}":
            depth = max(0, depth - 1)
        elif char == 10 and depth == 0:  # "\n"
            return at
        at += 1
    return at


def _scope_end(source: bytes, after: int, def_indent: int) -> int:
    """The first code line after `after` indented no deeper than the function's `def`."""
    for line in _CODE_LINE.finditer(source, after):
        if len(line.group(1)) <= def_indent:
            return line.start()
    return len(source)


def _read_between(source: bytes, name: bytes, start: int, end: int) -> bool:
    word = re.compile(rb"(?<![\w.])" + re.escape(name) + rb"\b")
    for found in word.finditer(source, start, end):
        line_start = source.rfind(b"\n", 0, found.start()) + 1
        before = source[line_start : found.start()]
        after = source[found.end() : found.end() + 3]
        if (
            b"#" in before
            or (before.count(b'"') + before.count(b"'")) % 2
            or _ASSIGNED.match(after)
            or (not before.strip() and after.lstrip().startswith(b","))  # `name, other = ...` at a line start
            or before.rstrip().endswith((b"for", b"as", b"del"))
            or b"def " in before
            or b"lambda" in before  # a parameter of a nested function
        ):
            continue  # maybe not a reading
        return True
    return False


def _bound_again_unmentioned(ctx, assign: cst.Assign, name: str) -> bool:
    """A later statement of the assignment's block assigns `name` again, and none before it mentions the
    name: a syntactic screen for `FunctionFacts.overwritten_unread`, which decides."""
    line = ctx.index.parents.get(assign)
    block = ctx.index.parents.get(line) if line is not None else None
    body = getattr(block, "body", None)
    if not isinstance(body, (list, tuple)) or line not in body:
        return False
    for statement in body[body.index(line) + 1 :]:
        small = statement.body[0] if is_a(statement, cst.SimpleStatementLine) and len(statement.body) == 1 else None
        if is_a(small, cst.Assign) and any(is_a(t.target, cst.Name) and t.target.value == name for t in small.targets):
            return not _mentions(ctx, small.value, name)
        if _mentions(ctx, statement, name):
            return False
    return False


def _goes_on_with_its_input(ctx, facts, call: cst.Call, assign: cst.Assign) -> bool:
    """A name the call is handed is read after the assignment with the value it had at the call: in the
    same pass of the loop around the call when there is one (after the loop, the input may only reach a
    read by running the loop no times)."""
    at, end = ctx.order(call), ctx.index.last_order(assign)
    loop = ctx.index.enclosing(assign, (cst.For, cst.While))
    if loop is not None and ctx.index.contains(facts.function, loop):
        within = ctx.index.last_order(loop)
    else:
        within = ctx.index.last_order(facts.function)
    for arg in call.args:
        if not is_a(arg.value, cst.Name):
            continue
        name = arg.value.value
        handed = facts.reaching(name, at)
        if handed and any(
            ctx.order(use) <= within and any(d in handed for d in facts.reaching(name, ctx.order(use)))
            for use in facts.later_uses(name, end)
        ):
            return True
    return False


def _first_bound_name(assign: cst.Assign) -> str | None:
    """The name a one-target assignment binds its value, or the first element of a tuple of names, to:
    `out = f(x)`, `attn_out, kv = attn(x)` (a module's main output first)."""
    if len(assign.targets) != 1:
        return None
    target = assign.targets[0].target
    if is_a(target, cst.Name):
        return target.value
    elements = target.elements if is_a(target, (cst.Tuple, cst.List)) else ()
    first = elements[0].value if elements and not is_a(elements[0], cst.StarredElement) else None
    return first.value if is_a(first, cst.Name) else None


def _last_mentions(ctx, function: cst.FunctionDef) -> dict[str, int]:
    """Name -> where the function last mentions it (a syntactic screen for `FunctionFacts.never_read`)."""
    last: dict[str, int] = {}
    for node in ctx.index.descendants(function.body, cst.Name):
        if not is_a(ctx.index.parents.get(node), cst.Param):  # a nested function's parameter reads nothing
            last[node.value] = max(last.get(node.value, 0), ctx.order(node))
    return last


def _mentions(ctx, node: cst.CSTNode, name: str) -> bool:
    """A Name `name` in `node` that is not an attribute's or a keyword's name (`self.name`, `f(name=1)`)."""
    for found in ctx.index.descendants(node, cst.Name):
        parent = ctx.index.parents.get(found)
        if found.value == name and not (
            (is_a(parent, cst.Attribute) and parent.attr is found)
            or (is_a(parent, cst.Arg) and parent.keyword is found)
        ):
            return True
    return False


def _lost_result(ctx, call: cst.Call, name: str) -> Finding:
    """What was lost and valid code that keeps it: an assignment only to a target Python accepts, the
    in-place method only where torch has one."""
    owner = receiver(call)
    in_place = name in HAS_INPLACE_VARIANT
    if is_a(owner, ASSIGNABLE):
        variant = "assign-or-in-place" if in_place else None
    else:
        variant = "use-result-or-in-place" if in_place else "use-result"
    return Finding(call, variant=variant, facts={"target": ctx.code(owner), "name": name})
