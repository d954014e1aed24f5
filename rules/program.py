"""A journey compiled into a flat program: the node tree becomes a list of instructions
with explicit jumps, so a profile's running instance is only a program counter, pinned
to the version it entered with (`rules.runtime`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rules.journeys.model import (
    AbSplitNode,
    BranchNode,
    ExitNode,
    Journey,
    SendNode,
    TagNode,
    TaskNode,
    TicketNode,
    WaitNode,
)


@dataclass(frozen=True, slots=True)
class Instr:
    """One instruction: the node it runs, and where the program goes next."""

    kind: str  # wait | send | branch | split | tag | task | ticket | exit
    node: Any
    next: int  # pc after this one (-1 = end)
    targets: tuple[int, ...] = ()  # branch: (then, else); split: one per arm (-2 = holdout)


def compile_journey(j: Journey) -> tuple[Instr, ...]:
    """The journey as a flat program; pc 0 is the first node, -1 the end."""
    prog: list[Any] = []

    def emit(nodes: tuple[Any, ...], cont: int) -> int:
        """Emit `nodes` ending in `cont`; returns the first pc (or `cont` when empty)."""
        if not nodes:
            return cont
        start = len(prog)
        prog.extend([None] * len(nodes))
        for i, node in enumerate(nodes):
            pc = start + i
            nxt = start + i + 1 if i + 1 < len(nodes) else cont
            if isinstance(node, BranchNode):
                then = emit(node.then, nxt)
                other = emit(node.otherwise, nxt)
                prog[pc] = Instr("branch", node, nxt, (then, other))
            elif isinstance(node, AbSplitNode):
                targets = tuple(-2 if arm.holdout else emit(arm.then, nxt) for arm in node.arms)
                prog[pc] = Instr("split", node, nxt, targets)
            else:
                kind = {
                    WaitNode: "wait", SendNode: "send", TagNode: "tag", TaskNode: "task",
                    TicketNode: "ticket", ExitNode: "exit",
                }[type(node)]  # fmt: skip
                prog[pc] = Instr(kind, node, -1 if kind == "exit" else nxt)
        return start

    emit(j.nodes, -1)
    return tuple(prog)


# Compiled programs by the identity of the (immutable) definition they were compiled from:
# a lookup per step costs a dict probe, not a canonical form and a hash of the definition.
_PROGRAMS: dict[int, tuple[Journey, tuple[Instr, ...]]] = {}


def program(j: Journey) -> tuple[Instr, ...]:
    """The journey's program, compiled once per definition object (the catalog keeps one
    object per journey version)."""
    got = _PROGRAMS.get(id(j))
    if got is None or got[0] is not j:
        got = _PROGRAMS[id(j)] = (j, compile_journey(j))
    return got[1]
