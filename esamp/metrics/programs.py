"""Distinct programs: a normal form of a code answer, so that "distinct correct answers" means something on
HumanEval, where every sample is a different string.

`canonical_program(response, entry_point)` parses the answer's program (the code block the grader picks, or
a raw continuation) and returns `ast.unparse` of its function and class definitions with docstrings and
type annotations removed and bound names (arguments, locals, helper functions, loop and comprehension
variables) renamed to v0, v1, ... in order of first appearance. Two answers get the same form when they
differ only in comments, docstrings, annotations, formatting, imports, example usage / `__main__` blocks, or
a consistent renaming of their own names; different algorithms, different library calls or a reordered
statement stay distinct. Names the program reads but never binds (builtins, imported modules, attributes)
keep their spelling.

It is a syntactic measure: `sorted(x)[-1]` and `max(x)` stay two programs. Answers that do not parse give
None (counted as "no answer"). Model output is untrusted text: the parse is bounded (size cap, recursion and
memory errors caught) and never executes anything.
"""
from __future__ import annotations

import ast
from typing import Iterator

__all__ = ["canonical_program"]

MAX_CHARS = 50_000  # longer answers are not parsed (512 new tokens are ~2,000 characters)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (ast.Module, *_DEFS)


def _program_source(response: str, entry_point: str) -> Iterator[str]:
    """Candidate sources, best first: the code block the HumanEval grader would pick, the whole response,
    and the response as the body of a function (a raw continuation of the prompt)."""
    from esamp.grading.code import pick_block

    block = pick_block(response, entry_point)
    if block is not None:
        yield block
    else:
        yield response
        yield f"def {entry_point}():\n{response}"


def _strip(tree: ast.Module) -> ast.Module:
    """Keep top-level definitions only (drops imports, example calls, `if __name__` blocks), and drop
    docstrings and nested imports: they do not change what the program computes."""
    tree.body = [n for n in tree.body if isinstance(n, _DEFS)]
    for node in ast.walk(tree):
        if isinstance(getattr(node, "body", None), list):
            body = [n for n in node.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
            if isinstance(node, _SCOPES) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body = body[1:]
            node.body = body or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    return tree


class _Rename(ast.NodeTransformer):
    """Renames every name the program binds to v0, v1, ... (first appearance in source order); the entry
    point keeps its name so that the function the tests call is recognisable."""

    def __init__(self, bound: set[str], keep: str):
        self.bound, self.keep, self.names = bound - {keep}, keep, {}

    def _new(self, name: str) -> str:
        if name not in self.bound:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg, node.annotation = self._new(node.arg), None  # annotations do not change the result
        return node

    def _visit_def(self, node):
        node.name = self._new(node.name)
        if not isinstance(node, ast.ClassDef):
            node.returns = None
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_def

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        node.name = self._new(node.name) if node.name else None
        return self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> ast.keyword:  # f(x=1) calling a helper with a renamed x
        node.arg = self._new(node.arg) if node.arg else None
        return self.generic_visit(node)

    def _visit_scope_decl(self, node):  # global x / nonlocal x
        node.names = [self._new(n) for n in node.names]
        return node

    visit_Global = visit_Nonlocal = _visit_scope_decl


def _bound_names(tree: ast.Module) -> set[str]:
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, _DEFS):
            bound.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def canonical_program(response: str, entry_point: str) -> str | None:
    """The normal form of the answer's program, or None when it has no parsable definition."""
    if not response or len(response) > MAX_CHARS:
        return None
    for src in _program_source(response, entry_point):
        try:
            tree = _strip(ast.parse(src))
            if not tree.body:
                continue
            tree = _Rename(_bound_names(tree), entry_point).visit(tree)
            return ast.unparse(ast.fix_missing_locations(tree))
        except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError):
            continue
    return None
