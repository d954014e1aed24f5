"""``expr`` features: arithmetic over other features (``+ - * /``, numbers, names), compiled
once; an absent operand or a division by zero makes the result absent.

>>> f = compile_expr("revenue_30d / orders_30d")
>>> f({"revenue_30d": 90.0, "orders_30d": 3.0}), f({"revenue_30d": 90.0})
(30.0, None)
>>> f({"revenue_30d": 1.0, "orders_30d": 0.0})   # division by zero: absent
"""

from __future__ import annotations

import ast
from collections.abc import Callable


def expr_refs(expr: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}


def _lower(node: ast.AST) -> ast.expr:
    """`node` as an expression over ``env``: a name reads ``env[name]``, a number is a float."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return ast.Constant(float(node.value))
    if isinstance(node, ast.Name):
        return ast.Subscript(ast.Name("env", ast.Load()), ast.Constant(node.id), ast.Load())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _lower(node.operand)
        return ast.UnaryOp(ast.USub(), inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        return ast.BinOp(_lower(node.left), node.op, _lower(node.right))
    raise ValueError(f"unsupported expression node {type(node).__name__}")


def compile_expr(expr: str) -> Callable[[dict[str, float]], float | None]:
    """`expr` as a function of the feature values, compiled to Python bytecode (the tree
    holds only float constants, ``env[...]`` reads and ``+ - * /``)."""
    body = _lower(ast.parse(expr, mode="eval").body)
    args = ast.arguments(posonlyargs=[], args=[ast.arg("env")], kwonlyargs=[], kw_defaults=[], defaults=[])
    tree = ast.fix_missing_locations(ast.Expression(ast.Lambda(args, body)))
    code = compile(tree, f"<expr {expr}>", "eval")
    fn: Callable[[dict[str, float]], float] = eval(code, {"__builtins__": {}})
    names = tuple(sorted(expr_refs(expr)))

    def run(env: dict[str, float]) -> float | None:
        # An absent operand is common (no cart in 24 h): looked up, not raised and caught.
        for name in names:
            if name not in env:
                return None
        try:
            return fn(env)
        except ZeroDivisionError:
            return None

    return run
