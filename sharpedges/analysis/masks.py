"""What an attention mask means: which key positions each query may see, in which convention, and
where the mask is consumed.

A mask expression is evaluated to a `MaskValue`: the positions it marks (nonzero / True, or -inf
for an additive mask) and, for triangular masks, those positions as bounds on the key-minus-query
offset `j - i`. `torch.tril(ones)` marks `j - i <= 0`; `triu(ones, diagonal=1)` marks `j - i >= 1`;
`== 0`, `~` and `logical_not` take the complement. A consumer then says what marked means:

    scores.masked_fill(M, -inf)           True = blocked
    torch.where(M, scores, -inf)          True = may attend
    F.scaled_dot_product_attention(...)   bool True = may attend, float = added
    nn.MultiheadAttention / nn.Transformer*  bool True = blocked, float = added

so the positions a query may attend to follow from the value and its consumer, and a causal mask
is right when they are `j - i <= 0` (or an offset the code computes, as with a KV cache).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from typing import Any, Literal

import libcst as cst

from sharpedges.analysis.attention import (
    LogitTracer,
    attention_softmaxes,
    dtype_min_plane,
    module_value,
    softmax_calls,
    unpacked_call,
)
from sharpedges.analysis.calls import (
    argument,
    is_false,
    is_false_or_none,
    is_true,
    literal_int,
    literal_number,
    literal_string,
    method_name,
    receiver,
)
from sharpedges.analysis.classes import self_attribute
from sharpedges.analysis.context import FileContext
from sharpedges.analysis.dataflow import Condition, Definition
from sharpedges.analysis.names import dotted
from sharpedges.analysis.project import SMALL_PACKAGE, ImportedName, imported_names
from sharpedges.analysis.registries import RegistryCall, registry_calls
from sharpedges.analysis.summaries import (
    bind_arguments,
    call_sites,
    called_function,
    constructions,
    imported_module,
    imported_module_calls,
    imported_summary,
    module_forward,
    module_forwards,
    positional_parameters,
    return_values,
)
from sharpedges.analysis.tensors import called_lambda, helper_called
from sharpedges.analysis.values import UNKNOWN, constant_number, passed_argument, possible_values, registered_buffers
from sharpedges.analysis.vocabulary import (
    ADDITIVE_METHODS,
    ARANGE,
    BOOL_DTYPES,
    BROADCAST_METHODS,
    BUFFER_CONSTRUCTORS,
    CAST_METHODS,
    CLAMP_METHODS,
    COMPLEMENT_FUNCTIONS,
    CONCATENATIONS,
    COPY_METHODS,
    DECODER_FLAG,
    DTYPE_ARGUMENT_CASTS,
    FILL_METHODS,
    FIXED_CASTS,
    FLOAT_DTYPES,
    FULL,
    HF_BIDIRECTIONAL_MASK,
    HF_MASK_MODULE,
    KERNELS,
    MASKING_METHODS,
    MODULE_MASK_ARGUMENTS,
    ONES,
    PAD_FUNCTIONS,
    PLACEMENT_METHODS,
    REORDER_METHODS,
    REPEAT_METHODS,
    RESHAPE_METHODS,
    SCALING_METHODS,
    SDPA,
    SWAP_METHODS,
    TOKENIZER_ENCODE_METHODS,
    TRIANGLE_METHODS,
    TRIANGLES,
    ZEROS,
    Kernel,
    einops_axes,
    is_library_namespace,
    kernel_of,
)
from sharpedges.analysis.walk import is_a

MAX_DEPTH = 14
SYMBOLIC = "symbolic"  # an offset the code computes (a cache length, a window): trusted, not compared
Bound = int | str | None  # None: unbounded
BEYOND = sys.maxsize  # an offset past a matrix's last column: a triangle cut there is empty (or whole)

# A file can only apply an attention mask if it names one of these consumers (masked_fill and
# torch.where count only on scores that a softmax then normalises).
CONSUMER_TOKENS = (
    b"softmax",
    b"scaled_dot_product_attention",
    b"multiheadattention",
    b"transformerencoder",
    b"transformerdecoder",
    b"transformer(",
)
# A file that names none of them may still hand a mask to a consumer in another module of the project.
HANDING_TOKENS = (*CONSUMER_TOKENS, b"mask")
SQUARE_SUBSEQUENT = re.compile(r"(^|\.)_?generate_square_subsequent_mask$")
# Ops that keep which positions a mask marks (its layout included).
PASS_THROUGH = RESHAPE_METHODS | BROADCAST_METHODS | COPY_METHODS | PLACEMENT_METHODS | REPEAT_METHODS | {"narrow"}
LARGE_NEGATIVE = -1e3  # a fill at or below this reads as "blocked" (HF's -10000.0 included)

Kind = Literal["bool", "binary", "additive", "nonzero"]
Convention = Literal["block", "allow", "sdpa", "torch_nn"]


# -- regions: offsets j - i -------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """Positions with `lo <= j - i <= hi` (None: unbounded), or all others when `negated`."""

    lo: Bound
    hi: Bound
    negated: bool = False

    def complement(self) -> Region:
        if not self.negated and self.lo is None and self.hi is not None:
            return Region(_step(self.hi, 1), None)
        if not self.negated and self.hi is None and self.lo is not None:
            return Region(None, _step(self.lo, -1))
        return Region(self.lo, self.hi, not self.negated)

    def below(self, diagonal: Bound) -> Region | None:
        """tril: keep `j - i <= diagonal`."""
        if self.negated:
            return None
        return Region(self.lo, _tighter(self.hi, diagonal, min))

    def above(self, diagonal: Bound) -> Region | None:
        """triu: keep `j - i >= diagonal`."""
        if self.negated:
            return None
        return Region(_tighter(self.lo, diagonal, max), self.hi)

    def transposed(self) -> Region:
        flip = lambda b: -b if is_a(b, int) else b  # noqa: E731 - symbolic and None stay
        return Region(flip(self.hi), flip(self.lo), self.negated)

    def shifted(self, by: Bound) -> Region:
        def move(b: Bound) -> Bound:
            if b is None or by == 0:
                return b
            return b + by if is_a(b, int) and is_a(by, int) else SYMBOLIC

        return Region(move(self.lo), move(self.hi), self.negated)

    def intersected(self, other: Region) -> Region | None:
        """`a & b`: positions both mark (None: not one interval)."""
        if self.negated or other.negated:
            return None
        return Region(_tighter(self.lo, other.lo, max), _tighter(self.hi, other.hi, min))

    def united(self, other: Region) -> Region | None:
        """`a | b`: positions either marks. Two half-lines facing apart leave the gap between them
        unmarked (`(j > i) | (j < i - w)` marks all but the window); None when it is not one region."""
        if self.negated or other.negated:
            return None
        if self.lo is None and other.lo is None:
            return Region(None, _looser(self.hi, other.hi, max))
        if self.hi is None and other.hi is None:
            return Region(_looser(self.lo, other.lo, min), None)
        for below, above in ((self, other), (other, self)):
            if below.lo is None and above.hi is None and below.hi is not None and above.lo is not None:
                if is_a(below.hi, int) and is_a(above.lo, int) and above.lo <= below.hi + 1:
                    return EVERYTHING
                return Region(_step(below.hi, 1), _step(above.lo, -1), negated=True)
        return None

    def differing(self, other: Region) -> Region | None:
        """`a ^ b` of two triangles open toward the same side, one inside the other: the band between
        their diagonals. A symbolic diagonal is taken as the inner one (`tril(bias) ^ tril(bias, -w)`,
        the local window of GPT-Neo: a window is narrower than the causal triangle it is cut from)."""
        if self.negated or other.negated:
            return None
        if self.lo is None and other.lo is None and self.hi is not None and other.hi is not None:
            inner, outer = sorted((self.hi, other.hi), key=lambda b: (is_a(b, int), b if is_a(b, int) else 0))
            if not is_a(outer, int) or inner == outer:
                return None
            return Region(_step(inner, 1), outer)
        return None

    @property
    def is_everything(self) -> bool:
        return self.lo is None and self.hi is None and not self.negated

    @property
    def cut_past_the_matrix(self) -> bool:
        """A bound lies past the last column of the matrix it was cut from (`triu(1 + n)` of `(t, n)`)."""
        return any(is_a(b, int) and abs(b) >= BEYOND // 2 for b in (self.lo, self.hi))


def _aligned_offset(
    ctx: FileContext, matrix: cst.BaseExpression | None, diagonal: cst.BaseExpression | None, at: int
) -> Bound:
    """The diagonal of a triangle cut from a `(rows, cols)` matrix, read against the matrix's sizes:

    - spelled `cols - rows + k`, it is the offset `k`: `ones((i, j)).triu(j - i + 1)` marks the keys after
      each query's own when the queries are the last `i` of `j` positions (the cache before them);
    - spelled `cols + k` with `k >= 0`, it lies past the last column (`BEYOND`): `ones(t, n).triu(1 + n)`
      marks nothing, and a `tril` of it keeps everything.

    Rows and columns are read from the constructor that built the matrix; any other computed diagonal
    stays symbolic."""
    dims = _built_dims(ctx, matrix, at)
    values = possible_values(ctx, diagonal, at) if is_a(diagonal, cst.Name) else [diagonal]
    if dims is None or values is None or len(values) != 1:
        return SYMBOLIC
    rows, cols = dims
    expr, offset = values[0], 0
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Add, cst.Subtract)):
        if (number := literal_int(expr.right)) is not None:
            offset = number if is_a(expr.operator, cst.Add) else -number
            expr = expr.left
        elif is_a(expr.operator, cst.Add) and (number := literal_int(expr.left)) is not None:
            offset, expr = number, expr.right
    if (
        is_a(expr, cst.BinaryOperation)
        and is_a(expr.operator, cst.Subtract)
        and _same_code(ctx, expr.left, cols)
        and _same_code(ctx, expr.right, rows)
    ):
        return offset
    if expr is not None and offset >= 0 and _same_code(ctx, expr, cols):
        return BEYOND
    return SYMBOLIC


def _built_dims(
    ctx: FileContext, matrix: cst.BaseExpression | None, at: int
) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """The last two sizes a `torch.ones` / `new_ones` / `torch.full` call builds `matrix` with."""
    values = possible_values(ctx, matrix, at) if is_a(matrix, cst.Name) else [matrix]
    if values is None or len(values) != 1 or not is_a(call := values[0], cst.Call):
        return None
    qualified = ctx.callee(call) or ""
    if not (qualified in ONES | FULL or method_name(call) in ("new_ones", "new_full")):
        return None
    positional = [arg.value for arg in call.args if arg.keyword is None and arg.star == ""]
    if qualified in FULL or method_name(call) == "new_full":
        positional = positional[:1]  # the fill value follows the size
    if len(positional) == 1 and is_a(positional[0], (cst.Tuple, cst.List)):
        positional = [element.value for element in positional[0].elements]
    return (positional[-2], positional[-1]) if len(positional) >= 2 else None


def _same_code(ctx: FileContext, one: cst.BaseExpression, other: cst.BaseExpression) -> bool:
    return ctx.code(one).replace(" ", "") == ctx.code(other).replace(" ", "")


def _step(bound: Bound, by: int) -> Bound:
    return bound + by if is_a(bound, int) else bound  # a symbolic bound stays symbolic


def _tighter(current: Bound, new: Bound, pick) -> Bound:
    if current is None:
        return new
    if new is None:
        return current
    if is_a(current, int) and is_a(new, int):
        return pick(current, new)
    return SYMBOLIC


def _looser(one: Bound, other: Bound, pick) -> Bound:
    if one is None or other is None:
        return None
    if is_a(one, int) and is_a(other, int):
        return pick(one, other)
    return SYMBOLIC


EVERYTHING = Region(None, None)

Verdict = Literal["causal", "future", "diagonal", "open"]


def verdict(allowed: Region) -> Verdict | None:
    """How a set of attendable positions compares with causal attention (None: cannot tell, or not
    a triangular mask at all)."""
    if allowed.negated:
        if allowed.lo is None and allowed.hi is None:
            return None
        if is_a(allowed.lo, int) and allowed.lo >= 1 and allowed.hi is not None:
            return "open"  # everything but a band of future keys `lo <= j - i <= hi`: those beyond stay open
        return "future" if allowed.hi is not None else None
    lo, hi = allowed.lo, allowed.hi
    if lo is None and hi is None:
        return None
    if hi is None:
        return "future"
    if is_a(hi, int):
        if hi > 0:
            return "future"
        if hi < 0:
            return "diagonal"
        if is_a(lo, int) and lo > 0:
            return "diagonal"
    return "causal"


# -- values -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskValue:
    """What a mask expression holds.

    kind: bool (True marks), binary (float/int 1 marks), nonzero (1/True, dtype unknown),
    additive (-inf or a large negative marks: marked positions are blocked by adding).
    region: the marked positions as offsets, when the mask is triangular (else None).
    marks: what the marked positions stand for when the source says so ("blocked": padding
    tokens, -inf fills; "allowed": real tokens), independent of geometry.
    flips: comparison or tril/triu nodes on the way whose mechanical flip gives the complement.
    origin: where `marks` is decided (`input_ids == pad_id`): what a finding about them rests on.
    tail: keys padded after the sequence (`F.pad(mask, (0, n), value=True)`: slots packed after every
    query), and whether they are marked; None when there are none.
    fill: for an additive mask built here, the expression of the value it adds where it blocks.
    from_lengths: `marks` rest on positions compared with lengths (`arange(T) < lengths[:, None]`): real
    tokens before an attention consumer, but outside attention any prefix (a prompt's) may be meant.
    """

    kind: Kind
    region: Region | None = None
    marks: Literal["blocked", "allowed"] | None = None
    flips: tuple[cst.CSTNode, ...] = ()
    origin: tuple[cst.CSTNode, ...] = ()
    tail: Literal["marked", "unmarked"] | None = None
    fill: cst.BaseExpression | None = None  # an additive mask's blocking value, as written (`-1e9`)
    from_lengths: bool = False

    def complement(self, node: cst.CSTNode | None = None) -> MaskValue:
        region = self.region.complement() if self.region is not None else None
        marks = {"blocked": "allowed", "allowed": "blocked"}.get(self.marks) if self.marks else None
        kind: Kind = "bool" if self.kind in ("bool", "additive") else self.kind
        flips = self.flips + ((node,) if node is not None else ())
        tail = {"marked": "unmarked", "unmarked": "marked"}.get(self.tail) if self.tail else None
        return MaskValue(kind, region, marks, flips, self.origin, tail, from_lengths=self.from_lengths)  # type: ignore[arg-type]

    @property
    def triangular(self) -> bool:
        return self.region is not None and not self.region.is_everything


def _assigns_mask(definition: Definition) -> bool:
    """A definition whose value is a mask expression: `mask = ...`, or `mask.masked_fill_(m, v)`, read
    as `mask = mask.masked_fill(m, v)`."""
    return definition.kind == "assign" or (definition.kind == "inplace" and definition.method in FILL_METHODS)


class MaskEvaluator:
    """Evaluates mask expressions inside one function, following local names, `self.x` attributes
    and registered buffers of the enclosing class; with `chosen`, only the definitions that can meet a
    consumer run under those string choices (the SDPA kernel of an attention registry)."""

    def __init__(
        self,
        ctx: FileContext,
        function: cst.FunctionDef | None,
        chosen: Condition | None = None,
        lambda_parameters: frozenset[str] = frozenset(),
        standalone: bool = False,
    ) -> None:
        self.ctx = ctx
        self.function = function
        self.chosen = chosen
        # What the function's own code decides, whatever its callers in this file pass (a summary for importers)
        self.standalone = standalone
        self._returned: dict[int, MaskValue | None] = {}  # depth -> what every return of the function is
        # Inside a lambda of `function`: its parameters, unknown here, hide the function's names
        self.lambda_parameters = lambda_parameters
        self.facts = ctx.function_facts(function) if function is not None else None
        self._subscript_writes: frozenset[str] | None = None
        self.cls = ctx.class_of(function) if function is not None else None

    def value(self, expr: cst.BaseExpression | None, at: int | None = None, depth: int = 0) -> MaskValue | None:
        if expr is None or depth > MAX_DEPTH:
            return None
        at = self.ctx.order(expr) if at is None else at
        if is_a(expr, cst.Name):
            return self._name(expr.value, at, depth)
        if is_a(expr, cst.NamedExpr):
            return self.value(expr.value, at, depth + 1)
        if is_a(expr, cst.IfExp):  # Ex) mask = (x < 0) if not self.causal else None: no mask on one side
            branches = [branch for branch in (expr.body, expr.orelse) if not _is_none(branch)]
            return _agreed([self.value(branch, at, depth + 1) for branch in branches])
        attr = self_attribute(expr)
        if attr is not None:
            return self._attribute(attr, depth)
        if self._tokenizer_attention_mask(expr, at):
            return MaskValue("binary", None, "allowed", origin=(expr,))
        if is_a(expr, cst.Call):
            return self._call(expr, at, depth)
        if is_a(expr, cst.Subscript):
            return self._subscript(expr, at, depth)
        if is_a(expr, cst.Attribute) and expr.attr.value in ("T", "mT"):
            inner = self.value(expr.value, at, depth + 1)
            return _transposed(inner)
        if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.BitInvert):
            inner = self.value(expr.expression, at, depth + 1)
            # `~m` of an unknown mask: torch's `~` takes only bool and integer tensors, so a boolean
            return _as_bool(inner.complement()) if inner is not None else MaskValue("bool", origin=(expr,))
        if is_a(expr, cst.Comparison):
            return self._comparison(expr, at, depth)
        if is_a(expr, cst.BinaryOperation):
            return self._binary(expr, at, depth)
        return None

    def _tokenizer_attention_mask(self, expr: cst.BaseExpression, at: int) -> bool:
        """`encoded.attention_mask` or `encoded["attention_mask"]` of what a tokenizer's encode method
        returned: 1 at the real tokens, 0 at the padding (`encoded = tokenizer.batch_encode_plus(texts)`)."""
        by_attribute = is_a(expr, cst.Attribute) and expr.attr.value == "attention_mask"
        by_key = (
            is_a(expr, cst.Subscript)
            and len(expr.slice) == 1
            and is_a(key := expr.slice[0].slice, cst.Index)
            and literal_string(key.value) == "attention_mask"
        )
        if not (by_attribute or by_key):
            return False
        holder = expr.value if is_a(expr, (cst.Attribute, cst.Subscript)) else None
        if not is_a(holder, cst.Name) or self.facts is None:
            return False
        reaching = self.facts.reaching(holder.value, at)
        return bool(reaching) and all(
            d.kind == "assign" and is_a(d.value, cst.Call) and method_name(d.value) in TOKENIZER_ENCODE_METHODS
            for d in reaching
        )

    # -- names and attributes ---------------------------------------------------------------
    def _name(self, name: str, at: int, depth: int) -> MaskValue | None:
        if name in self.lambda_parameters:
            return None
        if self.facts is None:  # module-level code (a script, a notebook)
            value, order = module_value(self.ctx, name, at)
            return self.value(value, order, depth + 1) if value is not None else None
        if self._written_into(name):
            return None
        return self._agreed_definitions(name, self.facts.reaching(name, at, self.chosen), depth)

    def _agreed_definitions(self, name: str, reaching: list[Definition], depth: int) -> MaskValue | None:
        assert self.facts is not None
        values = [
            self.value(d.value, d.order, depth + 1)
            if _assigns_mask(d)
            else self._passed(name, depth)
            if d.kind == "param"
            else self._unpacked(d, depth)
            if d.kind == "unpack"
            else None
            for d in reaching
        ]
        return _agreed(values)

    def when_present(self, expr: cst.BaseExpression, at: int, depth: int) -> MaskValue | None:
        """What a local holds when it holds a mask at all: its definitions other than `None`.

        Ex) `enc_mask = None; if exists(mask): enc_mask = mask`, handed to a module: where the module
            masks, it masks with `mask`
        """
        value = self.value(expr, at, depth)
        if value is not None or not is_a(expr, cst.Name) or self.facts is None or self._written_into(expr.value):
            return value
        reaching = self.facts.reaching(expr.value, at, self.chosen)
        masks = [d for d in reaching if not (d.kind == "assign" and d.value is not None and _is_none(d.value))]
        return self._agreed_definitions(expr.value, masks, depth) if masks and len(masks) < len(reaching) else None

    def _unpacked(self, definition: Definition, depth: int) -> MaskValue | None:
        """`future, n = masks(T)`: the element at the name's place in the tuples a helper of this file returns."""
        unpacked = unpacked_call(definition)
        target = helper_called(self.ctx, unpacked[0]) if unpacked is not None else None
        if unpacked is None or target is None:
            return None
        position = unpacked[1]
        helper = evaluator_for(self.ctx, target[0])
        values = []
        for returned in return_values(self.ctx, target[0]):
            elements = returned.elements if is_a(returned, cst.Tuple) else ()
            if position >= len(elements) or any(is_a(e, cst.StarredElement) for e in elements):
                return None
            values.append(helper.value(elements[position].value, None, depth + 1))
        return _agreed(values)

    def _passed(self, name: str, depth: int) -> MaskValue | None:
        """A parameter holds what the calls of its function in this file pass it (`block(x, mask=mask)` in
        a loop over the blocks); a call that passes nothing leaves it at its default, no mask. One that may
        pass it in `*args` or a `**kwargs` the model cannot read leaves it unknown; a value a dict carries
        is read where it is written (`dict(mask=m)`, or the keyword a wrapper's caller hands its `**kwargs`)."""
        if self.function is None or self.standalone:
            return None
        values = []
        ctx = self.ctx
        for call, positional in call_sites(ctx, self.function):
            passed = passed_argument(ctx, call, name, positional.index(name) if name in positional else None)
            if passed is None:
                continue
            if passed is UNKNOWN:
                return None
            inside = ctx.index.contains(call, passed)
            caller = ctx.function_of(call if inside else passed)
            if caller is None or caller is self.function:
                return None
            at = ctx.order(call if inside else passed)
            values.append(evaluator_for(ctx, caller).when_present(passed, at, depth + 1))
        return _agreed(values)

    def values_by_path(self, expr: cst.BaseExpression) -> list[tuple[MaskValue, cst.CSTNode]]:
        """For a local name whose reaching definitions disagree (or are partly unknown): (value, definition)
        for each definition that may reach `expr` and gives a known value on its own, which is what the mask
        holds on every path through that definition.

        Ex) `if causal: mask = mask | future` before `sdpa(attn_mask=mask)`: on that path the mask marks
            every future position, whatever the parameter `mask` held
        """
        if not is_a(expr, cst.Name) or self.facts is None or self._written_into(expr.value):
            return []
        found = []
        for definition in self.facts.reaching(expr.value, self.ctx.order(expr)):
            if _assigns_mask(definition):
                value = self.value(definition.value, definition.order, 1)
                if value is not None:
                    found.append((value, definition.node))
        return found

    def choices(self, expr: cst.BaseExpression | None, at: int | None = None, depth: int = 0) -> list[MaskValue]:
        """The masks `expr` may be, one per choice the code makes between whole masks: every definition
        of a local that reaches it, and both masks `torch.where(flag, mask_a, mask_b)` picks from.
        A local written into (`mask[:, :n] = False`) gives no choice: its value is not known.

        Ex) `mask = torch.where(focus, eye, ones)`: the mask is the identity or True everywhere
        """
        if expr is None or depth > MAX_DEPTH:
            return []
        at = self.ctx.order(expr) if at is None else at
        if is_a(expr, cst.Name) and self.facts is not None:
            if self._written_into(expr.value):
                return []
            found: list[MaskValue] = []
            for definition in self.facts.reaching(expr.value, at):
                if definition.kind != "assign":
                    return []
                found += self.choices(definition.value, definition.order, depth + 1)
            return found
        if is_a(expr, cst.Call) and self.ctx.callee(expr) == "torch.where":
            then, otherwise = argument(expr, "input", 1), argument(expr, "other", 2)
            if self.value(then, at, depth + 1) is not None and self.value(otherwise, at, depth + 1) is not None:
                return self.choices(then, at, depth + 1) + self.choices(otherwise, at, depth + 1)
        value = self.value(expr, at, depth)
        return [value] if value is not None else []

    def _written_into(self, name: str) -> bool:
        """`mask[i, :n] = 0` somewhere in the function: what the name holds is not what it was built as."""
        if self._subscript_writes is None:
            self._subscript_writes = frozenset(
                target.value.value
                for node in (self.ctx.index.descendants(self.function.body, cst.Assign) if self.function else ())
                for t in node.targets
                if is_a(target := t.target, cst.Subscript) and is_a(target.value, cst.Name)
            )
        return name in self._subscript_writes

    def _attribute(self, attr: str, depth: int) -> MaskValue | None:
        if self.cls is None:
            return None
        values = []
        facts = self.ctx.class_facts(self.cls)
        for assignment in facts.assignments.get(attr, ()):
            method = facts.methods.get(assignment.method)
            values.append(
                MaskEvaluator(self.ctx, method).value(assignment.value, self.ctx.order(assignment.node), depth + 1)
            )
        for method, value in registered_buffers(self.ctx, self.cls).get(attr, ()):
            values.append(MaskEvaluator(self.ctx, method).value(value, self.ctx.order(value), depth + 1))
        return _agreed(values)

    # -- calls -------------------------------------------------------------------------------
    def _call(self, call: cst.Call, at: int, depth: int) -> MaskValue | None:
        ctx = self.ctx
        qualified = ctx.callee(call) or ""
        method = method_name(call)
        namespace = is_library_namespace(ctx, receiver(call))
        if qualified in ("torch.tril", "torch.triu") or (method in TRIANGLE_METHODS and not namespace):
            functional = qualified in ("torch.tril", "torch.triu")
            matrix = argument(call, "input", 0) if functional else receiver(call)
            inner = self.value(matrix, at, depth + 1)
            if inner is None or inner.region is None:
                return None
            diagonal_expr = argument(call, "diagonal", 1 if functional else 0)
            diagonal: Bound = 0 if diagonal_expr is None else literal_int(diagonal_expr)
            if diagonal is None:
                diagonal = _aligned_offset(ctx, matrix, diagonal_expr, at)
            lower = (qualified or method or "").rstrip("_").endswith("tril")
            region = inner.region.below(diagonal) if lower else inner.region.above(diagonal)
            if region is None:
                return None
            flips = inner.flips + ((call,) if diagonal_expr is None else ())
            return replace(inner, region=region, flips=flips)
        if qualified in ONES or (method in ("new_ones",) and not namespace):
            return MaskValue(_dtype_kind(ctx, argument(call, "dtype"), "binary"), EVERYTHING)
        if qualified == "torch.eye":  # each position itself
            return MaskValue(_dtype_kind(ctx, argument(call, "dtype"), "binary"), Region(0, 0))
        if qualified in FULL or (method == "new_full" and not namespace):
            fill = argument(call, "fill_value", 1)
            if self.is_large_negative(fill, at):
                return MaskValue("additive", EVERYTHING, "blocked", fill=fill)
            if is_true(fill):
                return MaskValue("bool", EVERYTHING)
            if literal_number(fill) == 1:
                return MaskValue(_dtype_kind(ctx, argument(call, "dtype"), "binary"), EVERYTHING)
            return None
        if SQUARE_SUBSEQUENT.search(qualified) or method == "generate_square_subsequent_mask":
            return MaskValue("additive", Region(1, None), "blocked")
        if qualified in COMPLEMENT_FUNCTIONS or (method in ("logical_not", "bitwise_not") and not namespace):
            functional = qualified in COMPLEMENT_FUNCTIONS
            inner = self.value(argument(call, "input", 0) if functional else receiver(call), at, depth + 1)
            return _as_bool(inner.complement()) if inner is not None else None
        if method in ("eq", "ne", "gt", "ge", "lt", "le") and not namespace:
            inner = self.value(receiver(call), at, depth + 1)
            if inner is None and method in ("eq", "ne") and _is_padding_id(ctx, argument(call, "other", 0)):
                return MaskValue("bool", None, "blocked" if method == "eq" else "allowed", origin=(call,))
            return _compared(inner, method, argument(call, "other", 0), call, self, at)
        if method in FILL_METHODS and not namespace:
            return self._masked_fill(call, at, depth)
        if qualified == "torch.where":
            return self._where(call, at, depth)
        if method in ("bool",) and not namespace:
            return _as_bool(self.value(receiver(call), at, depth + 1))
        if method in FIXED_CASTS and not namespace:
            inner = self.value(receiver(call), at, depth + 1)
            return replace(inner, kind="binary") if inner is not None and inner.kind == "bool" else inner
        if method in DTYPE_ARGUMENT_CASTS and not namespace:
            inner = self.value(receiver(call), at, depth + 1)
            dtype = argument(call, "dtype", 0)
            target = ctx.qualify(dtype) if dtype is not None else None
            if target in BOOL_DTYPES:
                return _as_bool(inner)
            if (
                inner is not None
                and inner.kind == "bool"
                and (method == "type_as" or target in FLOAT_DTYPES or (dtype is not None and target is None))
            ):
                return replace(inner, kind="binary")
            return inner
        if method in SWAP_METHODS and not namespace:
            return _transposed(self.value(receiver(call), at, depth + 1))
        if method in PASS_THROUGH and not namespace:
            return self.value(receiver(call), at, depth + 1)
        if qualified in BUFFER_CONSTRUCTORS:  # Ex) self.bias = nn.Buffer(torch.tril(...))
            return self.value(argument(call, "data", 0), at, depth + 1)
        axes = einops_axes(ctx, call)
        if axes is not None:
            return _einops_moved(self.value(argument(call, "tensor", 0), at, depth + 1), axes)
        if qualified in PAD_FUNCTIONS or qualified == "torch.nn.functional.unfold":
            return self._padded(call, at, depth)
        if qualified in CONCATENATIONS:
            # Ex) `torch.cat((~padding, causal), dim=-1)`: keys of another kind in front of a causal block
            parts = argument(call, "tensors", 0)
            if not is_a(parts, (cst.Tuple, cst.List)) or any(is_a(e, cst.StarredElement) for e in parts.elements):
                return None
            values = [self.value(e.value, at, depth + 1) for e in parts.elements]
            return _combined(*values) if len(values) == 2 else None
        if qualified in ("torch.bitwise_xor", "torch.logical_xor"):
            return _differing(
                self.value(argument(call, "input", 0), at, depth + 1),
                self.value(argument(call, "other", 1), at, depth + 1),
            )
        if qualified in ("torch.logical_and", "torch.logical_or"):
            return _joined(
                self.value(argument(call, "input", 0), at, depth + 1),
                self.value(argument(call, "other", 1), at, depth + 1),
                qualified == "torch.logical_and",
            )
        return self._helper(call, depth)

    def _embedded(self, comparison: cst.Comparison) -> bool:
        """The local compared is token ids: the same value is looked up in an `nn.Embedding` of the function."""
        ids = comparison.left
        if not is_a(ids, cst.Name) or self.facts is None:
            return False
        bound = self.facts.reaching(ids.value, self.ctx.order(comparison))
        for use in self.facts.later_uses(ids.value, self.ctx.order(comparison)):
            call = self.ctx.index.enclosing(use, cst.Call)
            if (
                call is not None
                and any(arg.value is use for arg in call.args[:1])
                and module_type(self.ctx, call) == "torch.nn.Embedding"
                and self.facts.reaching(ids.value, self.ctx.order(use)) == bound
            ):
                return True
        return False

    def _padded(self, call: cst.Call, at: int, depth: int) -> MaskValue | None:
        """`F.pad(mask, (left, right, top, bottom), value=v)`. Slots padded in front (text an image attends
        to, read memories) are keys of another kind, as with `torch.cat`: the offsets stay those of the
        core block. Keys padded on the right are slots after every query, marked when `v` is True.

        Ex) F.pad(tril, (read, write) * 2, value=True): each token also keeps the write slots after it

        Ones padded with zeros (`F.pad` without a value, `F.unfold` with a `padding`) mark the real
        positions: it is a keep-mask, whatever shape it takes after.

        Ex) F.unfold(torch.ones(1, 1, h, w), kernel_size=k, stride=s, padding=halo): 1 at real pixels
        """
        inner = self.value(argument(call, "input", 0), at, depth + 1)
        if self.ctx.callee(call) == "torch.nn.functional.unfold":
            padding = argument(call, "padding", 3)
            return _valid_positions(inner, call) if padding is not None and literal_int(padding) != 0 else None
        fill = argument(call, "value", 3)
        if fill is None or literal_number(fill) == 0 or is_false_or_none(fill):
            valid = _valid_positions(inner, call)
            if valid is not None:
                return valid
        widths = _pad_widths(argument(call, "pad", 1))
        if inner is not None and inner.region is None and inner.marks is not None:
            # Ex) `F.pad(mask, (1, 0), value=True)` for a null key: a padding mask keeps what it marks
            return inner
        if inner is None or inner.region is None or widths is None:
            return None
        if literal_int(widths[1]) == 0:
            return inner
        return replace(inner, tail="marked" if is_true(fill) or literal_number(fill) == 1 else "unmarked")

    def _helper(self, call: cst.Call, depth: int) -> MaskValue | None:
        """A mask built in a helper of this file (`self._causal_mask(T)`, `make_mask(T)`): what the
        helper returns, evaluated in the helper."""
        local_lambda = called_lambda(self.ctx, call)
        if local_lambda is not None:  # Ex) future = lambda n: torch.ones(n, n).triu(1); future(T)
            inner = MaskEvaluator(self.ctx, self.function, self.chosen, frozenset(local_lambda.parameters))
            return inner.value(local_lambda.node.body, self.ctx.order(call), depth + 1)
        target = helper_called(self.ctx, call)
        if target is None:
            return _imported_builder(self.ctx, call)
        return evaluator_for(self.ctx, target[0], standalone=self.standalone).returned(depth + 1)

    def returned(self, depth: int) -> MaskValue | None:
        """The one value every return of the function gives, evaluated from `depth` on: once per depth,
        as each call of a helper asks the same (a recursive helper would ask it again at every level)."""
        if depth not in self._returned:
            assert self.function is not None
            returns = return_values(self.ctx, self.function)
            self._returned[depth] = _agreed([self.value(value, None, depth) for value in returns])
        return self._returned[depth]

    def _masked_fill(self, call: cst.Call, at: int, depth: int) -> MaskValue | None:
        """`zeros.masked_fill(M, -inf)` builds an additive mask; `M.float().masked_fill(M == 0, -inf)` too."""
        base_expr = receiver(call)
        condition = self.value(argument(call, "mask", 0), at, depth + 1)
        fill = argument(call, "value", 1)
        base = self.value(base_expr, at, depth + 1)
        if base is not None and base.kind == "additive":
            return base  # filling zeros into the allowed part of an additive mask keeps it
        if not self.is_large_negative(fill, at):
            return None
        if not (base is not None or _is_zeros(self.ctx, base_expr) or _fills_itself(base_expr, call)):
            return None
        if condition is None:
            return MaskValue("additive", None, "blocked", fill=fill)
        return MaskValue("additive", condition.region, "blocked", condition.flips, fill=fill)

    def _where(self, call: cst.Call, at: int, depth: int) -> MaskValue | None:
        condition = self.value(argument(call, "condition", 0), at, depth + 1)
        if condition is None:
            return None
        then, otherwise = argument(call, "input", 1), argument(call, "other", 2)
        if self.is_large_negative(then, at) and literal_number(otherwise) == 0:
            return MaskValue("additive", condition.region, "blocked", condition.flips, fill=then)
        if self.is_large_negative(otherwise, at) and literal_number(then) == 0:
            return replace(condition.complement(), kind="additive", marks="blocked", fill=otherwise)
        return None

    def _subscript(self, expr: cst.Subscript, at: int, depth: int) -> MaskValue | None:
        inner = self.value(expr.value, at, depth + 1)
        if inner is None or inner.region is None:
            return inner
        slices = expr.slice
        rows = slices[-2].slice if len(slices) >= 2 else None
        columns = slices[-1].slice if slices else None
        if is_a(rows, cst.Slice) and is_a(columns, cst.Slice):
            shift = _slice_start(rows)
            column_start = _slice_start(columns)
            if shift is None or column_start is None:
                return replace(inner, region=inner.region.shifted(SYMBOLIC))
            if is_a(shift, int) and is_a(column_start, int):
                return replace(inner, region=inner.region.shifted(shift - column_start))
            if shift == SYMBOLIC and column_start == 0 and is_a(rows.upper, (cst.Name, cst.Attribute)):
                # Ex) bias[:, :, key_length - query_length : key_length, :key_length]: the queries' rows
                # aligned to the end of the keys, the cache before them: row i is position past + i, as
                # the keys are counted, so the triangle keeps its diagonal where the positions meet
                return inner
            return replace(inner, region=inner.region.shifted(SYMBOLIC))
        return inner

    # -- operators ----------------------------------------------------------------------------
    def _comparison(self, expr: cst.Comparison, at: int, depth: int) -> MaskValue | None:
        if len(expr.comparisons) != 1:
            return None
        target = expr.comparisons[0]
        operator = target.operator
        positions = _position_comparison(self, expr.left, operator, target.comparator, at, depth)
        if positions is not None:
            return positions
        lengths = _length_comparison(self, expr.left, operator, target.comparator, at, depth)
        if lengths is not None:
            return replace(lengths, origin=(expr,))
        names = {
            cst.Equal: "eq",
            cst.NotEqual: "ne",
            cst.GreaterThan: "gt",
            cst.GreaterThanEqual: "ge",
            cst.LessThan: "lt",
            cst.LessThanEqual: "le",
        }
        name = names.get(type(operator))
        if name is None:
            return None
        inner = self.value(expr.left, at, depth + 1)
        if inner is None and _is_padding_id(self.ctx, target.comparator) and name in ("eq", "ne"):
            return MaskValue("bool", None, "blocked" if name == "eq" else "allowed", origin=(expr,))
        if inner is None and name in ("lt", "ge") and literal_number(target.comparator) == 0 and self._embedded(expr):
            # Ex) mask = x < 0, then x = self.token_emb(x): negative token ids stand for padding
            return MaskValue("bool", None, "blocked" if name == "lt" else "allowed", origin=(expr,))
        return _compared(inner, name, target.comparator, expr, self, at)

    def _binary(self, expr: cst.BinaryOperation, at: int, depth: int) -> MaskValue | None:
        operator = expr.operator
        if is_a(operator, cst.Subtract) and literal_number(expr.left) == 1:
            inner = self.value(expr.right, at, depth + 1)
            return inner.complement() if inner is not None and inner.kind != "additive" else None
        if is_a(operator, cst.Multiply):
            for mask_side, factor in ((expr.left, expr.right), (expr.right, expr.left)):
                if self.is_large_negative(factor, at):
                    inner = self.value(mask_side, at, depth + 1)
                    if inner is None:  # `(1 - attention_mask) * finfo.min`
                        return MaskValue("additive", None, "blocked", fill=factor)
                    if inner.kind != "additive":
                        return MaskValue("additive", inner.region, "blocked", inner.flips, fill=factor)
            return _combined(self.value(expr.left, at, depth + 1), self.value(expr.right, at, depth + 1))
        if is_a(operator, (cst.BitAnd, cst.BitOr)):
            return _joined(
                self.value(expr.left, at, depth + 1), self.value(expr.right, at, depth + 1), is_a(operator, cst.BitAnd)
            )
        if is_a(operator, cst.BitXor):
            return _differing(self.value(expr.left, at, depth + 1), self.value(expr.right, at, depth + 1))
        if is_a(operator, cst.Add):
            return _combined(self.value(expr.left, at, depth + 1), self.value(expr.right, at, depth + 1))
        return None

    # -- constants ---------------------------------------------------------------------------
    def is_large_negative(self, expr: cst.BaseExpression | None, at: int, depth: int = 0) -> bool:
        """-inf, finfo.min, -1e4 ... and names bound to one of them."""
        if expr is None or depth > MAX_DEPTH:
            return False
        number = literal_number(expr)
        if number is None and is_a(expr, cst.Call) and dotted(expr.func) == "float":
            number = constant_number(self.ctx, expr)  # Ex) float("-1e9")
        if number is not None:
            return number <= LARGE_NEGATIVE
        text = self.ctx.code(expr).replace(" ", "").replace('"', "'")
        if text in (
            "float('-inf')",
            "-float('inf')",
            "-math.inf",
            "-torch.inf",
            "-np.inf",
            "-numpy.inf",
            "float('-Inf')",
            "-float('Inf')",
        ):
            return True
        if (
            is_a(expr, cst.Attribute)
            and expr.attr.value == "min"
            and is_a(expr.value, cst.Call)
            and self.ctx.callee(expr.value) in ("torch.finfo", "numpy.finfo")
        ):
            return True
        if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.Minus):
            inner = expr.expression
            if (
                is_a(inner, cst.Attribute)
                and inner.attr.value == "max"
                and is_a(inner.value, cst.Call)
                and self.ctx.callee(inner.value) in ("torch.finfo", "numpy.finfo")
            ):
                return True
        if is_a(expr, cst.Call) and self.ctx.callee(expr) in ("torch.tensor", "torch.full") and expr.args:
            return self.is_large_negative(
                argument(expr, "data", 0)
                if self.ctx.callee(expr) == "torch.tensor"
                else argument(expr, "fill_value", 1),
                at,
                depth + 1,
            )
        if is_a(expr, cst.Call) and method_name(expr) in CAST_METHODS:
            return self.is_large_negative(receiver(expr), at, depth + 1)
        helper = called_function(self.ctx, expr) if is_a(expr, cst.Call) else None
        if helper is not None:
            # Ex) `mask_value = max_neg_value(dots)` with `def max_neg_value(t): return -torch.finfo(t.dtype).max`
            values = return_values(self.ctx, helper[0])
            returned = evaluator_for(self.ctx, helper[0])
            return bool(values) and all(returned.is_large_negative(v, self.ctx.order(v), depth + 1) for v in values)
        if is_a(expr, cst.Name) and self.facts is not None:
            definitions = self.facts.reaching(expr.value, at)
            return bool(definitions) and all(
                d.kind == "assign" and self.is_large_negative(d.value, d.order, depth + 1) for d in definitions
            )
        attr = self_attribute(expr)
        if attr is not None and self.cls is not None:
            values = [v for _, v in registered_buffers(self.ctx, self.cls).get(attr, ())]
            values += [a.value for a in self.ctx.class_facts(self.cls).assignments.get(attr, ()) if a.value is not None]
            return bool(values) and all(self.is_large_negative(v, self.ctx.order(v), depth + 1) for v in values)
        return False


def mask_builder_functions(ctx: FileContext) -> dict[str, dict[str, Any]]:
    """Module-level functions whose every return is a mask whose meaning their own code decides (what it
    marks, or a triangle), whatever they are handed: the masks an importer builds by calling them.

    Ex) `def get_mask_from_lengths(lengths): ids = torch.arange(...); return ids < lengths.unsqueeze(1)`:
        {"kind": "bool", "marks": "allowed", "region": None, "tail": None}
    """
    found: dict[str, dict[str, Any]] = {}
    for statement in ctx.module.body:
        if not is_a(statement, cst.FunctionDef) or not return_values(ctx, statement):
            continue
        value = evaluator_for(ctx, statement, standalone=True).returned(0)
        if value is None or (value.marks is None and not value.triangular):
            continue
        region = value.region
        found[statement.name.value] = {
            "kind": value.kind,
            "marks": value.marks,
            "region": None if region is None else [region.lo, region.hi, region.negated],
            "tail": value.tail,
            "from_lengths": value.from_lengths,
        }
    return found


def _imported_builder(ctx: FileContext, call: cst.Call) -> MaskValue | None:
    """The mask a function of another project module returns (`mask_builder_functions` there)."""
    entry = imported_summary(ctx, call, "mask_builders")
    if entry is None:
        return None
    region = Region(*entry["region"]) if entry["region"] is not None else None
    return MaskValue(
        entry["kind"], region, entry["marks"], origin=(call,), tail=entry["tail"], from_lengths=entry["from_lengths"]
    )


def _pad_widths(expr: cst.BaseExpression | None) -> list[cst.BaseExpression] | None:
    """The widths of `F.pad`'s pad argument: `(a, b, c, d)`, or `(a, b) * 2` repeated."""
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, cst.Multiply):
        times = literal_int(expr.right)
        inner = _pad_widths(expr.left)
        return inner * times if inner is not None and times is not None and times > 0 else None
    if is_a(expr, (cst.Tuple, cst.List)) and not any(is_a(e, cst.StarredElement) for e in expr.elements):
        return [e.value for e in expr.elements] if len(expr.elements) >= 2 else None
    return None


def _valid_positions(inner: MaskValue | None, padding: cst.Call) -> MaskValue | None:
    """A mask that marks everything, padded with unmarked slots: it marks the real positions."""
    if inner is None or inner.region != EVERYTHING or inner.marks is not None or inner.kind == "additive":
        return None
    return MaskValue(inner.kind, None, "allowed", origin=(padding,))


def _agreed(values: list[MaskValue | None]) -> MaskValue | None:
    """The one value every reaching definition gives, else unknown."""
    known = [v for v in values if v is not None]
    if not values or len(known) != len(values):
        return None
    first = known[0]
    if all(v.kind == first.kind and v.region == first.region and v.marks == first.marks for v in known):
        return first
    # Ex) `if lengths is None: return torch.ones(T, dtype=torch.bool)` beside `return ids < lengths[:, None]`:
    # a keep mask that keeps everything is the padding mask of a batch without padding
    padding = [v for v in known if v.marks == "allowed" and v.region is None]
    if (
        padding
        and all(v.kind == "bool" for v in known)
        and all(v in padding or (v.marks is None and v.region == EVERYTHING) for v in known)
    ):
        return padding[0]
    return None


def _transposed(value: MaskValue | None) -> MaskValue | None:
    if value is None or value.region is None:
        return value
    return replace(value, region=value.region.transposed())


def _as_bool(value: MaskValue | None) -> MaskValue | None:
    if value is None:
        return None
    return replace(value, kind="bool")


def _combined(left: MaskValue | None, right: MaskValue | None) -> MaskValue | None:
    """`causal & padding`, `causal_additive + padding_additive`: the triangular part decides the
    geometry; a padding mask changes which rows have keys, not which direction they look."""
    known = [v for v in (left, right) if v is not None and v.triangular]
    if len(known) == 1:
        value = known[0]
        return replace(value, flips=())
    return None


def _joined(left: MaskValue | None, right: MaskValue | None, both: bool) -> MaskValue | None:
    """`a & b` (both) or `a | b` of two boolean masks: two triangles mark what both or either mark
    (`(j > i) & (j < i - w)` marks nothing: the future is left open); else as `_combined`."""
    if left is None or right is None or not (left.triangular and right.triangular):
        return _combined(left, right)
    if left.kind != "bool" or right.kind != "bool":
        return None
    assert left.region is not None and right.region is not None
    region = left.region.intersected(right.region) if both else left.region.united(right.region)
    return MaskValue("bool", region, origin=left.origin + right.origin) if region is not None else None


def _differing(left: MaskValue | None, right: MaskValue | None) -> MaskValue | None:
    """`a ^ b` of two boolean triangles: the positions exactly one marks (`Region.differing`)."""
    if left is None or right is None or left.kind != "bool" or right.kind != "bool":
        return None
    if left.region is None or right.region is None:
        return None
    region = left.region.differing(right.region)
    return MaskValue("bool", region, origin=left.origin + right.origin) if region is not None else None


def _einops_moved(value: MaskValue | None, axes: tuple[list[str], list[str]]) -> MaskValue | None:
    """An einops rearrange / repeat that keeps the (query, key) axes last keeps what the mask marks;
    one that swaps them transposes it; anything else is unknown.

    Ex) `repeat(causal, '() i j -> b i j', b=n)`
    A mask with no geometry (padding marks, `rearrange(mask, 'b j -> b 1 1 j')`) marks the same entries
    wherever they move.
    """
    if value is not None and value.region is None and value.marks is not None:
        return value
    left, right = axes
    last = [axis for axis in (*left[-2:], *right[-2:]) if axis.isidentifier()]
    if len(last) != 4 or value is None:
        return None
    if left[-2:] == right[-2:]:
        return value
    if left[-2:] == right[-2:][::-1]:
        return _transposed(value)
    return None


def _compared(
    inner: MaskValue | None,
    operator: str,
    other: cst.BaseExpression | None,
    node: cst.CSTNode,
    evaluator: MaskEvaluator,
    at: int,
) -> MaskValue | None:
    """`M == 0` complements a 0/1 mask, `M == 1` / `M != 0` / `M > 0` keeps it; for an additive
    mask, `== 0` marks the attendable positions and `< 0` / `== -inf` the blocked ones."""
    if inner is None:
        return None
    number = literal_number(other)
    if is_true(other):
        number = 1.0
    elif is_false(other):
        number = 0.0
    if inner.kind == "additive":
        if (number == 0 and operator == "eq") or (number == 0 and operator == "ge"):
            return replace(inner.complement(), kind="bool")
        if (number == 0 and operator in ("ne", "lt")) or (evaluator.is_large_negative(other, at) and operator == "eq"):
            return replace(inner, kind="bool")
        return None
    if number is None:
        return None
    if (operator, number) in (("eq", 0), ("ne", 1), ("lt", 1), ("le", 0)):
        return replace(inner.complement(node), kind="bool")
    if (operator, number) in (("eq", 1), ("ne", 0), ("gt", 0), ("ge", 1)):
        return replace(inner, kind="bool", flips=(*inner.flips, node))
    return None


def _dtype_kind(ctx: FileContext, dtype: cst.BaseExpression | None, default: Kind) -> Kind:
    if dtype is None:
        return default
    qualified = ctx.qualify(dtype)
    if qualified in BOOL_DTYPES:
        return "bool"
    if qualified in FLOAT_DTYPES:
        return "binary"
    return "nonzero"


def _slice_start(part: cst.Slice) -> Bound:
    if part.lower is None:
        return 0
    value = literal_int(part.lower)
    return value if value is not None else SYMBOLIC


def _is_zeros(ctx: FileContext, expr: cst.BaseExpression | None) -> bool:
    if not is_a(expr, cst.Call):
        return False
    if ctx.callee(expr) in ZEROS or method_name(expr) in ("new_zeros", "zero_"):
        return True
    if ctx.callee(expr) in FULL:
        return literal_number(argument(expr, "fill_value", 1)) == 0
    return method_name(expr) in PASS_THROUGH | CAST_METHODS and _is_zeros(ctx, receiver(expr))


def _fills_itself(base: cst.BaseExpression | None, call: cst.Call) -> bool:
    """`attn_mask.masked_fill(attn_mask.to(torch.bool), -1e8)`: a 0/1 mask filled where it is nonzero,
    so it adds 0 where it was 0 and blocks where it was 1 (fairseq's encoder layer)."""
    condition = argument(call, "mask", 0)
    while is_a(condition, cst.Call) and method_name(condition) in CAST_METHODS | {"to"}:
        condition = receiver(condition)
    # Ex) falcon 4.33: `(attention_mask * 1.0).masked_fill(attention_mask, float("-1e9"))`, a bool mask made float
    while base is not None:
        if is_a(base, cst.Call) and method_name(base) in CAST_METHODS | {"to"}:
            base = receiver(base)
        elif is_a(base, cst.BinaryOperation) and is_a(base.operator, cst.Multiply) and literal_number(base.right) == 1:
            base = base.left
        else:
            break
    return base is not None and condition is not None and dotted(base) is not None and dotted(base) == dotted(condition)


def _is_padding_id(ctx: FileContext, expr: cst.BaseExpression | None) -> bool:
    """The padding token id: `pad_token_id`, `self.padding_idx`, `config.pad_token_id`."""
    text = dotted(expr) if expr is not None else None
    if text is None:
        return False
    last = text.split(".")[-1].lower()
    return last.startswith("pad") and ("id" in last or "idx" in last or "index" in last or last == "pad")


# -- positions: arange comparisons ------------------------------------------------------------------
def _axis_of(evaluator: MaskEvaluator, expr: cst.BaseExpression, at: int, depth: int) -> tuple[str, Bound] | None:
    """("query", offset) for an arange laid out as a column (`[:, None]`, `.unsqueeze(-1)`, `.view(-1, 1)`),
    ("key", offset) for one laid out as a row."""
    if depth > MAX_DEPTH:
        return None
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Add, cst.Subtract)):
        for side, other in ((expr.left, expr.right), (expr.right, expr.left)):
            axis = _axis_of(evaluator, side, at, depth + 1)
            if axis is not None and (side is expr.left or is_a(expr.operator, cst.Add)):
                number = literal_int(other)
                offset: Bound = SYMBOLIC if number is None else (number if is_a(expr.operator, cst.Add) else -number)
                base = axis[1]
                combined = base + offset if is_a(base, int) and is_a(offset, int) else SYMBOLIC
                return axis[0], combined
        return None
    if is_a(expr, cst.Name) and evaluator.facts is not None:
        definitions = evaluator.facts.reaching(expr.value, at)
        if len(definitions) == 1 and definitions[0].kind == "assign" and definitions[0].value is not None:
            return _axis_of(evaluator, definitions[0].value, definitions[0].order, depth + 1)
        return None
    if is_a(expr, cst.Subscript) and _is_arange(evaluator, expr.value, at, depth):
        # the last two axes decide: positions down a column (`[:, None]`, `[:, :, :, None]`) are the
        # queries', along a row (`[None, :]`, `[:, :, None, :]`) the keys'
        parts = [s.slice for s in expr.slice]
        if len(parts) >= 2:
            first_none = is_a(parts[-2], cst.Index) and _is_none(parts[-2].value)
            second_none = is_a(parts[-1], cst.Index) and _is_none(parts[-1].value)
            if second_none and is_a(parts[-2], cst.Slice):
                return "query", 0
            if first_none and is_a(parts[-1], cst.Slice):
                return "key", 0
        if len(parts) == 1 and is_a(parts[0], cst.Index) and _is_none(parts[0].value):
            return "key", 0
        return None
    axes = einops_axes(evaluator.ctx, expr) if is_a(expr, cst.Call) else None
    if axes is not None and is_a(expr, cst.Call) and _is_arange(evaluator, argument(expr, "tensor", 0), at, depth):
        # Ex) `rearrange(arange(n), 'i -> () i ()')`: a column of query positions
        left, right = axes
        if len(left) == 1 and left[0] in right and all(a in ("()", "1") for a in right if a != left[0]):
            place = right.index(left[0]) - len(right)
            return ("key", 0) if place == -1 else ("query", 0) if place == -2 else None
        return None
    if is_a(expr, cst.Call) and _is_arange(evaluator, receiver(expr), at, depth):
        method = method_name(expr)
        if method == "unsqueeze":
            dim = literal_int(argument(expr, "dim", 0))
            return ("query", 0) if dim in (1, -1) else ("key", 0) if dim == 0 else None
        if method in ("view", "reshape") and len(expr.args) == 2:
            first, second = (literal_int(a.value) for a in expr.args)
            return ("query", 0) if second == 1 else ("key", 0) if first == 1 else None
    return None


def _is_arange(evaluator: MaskEvaluator, expr: cst.BaseExpression | None, at: int, depth: int) -> bool:
    if expr is None or depth > MAX_DEPTH:
        return False
    if is_a(expr, cst.Subscript) and _only_new_axes(expr):  # `arange(n)[None, :]`: the same positions
        return _is_arange(evaluator, expr.value, at, depth + 1)
    if is_a(expr, cst.Call):
        if evaluator.ctx.callee(expr) in ARANGE:
            return True
        if method_name(expr) in PASS_THROUGH | DTYPE_ARGUMENT_CASTS:
            return _is_arange(evaluator, receiver(expr), at, depth + 1)
    if is_a(expr, cst.Name) and evaluator.facts is not None:
        definitions = evaluator.facts.reaching(expr.value, at)
        return (
            len(definitions) == 1
            and definitions[0].kind == "assign"
            and _is_arange(evaluator, definitions[0].value, definitions[0].order, depth + 1)
        )
    return False


POSITION_KEEPING_FUNCTIONS = frozenset(
    {"torch.nn.functional.pad", "torch.nn.functional.unfold", "einops.rearrange", "einops.repeat"}
)


def _only_new_axes(expr: cst.Subscript) -> bool:
    """`[None, :]`, `[:, None]`: full slices and new axes only."""
    return all(
        (is_a(e.slice, cst.Index) and _is_none(e.slice.value))
        or (is_a(e.slice, cst.Slice) and e.slice.lower is None and e.slice.upper is None and e.slice.step is None)
        for e in expr.slice
    )


def _holds_positions(
    evaluator: MaskEvaluator,
    expr: cst.BaseExpression | None,
    at: int,
    depth: int,
    parameters: frozenset[str] = frozenset(),
) -> bool:
    """Values taken from an arange by ops that move, copy or pick them (casts, reshapes, indexing,
    padding, unfolding or stacking into windows, einops), here or in a helper of this file that is
    handed them (`parameters`: the helper's parameters that hold positions): each entry is still the
    position it came from."""
    if expr is None or depth > MAX_DEPTH:
        return False

    def holds(value: cst.BaseExpression | None, where: int = at) -> bool:
        return _holds_positions(evaluator, value, where, depth + 1, parameters)

    if is_a(expr, cst.Name) and evaluator.facts is not None:
        definitions = evaluator.facts.reaching(expr.value, at)
        return bool(definitions) and all(
            (d.kind == "assign" and holds(d.value, d.order)) or (d.kind == "param" and expr.value in parameters)
            for d in definitions
        )
    if is_a(expr, cst.Subscript):  # `x[:, i:i + t]`: picked entries
        return holds(expr.value)
    if is_a(expr, (cst.ListComp, cst.GeneratorExp)):
        return holds(expr.elt)
    if is_a(expr, (cst.List, cst.Tuple)):
        return bool(expr.elements) and all(holds(e.value) for e in expr.elements)
    if not is_a(expr, cst.Call):
        return False
    callee = evaluator.ctx.callee(expr)
    if callee in ARANGE:
        return True
    if callee in POSITION_KEEPING_FUNCTIONS:
        return holds(argument(expr, "input", 0))
    if callee in CONCATENATIONS:
        return holds(argument(expr, "tensors", 0))
    method = method_name(expr)
    if method in PASS_THROUGH | REORDER_METHODS | CAST_METHODS and not is_library_namespace(
        evaluator.ctx, receiver(expr)
    ):
        return holds(receiver(expr))
    # one helper deep: a helper's own helpers are not followed
    return not parameters and _helper_keeps_positions(evaluator, expr, at, depth)


def _helper_keeps_positions(evaluator: MaskEvaluator, call: cst.Call, at: int, depth: int) -> bool:
    """`look_around(positions, backward=1)`: a function of this file whose every return keeps the
    positions handed to it."""
    target = called_function(evaluator.ctx, call)
    if target is None:
        return False
    function, names = target
    handed = frozenset(
        name for name, value in bind_arguments(call, names).items() if _holds_positions(evaluator, value, at, depth + 1)
    )
    returns = return_values(evaluator.ctx, function)
    inner = evaluator_for(evaluator.ctx, function)
    return bool(handed and returns) and all(
        _holds_positions(inner, r, evaluator.ctx.order(r), depth + 1, handed) for r in returns
    )


def _is_none(expr: cst.BaseExpression) -> bool:
    return is_a(expr, cst.Name) and expr.value == "None"


_REVERSED_COMPARISON: dict[type[cst.BaseCompOp], type[cst.BaseCompOp]] = {
    cst.LessThan: cst.GreaterThan,
    cst.LessThanEqual: cst.GreaterThanEqual,
    cst.GreaterThan: cst.LessThan,
    cst.GreaterThanEqual: cst.LessThanEqual,
}


def _position_comparison(evaluator, left, operator, right, at, depth) -> MaskValue | None:
    """`k_idx <= q_idx` marks `j - i <= 0`; offsets (`q_idx + past`) become symbolic bounds."""
    left_axis = _axis_of(evaluator, left, at, depth + 1)
    right_axis = _axis_of(evaluator, right, at, depth + 1)
    # Ex) `q_pos >= k_pos` where k_pos gathers positions from the same arange into each query's window
    # (`F.unfold(F.pad(rearrange(pos, ...)))`): the other side of a query column holds key positions
    if left_axis is not None and left_axis[0] == "query" and right_axis is None:
        right_axis = _key_positions(evaluator, right, at)
    elif right_axis is not None and right_axis[0] == "query" and left_axis is None:
        left_axis = _key_positions(evaluator, left, at)
    if left_axis is None or right_axis is None or left_axis[0] == right_axis[0]:
        return None
    (side, left_offset), (_, right_offset) = left_axis, right_axis
    # left_axis + left_offset OP right_axis + right_offset  ->  (j - i) OP' c
    if is_a(left_offset, int) and is_a(right_offset, int):
        constant: Bound = right_offset - left_offset
    else:
        constant = SYMBOLIC
    op: type[cst.BaseCompOp] = type(operator)
    if side == "query":  # i + a OP j + b  ->  j - i OP_reversed a - b
        op = _REVERSED_COMPARISON.get(op, op)
        constant = -constant if is_a(constant, int) else constant
    if op is cst.LessThanEqual:
        region = Region(None, constant)
    elif op is cst.LessThan:
        region = Region(None, constant - 1 if is_a(constant, int) else SYMBOLIC)
    elif op is cst.GreaterThanEqual:
        region = Region(constant, None)
    elif op is cst.GreaterThan:
        region = Region(constant + 1 if is_a(constant, int) else SYMBOLIC, None)
    else:
        return None
    return MaskValue("bool", region)


# A comparison of positions with per-row lengths reads as "this position is a real token" when the
# positions come first and are below the lengths: `arange(T)[None, :] < lengths[:, None]`.
_BELOW_LENGTHS: dict[type[cst.BaseCompOp], bool] = {
    cst.LessThan: True,
    cst.LessThanEqual: True,
    cst.GreaterThan: False,
    cst.GreaterThanEqual: False,
}


def _length_comparison(evaluator, left, operator, right, at, depth) -> MaskValue | None:
    """A padding mask built from sequence lengths: positions (an arange) compared with a batch of
    lengths laid out one per row (`lengths[:, None]`, `lengths.unsqueeze(1)`, `lens.view(bsz, 1)`).
    True below the lengths is True at the real tokens; True at or past them is True at the padding.

    Ex) `ids < lengths.unsqueeze(1)` (NeMo's get_mask_from_lengths): True at the real tokens
    Ex) `seq_range_expand >= seq_length_expand` (ESPnet's make_pad_mask): True at the padding
    """
    below = _BELOW_LENGTHS.get(type(operator))
    if below is None:
        return None
    left_positions = _holds_positions(evaluator, left, at, depth + 1)
    right_positions = _holds_positions(evaluator, right, at, depth + 1)
    if left_positions == right_positions:
        return None  # positions against positions (a window, a triangle) or no positions at all
    lengths = right if left_positions else left
    if not _one_per_row(evaluator, lengths, at, depth + 1) or _mentions_positions(evaluator, lengths, at, depth + 1):
        return None  # Ex) `cond < (cond + 1).view(n, 1)`: positions against shifted positions, a triangle
    real_tokens = below if left_positions else not below
    return MaskValue("bool", None, "allowed" if real_tokens else "blocked", from_lengths=True)


def _mentions_positions(evaluator: MaskEvaluator, expr: cst.BaseExpression, at: int, depth: int) -> bool:
    """Whether some name or call inside `expr` holds positions (`mask_cond` in `(mask_cond + 1).view(n, 1)`)."""
    return any(
        _holds_positions(evaluator, part, at, depth)
        for part in (*evaluator.ctx.index.descendants(expr, cst.Name), *evaluator.ctx.index.descendants(expr, cst.Call))
    )


def _one_per_row(evaluator: MaskEvaluator, expr: cst.BaseExpression | None, at: int, depth: int) -> bool:
    """A vector laid out as a column, one entry per row of a (batch, positions) matrix: a new last axis
    (`[:, None]`, `.unsqueeze(1)`, `.unsqueeze(-1)`, `.view(n, 1)`, `rearrange(l, 'b -> b 1')`), maybe
    expanded along it. A scalar bound (`arange(T) < prefix_len`) is not a batch of lengths."""
    if expr is None or depth > MAX_DEPTH:
        return False
    if is_a(expr, cst.Name):
        if evaluator.facts is None:
            return False
        definitions = evaluator.facts.reaching(expr.value, at)
        return (
            len(definitions) == 1
            and definitions[0].kind == "assign"
            and _one_per_row(evaluator, definitions[0].value, definitions[0].order, depth + 1)
        )
    if is_a(expr, cst.Subscript):
        parts = [element.slice for element in expr.slice]
        return len(parts) >= 2 and is_a(parts[-1], cst.Index) and _is_none(parts[-1].value)
    if not is_a(expr, cst.Call):
        return False
    method = method_name(expr)
    if method == "unsqueeze":
        return literal_int(argument(expr, "dim", 0)) in (1, -1)
    if method in ("view", "reshape") and len(expr.args) == 2 and not any(arg.star for arg in expr.args):
        return literal_int(expr.args[1].value) == 1
    if method in ("expand", "expand_as", "to", "type_as", "long", "int", "float"):
        return _one_per_row(evaluator, receiver(expr), at, depth + 1)
    axes = einops_axes(evaluator.ctx, expr)
    if axes is not None:
        left, right = axes
        return len(left) == 1 and len(right) == 2 and right[0] == left[0] and right[1] in ("1", "()")
    return False


def _key_positions(evaluator: MaskEvaluator, expr: cst.BaseExpression, at: int) -> tuple[str, Bound] | None:
    """The other side of a query column, when it holds key positions, maybe shifted (`k_pos + w`)."""
    offset: Bound = 0
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Add, cst.Subtract)):
        number = literal_int(expr.right)
        offset = SYMBOLIC if number is None else number if is_a(expr.operator, cst.Add) else -number
        expr = expr.left
    # a budget of its own: a long chain of copies
    return ("key", offset) if _holds_positions(evaluator, expr, at, 0) else None


# -- consumers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskUse:
    """A place where a mask decides what attention may see."""

    node: cst.Call | cst.BinaryOperation | cst.AugAssign
    mask: cst.BaseExpression
    convention: Convention
    consumer: str  # "masked_fill", "where", "sdpa", a torch.nn module name, "scores + mask"
    function: cst.FunctionDef | None
    # False when the consumer is reached through a layout change that only padding marks survive
    # (`rearrange(mask, 'b j -> b 1 1 j')` in another module): what it says of a triangle is unknown
    geometry: bool = True
    # a call that hands the mask to a consumer in another module (whose summary found it masking scores)
    forwarded: bool = False
    chosen: Condition | None = None  # the string choices under which the consumer runs (a registry's kernel)

    def evaluator(self, ctx: FileContext) -> MaskEvaluator:
        return evaluator_for(ctx, self.function, self.chosen)


def evaluator_for(
    ctx: FileContext, function: cst.FunctionDef | None, chosen: Condition | None = None, standalone: bool = False
) -> MaskEvaluator:
    return ctx.memo(
        ("mask_evaluator", function, chosen, standalone),
        lambda: MaskEvaluator(ctx, function, chosen, standalone=standalone),
    )


def module_type(ctx: FileContext, call: cst.Call) -> str | None:
    """The torch.nn module a call runs: `self.attn(...)` with `self.attn = nn.MultiheadAttention(...)`,
    or a local bound to one."""
    func = call.func
    attr = self_attribute(func)
    if attr is not None:
        cls = ctx.class_of(call)
        return ctx.class_facts(cls).constructed_type(attr) if cls is not None else None
    if is_a(func, cst.Name):
        function = ctx.function_of(call)
        if function is None:
            return None
        definitions = ctx.function_facts(function).reaching(func.value, ctx.order(call))
        if len(definitions) == 1 and is_a(definitions[0].value, cst.Call):
            return ctx.callee(definitions[0].value)
    return None


def mask_uses(ctx: FileContext) -> list[MaskUse]:
    """Every consumer of an attention mask in the file whose convention is known, and the calls that hand
    a mask to a consumer in another module of the project (`forwarded_mask_uses`)."""
    return ctx.memo("mask_uses", lambda: _consumer_uses(ctx) + forwarded_mask_uses(ctx))


def _consumer_uses(ctx: FileContext) -> list[MaskUse]:
    """The consumers this file itself holds."""

    def compute() -> list[MaskUse]:
        uses: list[MaskUse] = []
        if not ctx.mentions(*CONSUMER_TOKENS) and not (ctx.mentions(b"exp(") and ctx.mentions(b"masked_fill")):
            return uses  # a masked_fill or where with no softmax (or exp, by hand) after it applies no attention mask
        for call in ctx.calls():
            function = ctx.function_of(call)
            qualified = ctx.callee(call)
            method = method_name(call)
            if qualified in SDPA:
                mask = KERNELS[qualified].argument(call, "mask")
                if mask is not None:
                    uses.append(MaskUse(call, mask, "sdpa", "scaled_dot_product_attention", function))
            elif (
                method in FILL_METHODS and not is_library_namespace(ctx, receiver(call))
            ) or qualified == "torch.masked_fill":
                functional = qualified == "torch.masked_fill"
                target = argument(call, "input", 0) if functional else receiver(call)
                mask = argument(call, "mask", 1 if functional else 0)
                fill = argument(call, "value", 2 if functional else 1)
                evaluator = evaluator_for(ctx, function)
                if mask is None or not evaluator.is_large_negative(fill, ctx.order(call)):
                    continue
                if evaluator.value(target) is not None or _is_zeros(ctx, target):
                    continue  # building an additive mask, not applying one
                uses.append(MaskUse(call, mask, "block", "masked_fill", function))
            elif qualified == "torch.where":
                evaluator = evaluator_for(ctx, function)
                condition = argument(call, "condition", 0)
                then, otherwise = argument(call, "input", 1), argument(call, "other", 2)
                if condition is None or then is None or otherwise is None:
                    continue
                at = ctx.order(call)
                if literal_number(then) == 0 or literal_number(otherwise) == 0:
                    continue  # building an additive mask
                if evaluator.is_large_negative(otherwise, at) and not evaluator.is_large_negative(then, at):
                    uses.append(MaskUse(call, condition, "allow", "torch.where", function))
                elif evaluator.is_large_negative(then, at) and not evaluator.is_large_negative(otherwise, at):
                    uses.append(MaskUse(call, condition, "block", "torch.where", function))
            elif (kind := module_type(ctx, call)) is not None:
                for keyword, position in MODULE_MASK_ARGUMENTS.get(kind, {}).items():
                    mask = argument(call, keyword, position)
                    if mask is not None:
                        uses.append(MaskUse(call, mask, "torch_nn", f"{kind}({keyword}=)", function))
        uses += [use for registry in registry_calls(ctx) for use in _registry_mask_uses(ctx, registry)]
        return uses + _added_mask_uses(ctx)

    return ctx.memo("consumer_mask_uses", compute)


def _added_mask_uses(ctx: FileContext) -> list[MaskUse]:
    """`scores + mask`, `scores += mask`: an additive mask (-inf or a large negative where blocked) added on
    the way from a QK^T product to its softmax, the other operand of an addition on that path."""
    uses: list[MaskUse] = []
    seen: set[cst.CSTNode] = set()
    for softmax, sources in attention_softmaxes(ctx):
        for source in sources:
            for node, inner in zip(source.path, source.path[1:], strict=False):
                addition = _addition(node, inner)
                if addition is None or node in seen:
                    continue
                seen.add(node)
                add, mask = addition
                if _additive(evaluator_for(ctx, softmax.function), mask):
                    uses.append(MaskUse(add, mask, "sdpa", "scores + mask", softmax.function))
    return uses


def _additive(evaluator: MaskEvaluator, mask: cst.BaseExpression) -> bool:
    """Whether `mask` is an additive mask, on every path or on the paths through one of its definitions.

    Ex) `if mask is None: mask = torch.full((t, t), -inf).triu(1)` before `scores + mask`: the parameter
    is unknown, and where the function builds its own mask that mask is additive
    """
    value = evaluator.value(mask)
    if value is not None:
        return value.kind == "additive"
    return any(candidate.kind == "additive" for candidate, _ in evaluator.values_by_path(mask))


def _addition(
    node: cst.CSTNode, inner: cst.CSTNode
) -> tuple[cst.BinaryOperation | cst.AugAssign, cst.BaseExpression] | None:
    """An addition on the scores' path (`inner` is the scores' side), and its other operand."""
    if is_a(node, cst.BinaryOperation) and is_a(node.operator, cst.Add):
        other = node.right if inner is node.left else node.left if inner is node.right else None
        return (node, other) if other is not None else None
    if is_a(node, cst.AugAssign) and is_a(node.operator, cst.AddAssign) and inner is not node.value:
        return node, node.value
    return None


def _registry_mask_uses(ctx: FileContext, registry: RegistryCall) -> list[MaskUse]:
    """The SDPA kernel a registry call may run reads its mask as SDPA does, and only the masks built for it.

    Ex) `attention_interface(self, q, k, v, mask)` with `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`
    """
    mask = registry.kernel.argument(registry.call, "mask")
    if mask is None:
        return []
    function = ctx.function_of(registry.call)
    return [
        MaskUse(registry.call, mask, "sdpa", "scaled_dot_product_attention", function, chosen=registry.chosen(kernel))
        for kernel in registry.implementations
        if kernel.mask_convention == "sdpa"
    ]


def additive_masks_made_boolean(ctx: FileContext) -> list[tuple[cst.Call, cst.BaseExpression | None, RegistryCall]]:
    """`causal_mask.bool()` of an additive mask (0 = keep, -inf / finfo.min = blocked) in a branch whose
    string choice sends it only to kernels that read a boolean as True = attend (the SDPA of a registry
    chosen by the same string): the blocked positions stay True, and SDPA attends exactly there
    (transformers #38094, Llama 4). Each with where the mask's minimum is written, when known."""
    registries = [registry for registry in registry_calls(ctx) if registry.path is not None]
    found = []
    for call in ctx.calls() if registries else ():
        function = ctx.function_of(call)
        cast = receiver(call)
        if function is None or cast is None or not _casts_to_bool(ctx, call):
            continue
        condition = ctx.function_facts(function).condition(call)
        for registry in registries:
            met = [kernel for kernel in registry.implementations if condition.agrees(registry.chosen(kernel))]
            if not met or any(kernel.mask_convention != "sdpa" for kernel in met):
                continue
            at = ctx.order(call)
            value = evaluator_for(ctx, function).value(cast, at)
            plane = dtype_min_plane(ctx, cast, at)
            if plane is not None or (value is not None and value.kind == "additive"):
                found.append((call, plane, registry))
                break
    return found


def _casts_to_bool(ctx: FileContext, call: cst.Call) -> bool:
    """`m.bool()`, `m.to(torch.bool)`, `m.type(torch.bool)` on a tensor, its result used as it is."""
    method = method_name(call)
    if is_library_namespace(ctx, receiver(call)):
        return False
    if method == "bool":
        casts = not call.args
    elif method in ("to", "type"):
        dtype = argument(call, "dtype", 0)
        casts = dtype is not None and ctx.qualify(dtype) in BOOL_DTYPES
    else:
        return False
    parent = ctx.index.parents.get(call)
    return casts and is_a(parent, (cst.Assign, cst.Arg, cst.Return))


def masks_attention_scores(ctx: FileContext, use: MaskUse) -> bool:
    """For `masked_fill` / `torch.where`: the filled tensor is a QK^T product that a softmax of the
    same function then normalises (a span-scoring head that masks its logits is not attention)."""
    node = use.node
    if use.convention not in ("block", "allow") or not is_a(node, cst.Call) or use.forwarded:
        return True  # blocking and allowing are calls; a forwarded use's consumer was checked in its module
    tracer = LogitTracer(ctx, use.function)  # module-level code too: a script, a notebook
    at = ctx.order(node)
    if use.consumer == "torch.where":
        branches = [argument(node, "input", 1), argument(node, "other", 2)]
    else:
        branches = [receiver(node) if method_name(node) else argument(node, "input", 0)]
    products = {id(s.product) for b in branches if b is not None for s in tracer.sources(b, at)}
    if not products:
        # Ex) scores of another form (a distance, an MLP over pairs) filled, then normalised by a softmax
        return _softmaxed_later(ctx, use)
    for softmax in softmax_calls(ctx):
        if (
            softmax.function is use.function
            and ctx.order(softmax.call) > at
            and products & {id(s.product) for s in tracer.sources(softmax.input, ctx.order(softmax.call))}
        ):
            return True
    return False


def allowed_region(value: MaskValue, convention: Convention) -> Region | Literal["ignored"] | None:
    """Which positions a query may attend to when `value` meets a consumer; "ignored" for a 0/1
    float mask that is added to the scores and so masks nothing."""
    if value.region is None:
        return None
    if convention == "block":
        return value.region.complement()
    if convention == "allow":
        return value.region
    if value.kind == "nonzero":
        return None
    if value.kind == "binary":
        return "ignored"
    if convention == "sdpa" and value.kind == "bool":
        return value.region
    return value.region.complement()  # additive everywhere; bool under torch.nn's True = blocked


def adds_a_boolean(value: MaskValue, convention: Convention) -> bool:
    """A boolean cast to a 0/1 float (`keep.float()`, `(~m).to(torch.float32)`) meeting a consumer that
    adds a float mask to the scores: it adds 0 or 1 and blocks nothing. Triangles are SHP202's."""
    return convention in ("sdpa", "torch_nn") and value.kind == "binary" and value.region is None


def blocks_every_key(value: MaskValue, convention: Convention) -> bool:
    """Whether the consumer lets no key through at all (`masked_fill` of a mask True everywhere): each
    row's scores are then one constant, and its attention is uniform over every key."""
    allowed = allowed_region(value, convention)
    return isinstance(allowed, Region) and allowed.negated and allowed.lo is None and allowed.hi is None


def attends_after_the_sequence(value: MaskValue, convention: Convention) -> bool:
    """Do the keys padded after the sequence stay attendable (marked and kept, or unmarked and not
    blocked)? Then every query sees slots after it, whatever the core block's geometry."""
    if value.tail is None:
        return False
    marked_kept = convention == "allow" or (convention == "sdpa" and value.kind == "bool")
    return (value.tail == "marked") == marked_kept


def attends_to_marked(value: MaskValue, convention: Convention) -> bool | None:
    """For a mask whose marked positions mean something (padding, -inf): does the consumer let the
    query attend to the marked positions? None when the dtype decides and is unknown."""
    if convention == "allow":
        return True
    if convention == "block":
        return False
    if value.kind == "additive":
        return False
    if value.kind == "bool":
        return convention == "sdpa"
    return None


# -- masks handed on: to helpers, to modules, to other files ------------------------------------------
# How a consumer reads a parameter as a mask: (convention, whether the mask's layout reaches it, the
# consumer, whether that consumer lives in another module of the project).
Reading = tuple[Convention, bool, str, bool]
# The convention in which a consumer reads the complement of what it is handed (a bool mask: `~mask`).
COMPLEMENTED: dict[str, Convention] = {"block": "allow", "allow": "block", "sdpa": "block", "torch_nn": "allow"}


def parameter_mask_readings(ctx: FileContext, function: cst.FunctionDef) -> dict[str, tuple[Reading, ...]]:
    """Parameter -> how the consumers it reaches read it as a mask: the consumers of `function` itself
    (`sim.masked_fill(~mask, -inf)` reads `mask` True = keep) and those of the helpers, methods and modules
    it hands the parameter to, in this file or summarised in a project module it imports. Computed once
    per function (one that reaches itself again adds nothing the second time).

    Ex) `self.attend(q, k, v, mask=mask)` with `Attend` imported from a module whose forward does
        `sim.masked_fill(~mask, -inf)`: `mask` is read True = keep, by that masked_fill
    """
    memo: dict[cst.FunctionDef, dict[str, tuple[Reading, ...]]] = ctx.memo("parameter_mask_readings", dict)
    found = memo.get(function)
    if found is None:
        memo[function] = {}
        found = memo[function] = _parameter_readings(ctx, function)
    return found


def _parameter_readings(ctx: FileContext, function: cst.FunctionDef) -> dict[str, tuple[Reading, ...]]:
    found: dict[str, list[Reading]] = {}

    def add(expr: cst.BaseExpression, at: int, readings: tuple[Reading, ...]) -> None:
        paths = parameter_paths(ctx, function, expr, at) or set()
        for name, complemented, _ in sorted(paths):
            layout = all(kept for other, flip, kept in paths if (other, flip) == (name, complemented))
            for convention, geometry, consumer, elsewhere in readings:
                read = COMPLEMENTED[convention] if complemented else convention
                found.setdefault(name, []).append((read, geometry and layout, consumer, elsewhere))

    for use in _consumer_uses(ctx):
        if use.function is function and masks_attention_scores(ctx, use):
            add(use.mask, ctx.order(use.node), ((use.convention, True, use.consumer, False),))
    collector = function.params.star_kwarg
    for call in ctx.index.descendants(function.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef, cst.Lambda)):
        callee = called_mask_readings(ctx, call)
        if callee is not None:
            positional, readings = callee
            bound = bind_arguments(call, positional)
            for name, value in bound.items():
                if name in readings:
                    add(value, ctx.order(call), readings[name])
            # Ex) PreNorm: `def forward(self, x, **kwargs): return self.fn(self.norm(x), **kwargs)`, the
            # keywords its callers pass go on to the wrapped module under the same names
            if is_a(collector, cst.Param) and any(
                arg.star == "**" and is_a(arg.value, cst.Name) and arg.value.value == collector.name.value
                for arg in call.args
            ):
                for name, passed in readings.items():
                    if name not in bound:
                        found.setdefault(name, []).extend(passed)
    return {name: _merged(readings) for name, readings in found.items()}


def _merged(readings: list[Reading]) -> tuple[Reading, ...]:
    """One reading per consumer and convention: its layout reaches the consumer when it does on some path
    (`if mask.ndim != 4: mask = rearrange(mask, 'b j -> b 1 1 j')` keeps a 4-D mask as it is)."""
    layouts: dict[tuple[Convention, str, bool], bool] = {}
    for convention, geometry, consumer, elsewhere in readings:
        key = (convention, consumer, elsewhere)
        layouts[key] = layouts.get(key, False) or geometry
    return tuple(
        (convention, layout, consumer, elsewhere) for (convention, consumer, elsewhere), layout in layouts.items()
    )


def called_mask_readings(ctx: FileContext, call: cst.Call) -> tuple[list[str], dict[str, tuple[Reading, ...]]] | None:
    """What the function a call runs does with its parameters as masks, with the names its positional
    arguments bind to: a helper of this file, the `forward` of a module of this file that the callee
    holds (`self.attend`, `for attn, ff in self.layers`), or a module class a project module summarises."""
    if ctx.callee(call) in KERNELS:
        return None
    target = called_function(ctx, call)
    if target is not None:
        return target[1], parameter_mask_readings(ctx, target[0])
    module = module_forward(ctx, call)
    if module is not None:
        return positional_parameters(module)[1:], parameter_mask_readings(ctx, module)
    forwards = module_forwards(ctx, call)
    if forwards:
        return _agreed_readings(ctx, forwards)
    entry = imported_module(ctx, call)
    if entry is None or not entry.get("masks"):
        return None
    name = entry["class"]
    readings = {
        parameter: tuple(
            (convention, geometry, f"{consumer} in `{name}`", True) for convention, geometry, consumer in uses
        )
        for parameter, uses in entry["masks"].items()
    }
    return list(entry["positional"]), readings


def _agreed_readings(
    ctx: FileContext, forwards: list[cst.FunctionDef]
) -> tuple[list[str], dict[str, tuple[Reading, ...]]] | None:
    """For a callee that may hold modules of several classes of this file (`PreNorm(dim, fn=Attention(...))`
    and `SandwichNorm(dim, fn=Attention(...))`, chosen by a flag; `self.fn` wrapping an attention or a
    feed-forward): the positional parameters they share, and the readings of each parameter, when no two
    of them read one differently (a class without the parameter is not the one a call passing it runs)."""
    positional = [positional_parameters(forward)[1:] for forward in forwards]
    shared: list[str] = []
    for names in zip(*positional, strict=False):
        if len(set(names)) != 1:
            break
        shared.append(names[0])
    merged: dict[str, tuple[Reading, ...]] = {}
    for forward in forwards:
        for name, readings in parameter_mask_readings(ctx, forward).items():
            if name in merged and {r[0] for r in merged[name]} != {r[0] for r in readings}:
                return None
            merged.setdefault(name, readings)
    return shared, merged


def parameter_paths(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression | None, at: int, depth: int = 0
) -> set[tuple[str, bool, bool]] | None:
    """The parameters of `function` a mask expression is, on every path: (name, complemented an odd number
    of times, layout kept) for each; None when some path leads elsewhere. Names (a `None` binding is no
    mask), complements, views, broadcasts and indexing keep the layout; transposes, and rearranges that
    move the last two axes, keep only what the entries mark."""
    if expr is None or depth > MAX_DEPTH:
        return None
    if is_a(expr, cst.Name):
        definitions = [
            d
            for d in ctx.function_facts(function).reaching(expr.value, at)
            if not (d.kind == "assign" and d.value is not None and _is_none(d.value))
        ]
        found: set[tuple[str, bool, bool]] = set()
        for definition in definitions:
            if definition.kind == "param":
                found.add((expr.value, False, True))
                continue
            inner = (
                parameter_paths(ctx, function, definition.value, definition.order, depth + 1)
                if definition.kind == "assign"
                else None
            )
            if inner is None:
                return None
            if len(definitions) > 1 and _rank_guarded(ctx, definition.node, expr.value):
                inner = {path for path in inner if path[2]}  # masks of another rank take the other path
            found |= inner
        return found or None
    if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.BitInvert):
        return _complemented(parameter_paths(ctx, function, expr.expression, at, depth + 1))
    if is_a(expr, cst.IfExp):  # Ex) `key_mask = mask if not has_context else context_mask`
        branches = [branch for branch in (expr.body, expr.orelse) if not _is_none(branch)]
        paths = [parameter_paths(ctx, function, branch, at, depth + 1) for branch in branches]
        known = [path for path in paths if path is not None]
        return set().union(*known) if known and len(known) == len(paths) else None
    if is_a(expr, cst.Subscript):
        inner = parameter_paths(ctx, function, expr.value, at, depth + 1)
        shifted = any(is_a(part.slice, cst.Slice) and part.slice.lower is not None for part in expr.slice[-2:])
        return _layout_lost(inner) if shifted else inner
    if not is_a(expr, cst.Call):
        return None
    qualified = ctx.callee(expr)
    method = method_name(expr)
    namespace = is_library_namespace(ctx, receiver(expr))
    if qualified in COMPLEMENT_FUNCTIONS or (method in ("logical_not", "bitwise_not") and not namespace):
        inner_expr = argument(expr, "input", 0) if qualified in COMPLEMENT_FUNCTIONS else receiver(expr)
        return _complemented(parameter_paths(ctx, function, inner_expr, at, depth + 1))
    if method in PASS_THROUGH and not namespace:
        return parameter_paths(ctx, function, receiver(expr), at, depth + 1)
    if qualified == "torch.nn.functional.pad":  # Ex) a keep entry for a null key: the marks stay, shifted
        return _layout_lost(parameter_paths(ctx, function, argument(expr, "input", 0), at, depth + 1))
    if method in REORDER_METHODS and not namespace:
        return _layout_lost(parameter_paths(ctx, function, receiver(expr), at, depth + 1))
    axes = einops_axes(ctx, expr)
    if axes is None:
        return None
    inner = parameter_paths(ctx, function, argument(expr, "tensor", 0), at, depth + 1)
    left, right = axes
    kept = left[-2:] == right[-2:] and all(axis.isidentifier() for axis in left[-2:]) and len(left) >= 2
    return inner if kept else _layout_lost(inner)


def _rank_guarded(ctx: FileContext, node: cst.CSTNode, name: str) -> bool:
    """Inside an `if` that tests the rank of `name` (`if mask.ndim != 4:`): a rearrange there is for
    masks of one rank, and a mask of the other rank reaches on as it is."""
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.FunctionDef, cst.Lambda)):
            return False
        if is_a(ancestor, cst.If) and any(
            is_a(part, cst.Attribute)
            and part.attr.value in ("ndim", "dim", "ndimension")
            and dotted(part.value) == name
            for part in ctx.index.descendants(ancestor.test, cst.Attribute)
        ):
            return True
    return False


def _complemented(paths: set[tuple[str, bool, bool]] | None) -> set[tuple[str, bool, bool]] | None:
    return None if paths is None else {(name, not flipped, layout) for name, flipped, layout in paths}


def _layout_lost(paths: set[tuple[str, bool, bool]] | None) -> set[tuple[str, bool, bool]] | None:
    return None if paths is None else {(name, flipped, False) for name, flipped, _ in paths}


def forwarded_mask_uses(ctx: FileContext) -> list[MaskUse]:
    """The calls that hand a mask to a consumer in another module of the project, as uses of that mask
    in the convention the consumer reads it: at the first call on the way that passes something other
    than a parameter of its own function (a parameter is handed on by the calls of that function).

    Ex) `x = attn(x, mask=mask)` in a loop over layers whose forward calls `self.attend(q, k, v,
        mask=mask)`, an `Attend` imported from `attend.py` that runs SDPA with `attn_mask=mask`
    """
    if not imported_module_calls(ctx):
        return []
    uses: list[MaskUse] = []
    for call in ctx.calls():
        function = ctx.function_of(call)
        callee = called_mask_readings(ctx, call) if function is not None else None
        if function is None or callee is None:
            continue
        at = ctx.order(call)
        positional, readings = callee
        for name, value in bind_arguments(call, positional).items():
            elsewhere = [reading for reading in readings.get(name, ()) if reading[3]]
            if not elsewhere or _is_none(value) or parameter_paths(ctx, function, value, at) is not None:
                continue
            kinds: dict[tuple[Convention, bool], str] = {}
            for convention, geometry, consumer, _ in elsewhere:
                kinds.setdefault((convention, geometry), consumer)  # one use per way of reading it
            for (convention, geometry), consumer in kinds.items():
                uses.append(MaskUse(call, value, convention, consumer, function, geometry, forwarded=True))
    return uses


# -- one mask, several consumers -----------------------------------------------------------------------
# Ops whose result holds the receiver's booleans, rearranged: the same mask for every consumer.
SAME_MASK_METHODS = RESHAPE_METHODS | BROADCAST_METHODS | REORDER_METHODS | COPY_METHODS | PLACEMENT_METHODS


@dataclass(frozen=True)
class PolaritySource:
    """The expression that decides a mask's values (a comparison, a call, a parameter), and whether the
    consumer sees it complemented (`~`, `logical_not`) an odd number of times."""

    node: cst.CSTNode
    flipped: bool


def polarity_source(
    ctx: FileContext, function: cst.FunctionDef | None, expr: cst.BaseExpression | None, at: int, depth: int = 0
) -> PolaritySource | None:
    """Follow a mask back through local names (a `None` binding is no mask and is skipped), views,
    broadcasts, indexing, einops rearranges and complements to the expression that computes it."""
    if expr is None or function is None or depth > MAX_DEPTH:
        return None
    if is_a(expr, cst.Name):
        facts = ctx.function_facts(function)
        definitions = [
            d
            for d in facts.reaching(expr.value, at)
            if not (d.kind == "assign" and is_a(d.value, cst.Name) and d.value.value == "None")
        ]
        sources: set[PolaritySource | None] = set()
        for definition in definitions:
            if definition.kind == "param":
                sources.add(PolaritySource(definition.node, False))
            elif definition.kind == "assign":
                sources.add(polarity_source(ctx, function, definition.value, definition.order, depth + 1))
            else:
                return None
        # every path agrees (`m = keep == 0; m = m[:, None]` in one branch reaches as both definitions)
        return sources.pop() if len(sources) == 1 else None
    if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.BitInvert):
        inner = polarity_source(ctx, function, expr.expression, at, depth + 1)
        return replace(inner, flipped=not inner.flipped) if inner is not None else None
    if is_a(expr, cst.Subscript):
        return polarity_source(ctx, function, expr.value, at, depth + 1)
    if is_a(expr, cst.Call):
        qualified = ctx.callee(expr)
        namespace = is_library_namespace(ctx, receiver(expr))
        method = method_name(expr)
        if qualified in COMPLEMENT_FUNCTIONS or (method == "logical_not" and not namespace):
            inner_expr = argument(expr, "input", 0) if qualified in COMPLEMENT_FUNCTIONS else receiver(expr)
            inner = polarity_source(ctx, function, inner_expr, at, depth + 1)
            return replace(inner, flipped=not inner.flipped) if inner is not None else None
        if method in SAME_MASK_METHODS and not namespace:
            return polarity_source(ctx, function, receiver(expr), at, depth + 1)
        if einops_axes(ctx, expr) is not None:
            return polarity_source(ctx, function, argument(expr, "tensor", 0), at, depth + 1)
    return PolaritySource(expr, False)


def attends_where_true(use: MaskUse) -> bool:
    """For a boolean mask: whether the consumer keeps the scores where it is True."""
    return use.convention in ("sdpa", "allow")


def conflicting_uses(ctx: FileContext) -> list[tuple[PolaritySource, MaskUse, MaskUse]]:
    """One boolean mask that two consumers read in opposite conventions: `scores.masked_fill(m, -inf)`
    blocks where `m` is True and `F.scaled_dot_product_attention(..., attn_mask=m)` attends there, so one
    of the two is inverted whatever `m` marks. The mask is known to be boolean because a masked_fill or
    a `torch.where` reads it (they take nothing else); each (source, blocking use, attending use) once."""

    def compute() -> list[tuple[PolaritySource, MaskUse, MaskUse]]:
        by_source: dict[cst.CSTNode, list[tuple[PolaritySource, MaskUse]]] = {}
        for use in mask_uses(ctx):
            if not masks_attention_scores(ctx, use):
                continue
            source = polarity_source(ctx, use.function, use.mask, ctx.order(use.node))
            if source is not None:
                by_source.setdefault(source.node, []).append((source, use))
        found = []
        for uses in by_source.values():
            if not any(use.convention in ("block", "allow") for _, use in uses):
                continue  # nothing proves the mask boolean: SDPA and torch.nn add a float mask
            attending = [(s, u) for s, u in uses if attends_where_true(u) != s.flipped]
            blocking = [(s, u) for s, u in uses if attends_where_true(u) == s.flipped]
            if attending and blocking:
                found.append((blocking[0][0], blocking[0][1], attending[0][1]))
        return found

    return ctx.memo("conflicting_mask_uses", compute)


# -- backends of one attention that disagree on causality ----------------------------------------------
def backends_disagreeing_on_causality(ctx: FileContext) -> list[tuple[cst.Call, cst.Call]]:
    """(uncausal call, causal call): two kernel calls of one self-attention on exclusive branches, the
    branches chosen only by what is installed (module-level flags) and by the mask, where one kernel is
    told `causal=True` and the other `is_causal=False` with a mask that may be None. When the mask is
    None the second backend attends to the future, whatever model the first says this is.

    Ex) unsloth 2025.7: `elif HAS_FLASH_ATTENTION and attention_mask is None: flash_attn_func(Q, K, V,
        causal=True)` / `else: scaled_dot_product_attention(Q, K, V, attn_mask=attention_mask,
        is_causal=False)`, the mask None in training"""
    found = []
    by_function: dict[cst.FunctionDef, list[tuple[cst.Call, Kernel, bool]]] = {}
    for call in ctx.calls():
        kernel = kernel_of(ctx, call)
        function = ctx.function_of(call)
        flag = kernel.argument(call, "causal") if kernel is not None else None
        if kernel is None or function is None or flag is None or not (is_true(flag) or is_false(flag)):
            continue
        by_function.setdefault(function, []).append((call, kernel, is_true(flag)))
    for function, calls in by_function.items():
        for off, kernel, causal in calls:
            if causal or not _mask_may_be_none(ctx, function, off, kernel):
                continue
            query, key = kernel.argument(off, "query"), kernel.argument(off, "key")
            if query is None or key is None or not same_sequence(ctx, function, query, key, ctx.order(off)):
                continue
            mask = kernel.argument(off, "mask")
            if is_a(mask, cst.Name) and _causal_mask_always_handed(ctx, function, mask.value):
                continue
            for on, _, other_causal in calls:
                if other_causal and _chosen_by_installation(ctx, function, off, on, mask):
                    found.append((off, on))
                    break
    return found


def _mask_may_be_none(ctx: FileContext, function: cst.FunctionDef, call: cst.Call, kernel: Kernel) -> bool:
    """The kernel gets no mask, None, or a parameter that defaults to None and is not rebound before."""
    mask = kernel.argument(call, "mask")
    if mask is None or is_false_or_none(mask):
        return True
    if not is_a(mask, cst.Name):
        return False
    reaching = ctx.function_facts(function).reaching(mask.value, ctx.order(call))
    return (
        bool(reaching)
        and all(d.kind == "param" and is_false_or_none(d.value) for d in reaching)
        and _may_be_none_there(ctx, function, call, mask.value)
    )


def _may_be_none_there(ctx: FileContext, function: cst.FunctionDef, call: cst.Call, name: str) -> bool:
    """Whether the `if` tests on the way to the call leave room for `name is None`: each test is read as
    a formula over its parts (`HAS_FLASH and mask is None`), and some truth of those parts takes the path
    with the name None. unsloth's Falcon-H1 reaches its SDPA `else` only past `not HAS_FLASH and mask is
    None` and `HAS_FLASH and mask is None`: there the mask is never None."""
    constraints: list[tuple[cst.BaseExpression, bool]] = []
    child: cst.CSTNode = call
    for ancestor in ctx.index.ancestors(call):
        if ancestor is function:
            break
        if is_a(ancestor, cst.If) and child is not ancestor.test:
            constraints.append((ancestor.test, child is ancestor.body))
        child = ancestor
    atoms: dict[str, int] = {f"{name} is None": 0}

    def atom(expr: cst.BaseExpression) -> int:
        return atoms.setdefault(ctx.code(expr).strip(), len(atoms))

    def truth(expr: cst.BaseExpression, values: int) -> bool:
        if is_a(expr, cst.BooleanOperation):
            left, right = truth(expr.left, values), truth(expr.right, values)
            return (left and right) if is_a(expr.operator, cst.And) else (left or right)
        if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.Not):
            return not truth(expr.expression, values)
        if is_a(expr, cst.Comparison) and len(expr.comparisons) == 1 and is_a(expr.left, cst.Name):
            target = expr.comparisons[0]
            if (
                expr.left.value == name
                and is_a(target.comparator, cst.Name)
                and target.comparator.value == "None"
                and is_a(target.operator, (cst.Is, cst.IsNot))
            ):
                return bool(values & 1) == is_a(target.operator, cst.Is)
        return bool(values >> atom(expr) & 1)

    for test, _ in constraints:
        truth(test, 0)  # number the atoms
    if len(atoms) > 12:
        return True  # too many parts to try every truth: say what the parameter's default says
    return any(
        all(truth(test, values) == wanted for test, wanted in constraints)
        for values in range(1, 1 << len(atoms), 2)  # the name None: bit 0 set
    )


def _causal_mask_always_handed(ctx: FileContext, function: cst.FunctionDef, name: str) -> bool:
    """Whether the file's other code builds a causal triangle under the mask parameter's name (the model
    that calls this attention) and never sets that name to None: the mask then carries the causality.

    Ex) unsloth 2025.8.10 Mistral: `attention_mask = causal_mask_values[None, None].expand(...)`, a
        `triu` of -inf, handed to every layer; Llama 2025.7.1 sets `attention_mask = None` in training"""
    built = False
    for assign in ctx.index.nodes(cst.Assign):
        if ctx.function_of(assign) is function or not any(
            is_a(t.target, cst.Name) and t.target.value == name for t in assign.targets
        ):
            continue
        if is_false_or_none(assign.value):
            return False
        value = evaluator_for(ctx, ctx.function_of(assign)).value(assign.value, ctx.order(assign))
        built = built or (value is not None and value.triangular)
    return built


def _chosen_by_installation(
    ctx: FileContext, function: cst.FunctionDef, first: cst.Call, second: cst.Call, mask: cst.BaseExpression | None
) -> bool:
    """Whether the two calls sit on exclusive branches of one `if` chain whose tests read nothing of the
    function but the mask: module-level flags (`HAS_FLASH_ATTENTION`), the mask's presence. A test that
    reads a parameter, a local or `self.` (a causal switch) may make the two backends different models."""
    index = ctx.index
    splits = [
        a
        for a in index.ancestors(first)
        if is_a(a, cst.If)
        and index.contains(a, second)
        and index.contains(a.body, first) != index.contains(a.body, second)
    ]
    if not splits:
        return False
    tests = [
        a.test
        for node in (first, second)
        for a in index.ancestors(node)
        if is_a(a, cst.If) and index.contains(function, a)
    ]
    facts = ctx.function_facts(function)
    allowed = {mask.value} if is_a(mask, cst.Name) else set()
    for test in tests:
        for name in ctx.index.descendants(test, cst.Name):
            if name.value in allowed or name.value in ("None", "True", "False", "not"):
                continue
            if name.value == "self" or name.value in facts.definitions:
                return False  # a parameter, a local, an attribute of the module
    return True


# -- the real tokens filled ---------------------------------------------------------------------------
def real_tokens_filled(ctx: FileContext) -> list[tuple[cst.Call, MaskValue]]:
    """`masked_fill` calls whose condition is known to mark the real tokens: a tokenizer's
    `attention_mask` (1 = real token) or `input_ids != pad_id`, not complemented on the way. masked_fill
    writes where its mask is True, so it overwrites the tokens and keeps the padding, whatever it fills
    (embeddings zeroed, scores set to -inf).

    Ex) muse-maskgit 0.3.1: `encoded_text.masked_fill(attn_mask[..., None], 0.)`, `attn_mask` the T5
        tokenizer's"""
    if not ctx.mentions(b"masked_fill"):
        return []
    found = []
    for call in ctx.calls():
        if method_name(call) not in FILL_METHODS or is_library_namespace(ctx, receiver(call)):
            continue
        function = ctx.function_of(call)
        value = evaluator_for(ctx, function).value(argument(call, "mask", 0), ctx.order(call))
        if value is not None and value.marks == "allowed" and not value.triangular and not value.from_lengths:
            found.append((call, value))
    return found


# -- a query mask AND a key mask, filled --------------------------------------------------------------
@dataclass(frozen=True)
class PairProduct:
    """A blocking consumer (`scores.masked_fill(m, -inf)`) whose mask is the product or `&` of two
    per-token masks broadcast against each other (`q_mask[:, None, :, None] * k_mask[:, None, None, :]`)."""

    use: MaskUse
    product: cst.BaseExpression


def filled_pair_products(ctx: FileContext) -> list[PairProduct]:
    """Blocking consumers of the AND of a query-side and a key-side token mask. It blocks the pairs where
    both tokens are marked, which is wrong in either convention: with keep-masks (True = real token) it
    blocks the real pairs and leaves the padding open; with padding masks it blocks only pairs of two
    padded tokens, so real queries still see padded keys (padding masks combine with `|`). The right
    forms complement the product (`~(q & k)`, `== 0`) or use an attending consumer (`torch.where`, SDPA)."""

    def compute() -> list[PairProduct]:
        found = []
        for use in mask_uses(ctx):
            if use.convention != "block" or use.forwarded or use.function is None:
                continue
            product = _filled_product(ctx, use.function, use.mask, ctx.order(use.node), 0)
            if product is None or not (_softmaxed_later(ctx, use) or masks_attention_scores(ctx, use)):
                continue
            left, right = _and_operands(ctx, product)
            built_in = ctx.function_of(product)  # the consumer's function, or a caller that passes the product
            if built_in is None:
                continue
            evaluator = evaluator_for(ctx, built_in)
            at = ctx.order(product)
            if any(
                not _broadcast_token_mask(ctx, built_in, side, at, False, 0)
                or ((value := evaluator.value(side, at)) is not None and value.triangular)
                for side in (left, right)
            ):
                continue
            if ctx.code(left) != ctx.code(right):
                found.append(PairProduct(use, product))
        return found

    return ctx.memo("masks.filled_pair_products", compute)


def _softmaxed_later(ctx: FileContext, use: MaskUse) -> bool:
    """The filled scores, whatever computed them (QK^T, an MLP over pairs), are what a later softmax of
    the function normalises: `sim.masked_fill_(m, -inf)` then `sim.softmax(dim=-1)`."""
    node = use.node
    method = method_name(node) if is_a(node, cst.Call) else None
    filled = receiver(node) if is_a(node, cst.Call) and method in ("masked_fill", "masked_fill_") else None
    if method == "masked_fill":  # `sim = sim.masked_fill(...)`: the name it binds
        statement = ctx.index.parents.get(node)
        targets = statement.targets if is_a(statement, cst.Assign) else ()
        filled = targets[0].target if len(targets) == 1 else None
    if is_a(filled, cst.Attribute) and filled.attr.value == "data":  # `attn.data.masked_fill_(...)`: attn itself
        filled = filled.value
    if not is_a(filled, cst.Name):
        return False
    at = ctx.order(node)
    if any(
        softmax.function is use.function
        and ctx.order(softmax.call) > at
        and is_a(softmax.input, cst.Name)
        and softmax.input.value == filled.value
        for softmax in softmax_calls(ctx)
    ):
        return True
    # a softmax written out: `S = S - S.amax(-1, keepdim=True); A = S.exp()`, normalised by a later sum
    return use.function is not None and any(
        ctx.order(call) > at and _exponentiates(ctx, call, filled.value)
        for call in ctx.index.descendants(use.function.body, cst.Call)
    )


def _exponentiates(ctx: FileContext, call: cst.Call, name: str) -> bool:
    """`name.exp()` or `torch.exp(name)`."""
    if ctx.callee(call) == "torch.exp":
        base = argument(call, "input", 0)
    elif method_name(call) in ("exp", "exp_") and not call.args:
        base = receiver(call)
    else:
        return False
    return is_a(base, cst.Name) and base.value == name


def _and_operands(ctx: FileContext, expr: cst.BaseExpression) -> tuple[cst.BaseExpression, cst.BaseExpression]:
    if is_a(expr, cst.BinaryOperation):
        return expr.left, expr.right
    assert is_a(expr, cst.Call)
    return argument(expr, "input", 0), argument(expr, "other", 1)  # type: ignore[return-value]


def _filled_product(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression | None, at: int, depth: int
) -> cst.BaseExpression | None:
    """The `a * b` / `a & b` / `torch.logical_and(a, b)` a filled mask is, through local names (every
    definition that is not `None` must agree), views, casts and padding; None when it is anything else,
    a complement included."""
    if expr is None or depth > MAX_DEPTH:
        return None
    if is_a(expr, cst.Name):
        # the parameter itself reaches a fill under `if exists(mask):` when the function rebinds it to the
        # product under the same test: the paths that fill the product are the ones that matter; a
        # parameter nothing rebinds is what the function's callers in this file pass
        definitions = ctx.function_facts(function).reaching(expr.value, at)
        products = set()
        for definition in definitions:
            if definition.kind == "param" or (
                definition.kind == "assign" and is_a(definition.value, cst.Name) and definition.value.value == "None"
            ):
                continue
            if definition.kind != "assign":
                return None
            products.add(_filled_product(ctx, function, definition.value, definition.order, depth + 1))
        if not products and definitions and all(d.kind == "param" for d in definitions):
            return _passed_product(ctx, function, expr.value, depth)
        return products.pop() if len(products) == 1 else None
    if is_a(expr, cst.BinaryOperation) and is_a(expr.operator, (cst.Multiply, cst.BitAnd)):
        return expr
    if is_a(expr, cst.Subscript):
        return _filled_product(ctx, function, expr.value, at, depth + 1)
    if is_a(expr, cst.Call):
        qualified = ctx.callee(expr)
        method = method_name(expr)
        if qualified == "torch.logical_and":
            return expr
        if qualified in PAD_FUNCTIONS:
            return _filled_product(ctx, function, argument(expr, "input", 0), at, depth + 1)
        if einops_axes(ctx, expr) is not None:
            return _filled_product(ctx, function, argument(expr, "tensor", 0), at, depth + 1)
        if (method in SAME_MASK_METHODS or method in ("bool", *FIXED_CASTS, *DTYPE_ARGUMENT_CASTS)) and not (
            is_library_namespace(ctx, receiver(expr))
        ):
            return _filled_product(ctx, function, receiver(expr), at, depth + 1)
    return None


def _passed_product(
    ctx: FileContext, function: cst.FunctionDef, parameter: str, depth: int
) -> cst.BaseExpression | None:
    """The product every call of `function` in this file passes for `parameter` (a nested attention
    helper called with `mask=S_mask`); calls that pass nothing or `None` leave it unmasked."""
    names = positional_parameters(function)
    products = set()
    for call, bound in call_sites(ctx, function, forwarded=False):
        position = bound.index(parameter) if parameter in bound else None
        passed = passed_argument(ctx, call, parameter, position)
        caller = ctx.function_of(call)
        if passed is UNKNOWN or caller is None or parameter not in names:
            return None
        if passed is None or _is_none(passed):
            continue
        products.add(_filled_product(ctx, caller, passed, ctx.order(call), depth + 1))
    return products.pop() if len(products) == 1 else None


def _broadcast_token_mask(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression | None, at: int, expanded: bool, depth: int
) -> bool:
    """Is `expr` a mask given new axes on its way here (`m[:, None]`, `m.unsqueeze(-1)`, `rearrange(m,
    'b i -> b 1 i 1')`, `repeat(m, 'b j -> b i j')`), through local names, conditional expressions, views
    and this file's helpers that hand back their first argument (`default(mask, ones)`)?"""
    if expr is None or depth > MAX_DEPTH:
        return False
    if is_a(expr, cst.Name):
        definitions = [
            d
            for d in ctx.function_facts(function).reaching(expr.value, at)
            if not (d.kind == "assign" and is_a(d.value, cst.Name) and d.value.value == "None")
        ]
        if not definitions or any(d.kind not in ("assign", "param") for d in definitions):
            return False
        return all(
            expanded
            if d.kind == "param"
            else _broadcast_token_mask(ctx, function, d.value, d.order, expanded, depth + 1)
            for d in definitions
        )
    if is_a(expr, cst.IfExp):
        return all(_broadcast_token_mask(ctx, function, e, at, expanded, depth + 1) for e in (expr.body, expr.orelse))
    if is_a(expr, cst.Subscript):
        new_axis = any(is_a(e.slice, cst.Index) and _is_none(e.slice.value) for e in expr.slice)
        return _broadcast_token_mask(ctx, function, expr.value, at, expanded or new_axis, depth + 1)
    if is_a(expr, cst.Call):
        method = method_name(expr)
        axes = einops_axes(ctx, expr)
        if axes is not None:
            before, after = axes
            new_axis = any(axis not in before for axis in after)
            return _broadcast_token_mask(
                ctx, function, argument(expr, "tensor", 0), at, expanded or new_axis, depth + 1
            )
        if method in SAME_MASK_METHODS and not is_library_namespace(ctx, receiver(expr)):
            new_axis = method in ("unsqueeze", *BROADCAST_METHODS)
            return _broadcast_token_mask(ctx, function, receiver(expr), at, expanded or new_axis, depth + 1)
        if called_function(ctx, expr) is not None and expr.args and not expr.args[0].keyword:
            return _broadcast_token_mask(ctx, function, expr.args[0].value, at, expanded, depth + 1)
    return expanded and is_a(expr, (cst.Comparison, cst.Call))


# -- softmax paths: is any mask applied between QK^T and the softmax? --------------------------------
SCORE_MASKING_METHODS = MASKING_METHODS | ADDITIVE_METHODS
NEUTRAL_METHODS = CAST_METHODS | COPY_METHODS | RESHAPE_METHODS | CLAMP_METHODS | SCALING_METHODS | REORDER_METHODS


def softmax_is_unmasked(
    ctx: FileContext, softmax_call: cst.Call, softmax_input: cst.BaseExpression, function: cst.FunctionDef | None
) -> bool:
    """True when every way from a QK^T product to this softmax is through known, non-masking
    operations (scaling, casts, reshapes): no masked_fill, where, additive term or opaque call."""
    if function is None:
        return False
    tracer = LogitTracer(ctx, function)
    states = _path_states(ctx, tracer, softmax_input, ctx.order(softmax_call), 0)
    return states == {"product"}


def _path_states(
    ctx: FileContext, tracer: LogitTracer, expr: cst.BaseExpression | None, at: int, depth: int
) -> set[str]:
    if depth > MAX_DEPTH or expr is None or not tracer.sources(expr, at):
        return {"opaque"}
    # a product is reachable; now look for anything but a neutral step on the way
    if is_a(expr, cst.Name) and (facts := tracer.facts) is not None:
        states: set[str] = set()
        for definition in facts.reaching(expr.value, at):
            if definition.kind == "assign" and definition.value is not None:
                states |= _path_states(ctx, tracer, definition.value, definition.order, depth + 1)
            elif (
                definition.kind == "augassign" and is_a(definition.operator, (cst.MultiplyAssign, cst.DivideAssign))
            ) or (definition.kind == "inplace" and definition.method in NEUTRAL_METHODS):
                states |= _path_states(ctx, tracer, expr, definition.order, depth + 1)
            else:
                states.add("masked")
        return states or {"opaque"}
    if is_a(expr, cst.BinaryOperation):
        operator = expr.operator
        if is_a(operator, cst.MatrixMultiply):
            return {"product"}
        if is_a(operator, (cst.Multiply, cst.Divide)):
            sides = [s for s in (expr.left, expr.right) if tracer.sources(s, at)]
            states = set()
            for side in sides:
                states |= _path_states(ctx, tracer, side, at, depth + 1)
            return states
        return {"masked"}  # an additive term: a mask or a bias
    if is_a(expr, cst.Subscript):
        return _path_states(ctx, tracer, expr.value, at, depth + 1)
    if is_a(expr, cst.Call):
        qualified = ctx.callee(expr)
        method = method_name(expr)
        if qualified in ("torch.matmul", "torch.bmm", "torch.einsum", "torch.mm") or method in ("matmul", "bmm"):
            return {"product"}
        if qualified == "torch.baddbmm":
            return {"masked"}  # adds its bias input
        if method in NEUTRAL_METHODS:
            return _path_states(ctx, tracer, receiver(expr), at, depth + 1)
        if qualified in ("torch.mul", "torch.div", "torch.multiply", "torch.divide", "torch.clamp"):
            return _path_states(ctx, tracer, argument(expr, "input", 0), at, depth + 1)
        return {"masked"}
    return {"opaque"}


# -- self-attention: do queries and keys come from the same sequence? --------------------------------
def input_roots(
    ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression | None, at: int, depth: int = 0
) -> set[str]:
    """The parameters of `function` whose data an expression is computed from (`self` aside).
    Shapes and sizes do not count: `q.view(B, T, H, -1)` comes from `q`, not from whatever gave `B`."""
    if expr is None or depth > MAX_DEPTH:
        return set()
    if is_a(expr, cst.Name):
        roots: set[str] = set()
        for definition in ctx.function_facts(function).reaching(expr.value, at):
            if definition.kind == "param":
                roots.add(expr.value)
                continue
            value = definition.value
            if definition.kind in ("unpack", "loop") and is_a(definition.node, (cst.Assign, cst.For)):
                value = definition.node.value if is_a(definition.node, cst.Assign) else definition.node.iter
            roots |= input_roots(ctx, function, value, definition.order, depth + 1)
        return roots - {"self"}
    if is_a(expr, cst.Attribute):
        return (
            set()
            if self_attribute(expr) is not None or expr.attr.value in ("shape", "dtype", "device")
            else input_roots(ctx, function, expr.value, at, depth + 1)
        )
    if is_a(expr, cst.Subscript):
        return input_roots(ctx, function, expr.value, at, depth + 1)
    if is_a(expr, cst.Call):
        func = expr.func
        if is_a(func, cst.Attribute) and self_attribute(func) is None and not is_library_namespace(ctx, func.value):
            return input_roots(ctx, function, func.value, at, depth + 1)  # a tensor method: its receiver
        roots = set()
        for arg in expr.args:
            if arg.keyword is None:
                roots |= input_roots(ctx, function, arg.value, at, depth + 1)
        return roots
    if is_a(expr, cst.BinaryOperation):
        return input_roots(ctx, function, expr.left, at, depth + 1) | input_roots(
            ctx, function, expr.right, at, depth + 1
        )
    if is_a(expr, (cst.Tuple, cst.List)):
        roots = set()
        for element in expr.elements:
            roots |= input_roots(ctx, function, element.value, at, depth + 1)
        return roots
    if is_a(expr, (cst.GeneratorExp, cst.ListComp)):
        return input_roots(ctx, function, expr.for_in.iter, at, depth + 1)
    if is_a(expr, cst.IfExp):
        return input_roots(ctx, function, expr.body, at, depth + 1) | input_roots(
            ctx, function, expr.orelse, at, depth + 1
        )
    return set()


def same_sequence(
    ctx: FileContext, function: cst.FunctionDef | None, query: cst.BaseExpression, key: cst.BaseExpression, at: int
) -> bool:
    """Self-attention: queries and keys are computed from a common input of the function. Keys
    from another input (an encoder's states, a memory, a caller-supplied k) read as cross-attention."""
    if function is None:
        return False
    query_roots = input_roots(ctx, function, query, at)
    key_roots = input_roots(ctx, function, key, at)
    return bool(query_roots & key_roots)


# -- causal context: code that says its attention must not look ahead ---------------------------------
# "decoder" alone also names MAE / DETR / segmentation decoders, whose self-attention is bidirectional:
# it marks its own class causal but does not spread to what that class builds.
CAUSAL_WORDS = {"causal", "lm", "llm", "autoregressive", "gpt", "nanogpt"}
WEAK_CAUSAL_WORDS = {"decoder"}
NON_CAUSAL_WORDS = {"masked", "mlm", "bidirectional", "encoder", "bert", "vit", "vision", "image", "cross"}
WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def name_words(name: str) -> set[str]:
    return {w.lower() for w in WORD.findall(name)}


def declares_causal(name: str, weak: bool = True) -> bool:
    words = name_words(name)
    if words & NON_CAUSAL_WORDS:
        return False
    return bool(words & (CAUSAL_WORDS | WEAK_CAUSAL_WORDS if weak else CAUSAL_WORDS)) or any(
        w.startswith("gpt") for w in words
    )


def _trains_next_token(ctx: FileContext, function: cst.FunctionDef) -> bool:
    """`cross_entropy(logits[:, :-1], targets[:, 1:])`: a loss over shifted targets of one sequence."""
    if not ctx.mentions(b"cross_entropy", b"crossentropyloss"):
        return False
    has_loss = False
    for call in ctx.index.descendants(function.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef)):
        qualified = ctx.callee(call) or ""
        if qualified.endswith("cross_entropy") or (module_type(ctx, call) or "").endswith("CrossEntropyLoss"):
            has_loss = True
            break
    if not has_loss:
        return False
    starts = ends = False
    for part in ctx.index.descendants(function.body, cst.Slice, prune=(cst.FunctionDef, cst.ClassDef)):
        starts |= literal_int(part.lower) == 1 and part.upper is None
        ends |= part.lower is None and literal_int(part.upper) == -1
    return starts and ends


def _decodes_one_token_at_a_time(ctx: FileContext, function: cst.FunctionDef) -> bool:
    """`for _ in range(n): logits = self(idx)[:, -1]; ...; idx = torch.cat((idx, next_id), dim=1)`: a loop
    that runs the module on tokens and appends what it chose to them along the sequence axis. The module
    reads back what it wrote, one token at a time, which is how only a causal model is decoded."""
    if not ctx.mentions(b"cat("):
        return False
    prune = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
    for loop in ctx.index.descendants(function.body, (cst.For, cst.While), prune=prune):
        assigns = list(ctx.index.descendants(loop.body, cst.Assign, prune=prune))
        tokens = {name for assign in assigns if (name := _grown_along_sequence(ctx, assign))}
        for assign in assigns:  # `idx_cond = idx[:, -block_size:]`: the tokens, cropped to the context
            if tokens and _mentions_any(ctx, assign.value, tokens):
                tokens |= {t.target.value for t in assign.targets if is_a(t.target, cst.Name)}
        for call in ctx.index.descendants(loop.body, cst.Call, prune=prune):
            if dotted(call.func) in ("self", "self.forward") and any(
                _mentions_any(ctx, arg.value, tokens) for arg in call.args
            ):
                return True
    return False


def _mentions_any(ctx: FileContext, expr: cst.BaseExpression, names: set[str]) -> bool:
    return (is_a(expr, cst.Name) and expr.value in names) or any(
        node.value in names for node in ctx.index.descendants(expr, cst.Name)
    )


def ignored_causal_flag(ctx: FileContext, cls: cst.ClassDef) -> cst.Param | None:
    """A constructor flag that asks for causal attention (`causal=True` by default, or passed `True` by a
    construction in the file) and that nothing reads: stored in `self.causal` at most, which no method
    reads. The module was meant to be causal, and its attention cannot know."""
    init = ctx.class_facts(cls).methods.get("__init__")
    if init is None:
        return None
    facts = ctx.function_facts(init)
    for param in init.params.params:
        name = param.name.value
        if not declares_causal(name, weak=False) or not _switched_on(ctx, cls, init, param):
            continue
        stored = []
        for use in (use for use in facts.uses.get(name, ()) if ctx.index.contains(init.body, use)):
            assign = ctx.index.parents.get(use)
            targets = assign.targets if is_a(assign, cst.Assign) and assign.value is use else ()
            attrs = [attr for target in targets if (attr := self_attribute(target.target)) is not None]
            if not attrs:
                break  # read for something else than a store
            stored += attrs
        else:
            if not any(ctx.class_facts(cls).is_read(attr) for attr in stored):
                return param
    return None


def unread_causal_flags(ctx: FileContext) -> list[tuple[cst.Param, cst.Arg]]:
    """(parameter, argument) for a constructor that takes a causal flag, never reads it, and builds a
    module with a literal for the same keyword: `def __init__(self, ..., causal=False)` then
    `self.net = Reformer(..., causal=False)`. Whatever the caller asks, the attention is built one way
    (reformer-pytorch 0.7.2's ReformerLM)."""
    if not ctx.mentions(b"causal"):
        return []
    found = []
    for cls in ctx.index.nodes(cst.ClassDef):
        init = ctx.class_facts(cls).methods.get("__init__")
        if init is None or _reads_its_locals(ctx, init):
            continue
        facts = ctx.function_facts(init)
        for param in (*init.params.params, *init.params.kwonly_params):
            name = param.name.value
            if not declares_causal(name, weak=False) or facts.uses.get(name):
                continue
            for call in ctx.index.descendants(init.body, cst.Call, prune=(cst.FunctionDef, cst.ClassDef)):
                passed = argument(call, name)
                if passed is not None and (is_true(passed) or is_false_or_none(passed)):
                    found.append((param, next(arg for arg in call.args if arg.value is passed)))
    return found


def _reads_its_locals(ctx: FileContext, function: cst.FunctionDef) -> bool:
    """`locals()` / `vars()`: every parameter may be read through them."""
    return any(
        is_a(call.func, cst.Name) and call.func.value in ("locals", "vars") and not call.args
        for call in ctx.index.descendants(function.body, cst.Call)
    )


def dead_causal_masking(ctx: FileContext) -> list[tuple[cst.Assign, cst.Name]]:
    """(assignment, target) for `sim = sim.masked_fill(causal_mask, 0.)` where `causal_mask` is built from
    `triu` / `tril` and `sim` is never read again: the attention was computed from the scores before
    the mask, which has no effect (FLASH-pytorch 0.0.5)."""
    found = []
    for call in ctx.calls():
        if method_name(call) not in FILL_METHODS or (function := ctx.function_of(call)) is None:
            continue
        assign = ctx.index.parents.get(call)
        if not is_a(assign, cst.Assign) or len(assign.targets) != 1 or not is_a(assign.targets[0].target, cst.Name):
            continue
        target = assign.targets[0].target
        mask = argument(call, "mask", 0)
        facts = ctx.function_facts(function)
        if (
            mask is None
            or facts.later_uses(target.value, ctx.index.last_order(assign))
            or _read_in_its_loop(ctx, assign, target.value)
        ):
            continue
        if _built_from_triangle(ctx, function, mask, ctx.order(call)):
            found.append((assign, target))
    return found


def _read_in_its_loop(ctx: FileContext, node: cst.CSTNode, name: str) -> bool:
    """`name` is read anywhere in a loop around `node` (a later iteration may read it)."""
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.FunctionDef, cst.Lambda)):
            return False
        if is_a(ancestor, (cst.For, cst.While)) and any(
            n.value == name and n is not node for n in ctx.index.descendants(ancestor, cst.Name)
        ):
            return True
    return False


def _built_from_triangle(
    ctx: FileContext, function: cst.FunctionDef, mask: cst.BaseExpression, at: int, hops: int = 0
) -> bool:
    """The mask is (computed from) a `triu` / `tril`: a causal mask."""
    if hops > 4:
        return False
    for node in [mask, *ctx.index.descendants(mask, (cst.Call, cst.Name))]:
        if is_a(node, cst.Call) and (method_name(node) in TRIANGLE_METHODS or ctx.callee(node) in TRIANGLES):
            return True
        if is_a(node, cst.Name):
            for definition in ctx.function_facts(function).reaching(node.value, at):
                value = definition.computed_from
                if isinstance(value, cst.BaseExpression) and _built_from_triangle(
                    ctx, function, value, definition.order, hops + 1
                ):
                    return True
    return False


def causal_flag_gate(ctx: FileContext, cls: cst.ClassDef) -> tuple[cst.Attribute, cst.Name] | None:
    """(the first read of the class's causal flag or causal-mask buffer, the optional argument that gates
    it) when `forward` reads its `self.causal` (or `self.causal_attention_mask`) only under `if mask is not
    None:` (or `if mask:`), for an argument that defaults to None: called without that argument, the
    attention is not causal (xformers#103)."""
    facts = ctx.class_facts(cls)
    forward = facts.methods.get("forward")
    if forward is None:
        return None
    optional = {
        param.name.value
        for param in forward.params.params
        if param.default is not None and is_a(param.default, cst.Name) and param.default.value == "None"
    }
    reads = [
        node
        for node in ctx.index.descendants(forward.body, cst.Attribute)
        if (attr := self_attribute(node)) is not None
        and declares_causal(attr, weak=False)
        and not is_a(ctx.index.parents.get(node), cst.AssignTarget)
    ]
    gates = {_optional_gate(ctx, read, forward, optional) for read in reads}
    if not reads or len(gates) != 1 or (gate := gates.pop()) is None:
        return None
    return reads[0], gate


def _optional_gate(
    ctx: FileContext, node: cst.CSTNode, function: cst.FunctionDef, optional: set[str]
) -> cst.Name | None:
    """The optional argument whose presence an enclosing `if` of `node` tests (`x is not None`, `x`)."""
    for ancestor in ctx.index.ancestors(node):
        if ancestor is function:
            return None
        if not is_a(ancestor, cst.If) or ctx.index.contains(ancestor.test, node):
            continue
        if ancestor.orelse is not None and ctx.index.contains(ancestor.orelse, node):
            continue
        test = ancestor.test
        if is_a(test, cst.Name) and test.value in optional:
            return test
        if (
            is_a(test, cst.Comparison)
            and is_a(test.left, cst.Name)
            and test.left.value in optional
            and len(test.comparisons) == 1
            and is_a(test.comparisons[0].operator, cst.IsNot)
            and is_a(test.comparisons[0].comparator, cst.Name)
            and test.comparisons[0].comparator.value == "None"
        ):
            return test.left
    return None


def flag_dropping_alternatives(ctx: FileContext, classes: dict[str, cst.ClassDef]) -> list[cst.ClassDef]:
    """Classes of this file that a constructor with a causal flag builds as one side of a choice whose
    other side it hands the flag to (`attn = Full(d) if full else Lsh(d, causal=causal)`, or lambdas
    that build them): the flag is dropped on that side, and the class cannot know it should be causal.

    Ex) `get_full_attn = lambda: SelfAttention(emb, heads)`, `get_lsh_attn = lambda: LSHSelfAttention(emb,
        causal=causal)`, `get_attn = get_full_attn if use_full_attn else get_lsh_attn` (reformer 0.3)
    """
    found = []
    for cls in classes.values():
        init = ctx.class_facts(cls).methods.get("__init__")
        if init is None:
            continue
        flags = {p.name.value for p in init.params.params if declares_causal(p.name.value, weak=False)}
        if not flags:
            continue
        for choice in ctx.index.descendants(init.body, cst.IfExp):
            body = _constructed(ctx, init, choice.body)
            orelse = _constructed(ctx, init, choice.orelse)
            if body is None or orelse is None:
                continue
            for call, other in ((body, orelse), (orelse, body)):
                built = classes.get(call.func.value) if is_a(call.func, cst.Name) else None
                if (
                    built is not None
                    and _mentions_any(ctx, other, flags)
                    and not _mentions_any(ctx, call, flags)
                    and not _takes_causal_flag(ctx, built)
                ):
                    found.append(built)
    return found


def _constructed(ctx: FileContext, function: cst.FunctionDef, expr: cst.BaseExpression) -> cst.Call | None:
    """The call `expr` is, or that the lambda it names makes."""
    if is_a(expr, cst.Name):
        definitions = ctx.function_facts(function).reaching(expr.value, ctx.order(expr))
        if len(definitions) != 1 or not is_a(definitions[0].value, cst.Lambda):
            return None
        expr = definitions[0].value.body
    return expr if is_a(expr, cst.Call) else None


def _takes_causal_flag(ctx: FileContext, cls: cst.ClassDef) -> bool:
    """The class's constructor has a parameter that says causal (or decoder): it can be told, and decides."""
    init = ctx.class_facts(cls).methods.get("__init__")
    return init is not None and any(declares_causal(p.name.value) for p in init.params.params)


def _switched_on(ctx: FileContext, cls: cst.ClassDef, init: cst.FunctionDef, param: cst.Param) -> bool:
    if is_true(param.default):
        return True
    positional = [p.name.value for p in init.params.params][1:]
    name = param.name.value
    position = positional.index(name) if name in positional else None
    return any(is_true(passed_argument(ctx, call, name, position)) for call in constructions(ctx, cls))


def _grown_along_sequence(ctx: FileContext, assign: cst.Assign) -> str | None:
    """`idx = torch.cat((idx, next_id), dim=1)` (or `dim=-1`): the name that grows by one step."""
    value = assign.value
    if len(assign.targets) != 1 or not is_a(assign.targets[0].target, cst.Name) or not is_a(value, cst.Call):
        return None
    name = assign.targets[0].target.value
    tensors, dim = argument(value, "tensors", 0), argument(value, "dim", 1)
    if ctx.callee(value) != "torch.cat" or not is_a(tensors, (cst.Tuple, cst.List)) or literal_int(dim) not in (1, -1):
        return None
    first = tensors.elements[0].value if tensors.elements else None
    return name if is_a(first, cst.Name) and first.value == name else None


def causal_scopes(ctx: FileContext, weak: bool = True) -> set[cst.CSTNode]:
    """Classes and functions in a causal context: named as a decoder / causal / GPT / LM, trained on
    next-token prediction, or built or called by one of those (within the file). With `weak=False`, only
    those that a strong word (causal, LM, GPT) or next-token training puts there: "decoder" alone also
    names the decoders of DETR-style set prediction, which attend over learned queries."""

    def compute() -> tuple[set[cst.CSTNode], set[cst.CSTNode]]:
        classes = {c.name.value: c for c in ctx.index.nodes(cst.ClassDef)}
        functions = {f.name.value: f for f in ctx.index.nodes(cst.FunctionDef) if ctx.class_of(f) is None}
        seeds: list[cst.CSTNode] = [
            scope
            for scope in (*classes.values(), *ctx.index.nodes(cst.FunctionDef))
            if declares_causal(scope.name.value, weak=False)
        ]
        for function in ctx.index.nodes(cst.FunctionDef):
            if _trains_next_token(ctx, function) or _decodes_one_token_at_a_time(ctx, function):
                seeds.append(ctx.class_of(function) or function)
        seeds += [cls for cls in classes.values() if ignored_causal_flag(ctx, cls) is not None]
        seeds += flag_dropping_alternatives(ctx, classes)
        scopes = {
            scope
            for scope in (*classes.values(), *ctx.index.nodes(cst.FunctionDef))
            if declares_causal(scope.name.value)
        }
        spread: set[cst.CSTNode] = set()
        while seeds:
            scope = seeds.pop()
            if scope in spread:
                continue
            spread.add(scope)
            scopes.add(scope)
            for call in ctx.index.descendants(scope, cst.Call):
                if is_a(call.func, cst.Name):
                    target = classes.get(call.func.value) or functions.get(call.func.value)
                    if target is not None and target not in spread and not _non_causal(target):
                        seeds.append(target)
        return scopes, spread

    scopes, strong = ctx.memo("causal_scopes", compute)
    return scopes if weak else strong


def causal_instances(ctx: FileContext) -> list[dict[str, Any]]:
    """The classes imported from other modules of the project that this file builds inside a causal model
    (a GPT in `model.py` that builds the `Attention` of `attention.py`): what the file that defines them
    cannot see by itself."""
    names = imported_names(ctx)
    if not names:
        return []
    strong = causal_scopes(ctx, weak=False)
    found = []
    for scope in strong:
        for call in ctx.index.descendants(scope, cst.Call):
            source = names.get(call.func.value) if is_a(call.func, cst.Name) else None
            if source is not None and source.name and source.name[:1].isupper():
                entry = {"module": source.module, "level": source.level, "class": source.name}
                if entry not in found:
                    found.append(entry)
    return sorted(found, key=lambda entry: (entry["module"], entry["level"], entry["class"]))


def causal_by_importers(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Whether a file next to this one builds the class around `node`, or a class of this file that builds
    it, inside a causal model. Reads the folder's summaries: ask only where a finding hangs on it."""
    scope = getattr(ctx, "project", None)
    cls = ctx.class_of(node)
    if scope is None or cls is None:
        return False
    while (outer := ctx.class_of(cls)) is not None:
        cls = outer
    wanted = _builders(ctx, cls)

    def compute() -> set[str]:
        causal = set()
        for path, summary in scope.neighbours(limit=SMALL_PACKAGE):
            for entry in summary.get("causal_instances", ()):
                if scope.defines(ImportedName(entry["module"], entry["level"], entry["class"]), path):
                    causal.add(entry["class"])
        return causal

    return bool(wanted & ctx.memo("causal_by_importers", compute))


def _builders(ctx: FileContext, cls: cst.ClassDef) -> set[str]:
    """`cls` and the top-level classes of the file that build it, directly or through each other."""
    classes = {c.name.value: c for c in ctx.module.body if is_a(c, cst.ClassDef)}
    found = {cls.name.value}
    changed = True
    while changed:
        changed = False
        for name, other in classes.items():
            if name in found:
                continue
            if any(is_a(c.func, cst.Name) and c.func.value in found for c in ctx.index.descendants(other, cst.Call)):
                found.add(name)
                changed = True
    return found


def _non_causal(scope: cst.CSTNode) -> bool:
    name = scope.name.value if is_a(scope, (cst.ClassDef, cst.FunctionDef)) else ""
    return bool(name_words(name) & NON_CAUSAL_WORDS)


def builds_bidirectional_mask(ctx: FileContext, call: cst.Call) -> bool:
    """A call of transformers' `create_bidirectional_mask`, imported absolutely or relatively (from
    `...masking_utils`), under any local name."""
    if (ctx.callee(call) or "").endswith(f"{HF_MASK_MODULE}.{HF_BIDIRECTIONAL_MASK}"):
        return True
    source = imported_names(ctx).get(call.func.value) if is_a(call.func, cst.Name) else None
    return (
        source is not None
        and source.name == HF_BIDIRECTIONAL_MASK
        and source.module.rsplit(".", 1)[-1] == HF_MASK_MODULE
    )


def decoder_flag_read(ctx: FileContext, cls: cst.ClassDef) -> cst.Attribute | None:
    """Where the class's code first reads `is_decoder` (`self.config.is_decoder`, `config.is_decoder`):
    the model has a decoder mode, in which its self-attention must be causal."""
    return next((node for node in ctx.index.descendants(cls, cst.Attribute) if node.attr.value == DECODER_FLAG), None)


def decided_by_decoder_flag(ctx: FileContext, node: cst.CSTNode) -> bool:
    """Is `node` inside a branch chosen by the decoder flag (`if self.config.is_decoder: ... else: node`)?"""
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.If, cst.IfExp)) and any(
            is_a(node, cst.Attribute) and node.attr.value == DECODER_FLAG
            for node in (ancestor.test, *ctx.index.descendants(ancestor.test, cst.Attribute))
        ):
            return True
        if is_a(ancestor, (cst.FunctionDef, cst.ClassDef)):
            return False
    return False


def in_causal_context(ctx: FileContext, node: cst.CSTNode, weak: bool = True) -> bool:
    scopes = causal_scopes(ctx, weak)
    if not scopes:
        return False
    for ancestor in ctx.index.ancestors(node):
        if is_a(ancestor, (cst.ClassDef, cst.FunctionDef)):
            if ancestor in scopes:
                return True
            if _non_causal(ancestor):
                return False
    return False
