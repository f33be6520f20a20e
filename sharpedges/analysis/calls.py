"""Questions about calls: which function is called, which argument sits where."""

from __future__ import annotations

import libcst as cst

from sharpedges.analysis.walk import is_a


def method_name(call: cst.Call) -> str | None:
    """`softmax` for `x.softmax(...)` (any receiver), else None."""
    func = call.func
    return func.attr.value if is_a(func, cst.Attribute) else None


def receiver(call: cst.Call) -> cst.BaseExpression | None:
    func = call.func
    return func.value if is_a(func, cst.Attribute) else None


def argument(call: cst.Call, keyword: str | None = None, position: int | None = None) -> cst.BaseExpression | None:
    """The argument passed as `keyword=` or at positional index `position` (no *args/**kwargs)."""
    if keyword is not None:
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value == keyword:
                return arg.value
    if position is not None:
        positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
        if position < len(positional):
            return positional[position].value
    return None


def has_star_args(call: cst.Call) -> bool:
    return any(arg.star for arg in call.args)


def keyword_names(call: cst.Call) -> set[str]:
    return {arg.keyword.value for arg in call.args if arg.keyword is not None}


def literal_number(expr: cst.BaseExpression | None) -> float | None:
    """The value of a numeric literal, including a unary minus; None otherwise."""
    if expr is None:
        return None
    sign = 1.0
    while is_a(expr, cst.UnaryOperation) and is_a(expr.operator, (cst.Minus, cst.Plus)):
        if is_a(expr.operator, cst.Minus):
            sign = -sign
        expr = expr.expression
    if is_a(expr, cst.Integer):
        return sign * float(int(expr.value.replace("_", ""), 0))
    if is_a(expr, cst.Float):
        return sign * float(expr.value.replace("_", ""))
    return None


def literal_int(expr: cst.BaseExpression | None) -> int | None:
    if expr is None:
        return None
    sign = 1
    if is_a(expr, cst.UnaryOperation) and is_a(expr.operator, cst.Minus):
        sign, expr = -1, expr.expression
    if is_a(expr, cst.Integer):
        return sign * int(expr.value.replace("_", ""), 0)
    return None


def literal_string(expr: cst.BaseExpression | None) -> str | None:
    """A string literal's value; an f-string without placeholders (`f'b h i d, b h j d -> b h i j'`) is one."""
    if is_a(expr, (cst.SimpleString, cst.ConcatenatedString)):
        value = expr.evaluated_value
        return value if is_a(value, str) else None
    if is_a(expr, cst.FormattedString):
        texts = [part.value for part in expr.parts if is_a(part, cst.FormattedStringText)]
        if len(texts) != len(expr.parts):
            return None
        text = "".join(texts)
        if "\\" in text and "r" not in expr.start.lower():
            return None  # escapes are the source's spelling; their value is not read here
        return text.replace("{{", "{").replace("}}", "}")
    return None


def is_true(expr: object) -> bool:
    """The literal `True` (also asked of a `values.passed_argument` answer: UNKNOWN is not True)."""
    return is_a(expr, cst.Name) and expr.value == "True"


def is_false(expr: object) -> bool:
    """The literal `False`."""
    return is_a(expr, cst.Name) and expr.value == "False"


def is_false_or_none(expr: object) -> bool:
    return is_a(expr, cst.Name) and expr.value in ("False", "None")
