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


def compile_expr(expr: str) -> Callable[[dict[str, float]], float | None]:
    tree = ast.parse(expr, mode="eval")

    def ev(node: ast.AST, env: dict[str, float]) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body, env)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return env[node.id]  # KeyError: absent operand
        if isinstance(node, ast.UnaryOp):
            x = ev(node.operand, env)
            return -x if isinstance(node.op, ast.USub) else x
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left, env), ev(node.right, env)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            return a / b  # ZeroDivisionError: absent
        raise ValueError(f"unsupported expression node {type(node).__name__}")

    def run(env: dict[str, float]) -> float | None:
        try:
            return ev(tree, env)
        except (KeyError, ZeroDivisionError):
            return None

    return run
