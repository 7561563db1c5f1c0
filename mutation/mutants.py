"""Mutants of a Python module: one small change each, found with ``ast`` and applied to the text.

Operators (each mutant applies exactly one):

- ``compare``: ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``, ``in`` ↔ ``not in``, ``is`` ↔ ``is not``
- ``boolop``: ``and`` ↔ ``or``; ``not``: ``not x`` → ``x``
- ``binop``: ``+`` ↔ ``-``, ``*`` → ``/``, ``/`` → ``*``, ``//`` → ``/``, ``%`` → ``//``, ``&`` ↔ ``|``,
  ``<<`` ↔ ``>>``, ``**`` → ``*`` (augmented assignments too)
- ``number``: ``n`` → ``n + 1`` (``1.5`` → ``2.5``); ``bool``: ``True`` ↔ ``False``
- ``string``: ``"s"`` → ``"XXsXX"`` (and bytes)
- ``delete``: a statement (a call, an assignment, ``raise``, ``continue``, ``break``) → ``pass``;
  ``return x`` → ``return None``

Not mutated, because a test of them would test words rather than behaviour or because they cannot run:
docstrings, annotations, ``assert`` (type narrowing), logging calls and their arguments, the message
strings given to exceptions, f-strings, and any line marked ``# pragma: no mutate``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
         ast.Mod: ast.FloorDiv, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift,
         ast.RShift: ast.LShift, ast.Pow: ast.Mult}
LOG_NAMES = {"log", "logger", "logging"}
NO_MUTATE = "pragma: no mutate"


@dataclass(frozen=True)
class Mutant:
    """One change: ``start``/``end`` are offsets into the source, ``text`` replaces that span."""

    path: str
    line: int
    operator: str
    start: int
    end: int
    original: str
    text: str
    scope: str  # the enclosing function or class, for reading the report

    @property
    def key(self) -> str:
        """Stable across edits elsewhere in the file: where (by scope) and what."""
        original = " ".join(self.original.split())
        text = " ".join(self.text.split())
        return f"{self.path}::{self.scope}::{self.operator}::{original} -> {text}"

    def apply(self, source: str) -> str:
        return source[: self.start] + self.text + source[self.end :]


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str, source: str, only: set[str] | None) -> None:
        self.path = path
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        self.only = only
        self.scope: list[str] = []
        self.mutants: list[Mutant] = []

    # -- positions ----------------------------------------------------------------------------
    def _offset(self, line: int, col: int) -> int:
        # ast columns are UTF-8 byte offsets
        text = self.lines[line - 1].encode()[:col].decode(errors="replace")
        return self.starts[line - 1] + len(text)

    def _span(self, node: ast.AST) -> tuple[int, int]:
        return (self._offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self._offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def _skipped(self, node: ast.AST) -> bool:
        line = self.lines[node.lineno - 1]  # type: ignore[attr-defined]
        return NO_MUTATE in line

    def _in_scope(self) -> bool:
        if self.only is None:
            return True
        return any(name in self.only for name in self.scope)

    def _add(self, node: ast.AST, operator: str, text: str) -> None:
        if not self._in_scope() or self._skipped(node):
            return
        start, end = self._span(node)
        original = self.source[start:end]
        if original == text:
            return
        self.mutants.append(Mutant(self.path, node.lineno, operator, start, end, original, text,  # type: ignore[attr-defined]
                                   ".".join(self.scope) or "<module>"))

    def _replaced(self, node: ast.AST, change: ast.AST, operator: str) -> None:
        self._add(node, operator, ast.unparse(change))

    # -- what is not mutated --------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self._body(node.body)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self._body(node.body)
        self.scope.pop()

    def visit_Module(self, node: ast.Module) -> None:
        self._body(node.body)

    def _body(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue  # a docstring, or an attribute's docstring after its assignment
            self.visit(stmt)

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._delete(node)

    def visit_arg(self, node: ast.arg) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_Import(self, node: ast.Import) -> None:
        return

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc
        if isinstance(exc, ast.Call):  # the class and its arguments, but not the message's words
            for arg in exc.args:
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    self.visit(arg)
        elif exc is not None:
            self.visit(exc)
        self._delete(node)

    @staticmethod
    def _is_log(call: ast.expr) -> bool:
        if not isinstance(call, ast.Call):
            return False
        func = call.func
        while isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id in LOG_NAMES:
                return True
            func = func.value
        return False

    # -- statements -----------------------------------------------------------------------------
    def _delete(self, node: ast.stmt) -> None:
        self._add(node, "delete", "pass")

    def visit_Expr(self, node: ast.Expr) -> None:
        if self._is_log(node.value) or (isinstance(node.value, ast.Constant) and node.value.value is ...):
            return  # a log line, or the "..." body of a protocol
        self.visit(node.value)
        self._delete(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        if self.scope:  # module-level constants are covered by their values
            self._delete(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        swap = BINOP.get(type(node.op))
        if swap is not None:
            self._replaced(node, ast.AugAssign(target=node.target, op=swap(), value=node.value), "binop")
        self._delete(node)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is None:
            return
        self.visit(node.value)
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self._add(node, "delete", "return None")

    def visit_Continue(self, node: ast.Continue) -> None:
        self._delete(node)

    def visit_Break(self, node: ast.Break) -> None:
        self._delete(node)

    # -- expressions ----------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> None:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = COMPARE.get(type(op))
            if swap is not None:
                ops = list(node.ops)
                ops[i] = swap()
                self._replaced(node, ast.Compare(left=node.left, ops=ops, comparators=node.comparators),
                               "compare")

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.generic_visit(node)
        swap: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._replaced(node, ast.BoolOp(op=swap, values=node.values), "boolop")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            self._replaced(node, node.operand, "not")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self.generic_visit(node)
        swap = BINOP.get(type(node.op))
        if swap is not None:
            self._replaced(node, ast.BinOp(left=node.left, op=swap(), right=node.right), "binop")

    def visit_Call(self, node: ast.Call) -> None:
        if self._is_log(node):
            return
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self._replaced(node, ast.Constant(not value), "bool")
        elif isinstance(value, int | float) and not isinstance(value, complex):
            self._replaced(node, ast.Constant(value + 1), "number")
        elif isinstance(value, str) and value:
            self._replaced(node, ast.Constant(f"XX{value}XX"), "string")
        elif isinstance(value, bytes) and value:
            self._replaced(node, ast.Constant(b"XX" + value + b"XX"), "string")


def find(path: Path, *, root: Path, only: set[str] | None = None) -> list[Mutant]:
    """Every mutant of the module at ``path`` (optionally only inside the named functions)."""
    source = path.read_text()
    finder = _Finder(str(path.relative_to(root)), source, only)
    finder.visit(ast.parse(source))
    mutants = []
    for mutant in finder.mutants:
        try:
            ast.parse(mutant.apply(source))
        except SyntaxError:
            continue
        mutants.append(mutant)
    return sorted(mutants, key=lambda m: (m.start, m.end, m.operator, m.text))


def iter_keys(mutants: list[Mutant]) -> Iterator[tuple[str, Mutant]]:
    """Keys unique within a module: the same change in the same scope gets a running number."""
    seen: dict[str, int] = {}
    for mutant in mutants:
        n = seen.get(mutant.key, 0)
        seen[mutant.key] = n + 1
        yield (mutant.key if n == 0 else f"{mutant.key} #{n + 1}"), mutant
