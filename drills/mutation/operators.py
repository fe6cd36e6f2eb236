"""Python mutation operators over the AST, each a minimal edit of the source text.

Operators: comparison flip, and/or swap, `not` removal, constant replacement (numbers +-1,
True/False, strings emptied), `return None`, statement or call removal, swap of the first two
positional arguments, dict-key drop, `if` condition forced True/False. Never mutated: docstrings,
logging and print calls, type hints, `if TYPE_CHECKING:` blocks, `assert` (type narrowing, not
behaviour), f-strings, `__repr__`-like methods, and fault switch checks.

Fault-switch only (made, but kept apart from the release's candidates and counted as such): the
branches a fault switch guards, the module's functions only those branches reach, the functions
passed only as a fault hook (FAULT_HOOKS: a keyword whose callee calls it only under a switch),
and the switch catalogues (FAULT_CATALOGUES). No release runs them: the fault drill owns them.
"""

from __future__ import annotations

import ast
import functools
import types

from drills.mutation.model import Edit, Mutant

COMPARE_FLIPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
PRINT_NAMES = frozenset({"print", "_say"})
REPR_METHODS = frozenset({"__repr__", "__str__", "__rich_repr__", "__format__"})
# Parameters that hand a function to code calling it only under a fault switch (passed by keyword
# or as the parameter's default): create_agent_app(..., fake=f) keeps f as Agent.fake, which base.py
# calls only when fake_done is on (tests/drills/test_mutation.py proves it from base.py's source).
FAULT_HOOKS = frozenset({"fake"})
# Modules that only name the fault switches: read when IMAGEFLOW_FAULTS names one, never in a release.
FAULT_CATALOGUES = frozenset({"imageflow/dashboard/faults.py"})
# Parents in which a replaced expression needs no parentheses to keep its meaning.
_STATEMENT_SLOTS = (ast.stmt, ast.keyword, ast.Call)


def _line_starts(raw: bytes) -> list[int]:
    starts = [0]
    for index, byte in enumerate(raw):
        if byte == 0x0A:
            starts.append(index + 1)
    return starts


def _is_logging_call(node: ast.AST) -> bool:
    """A call to a logger method (log.info, app.logger.warning, logging.error) or to print/_say."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in PRINT_NAMES
    if isinstance(func, ast.Attribute) and func.attr in LOG_METHODS:
        base = func.value
        name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
        return "log" in name.lower()
    return False


def _is_fault_check(node: ast.AST) -> bool:
    """A fault switch check (`self.faults.on("slow")`, `job.fault("leaks_gps")`): the fault drill's code."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    if node.func.attr == "fault":
        return True
    base = node.func.value
    name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
    return node.func.attr in ("on", "active") and name == "faults"


def _needs_fault(test: ast.expr) -> bool:
    """True when a condition can hold only with a fault switch on (so its branch never runs in a release)."""
    if _is_fault_check(test):
        return True
    return (
        isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) and any(map(_needs_fault, test.values))
    )


def guarded_nodes(tree: ast.Module) -> list[tuple[ast.AST, str | None, bool]]:
    """Every node with its enclosing module-level function and whether only a fault switch reaches it."""
    found: list[tuple[ast.AST, str | None, bool]] = []

    def walk(node: ast.AST, enclosing: str | None, in_fault: bool) -> None:
        found.append((node, enclosing, in_fault))
        if isinstance(node, ast.If | ast.IfExp):
            negated = isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
            guarded = _needs_fault(node.test.operand if negated else node.test)  # type: ignore[attr-defined]
            walk(node.test, enclosing, in_fault)
            body: list[ast.AST] = list(node.body) if isinstance(node.body, list) else [node.body]
            orelse: list[ast.AST] = list(node.orelse) if isinstance(node.orelse, list) else [node.orelse]
            for child in body:
                walk(child, enclosing, in_fault or (guarded and not negated))
            for other in orelse:
                walk(other, enclosing, in_fault or (guarded and negated))
            return
        for nested in ast.iter_child_nodes(node):
            walk(nested, enclosing, in_fault)

    for statement in tree.body:
        name = statement.name if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) else None
        walk(statement, name, False)
    return found


def _fault_only_functions(tree: ast.Module) -> set[str]:
    """Module-level functions reached only from fault-switch branches, fault hooks, or such functions."""
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    hooked = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg in FAULT_HOOKS and isinstance(node.value, ast.Name)
    }
    # A hook parameter's default (`fake: FakeOutput = placeholder_output`) is handed over the same way.
    for node in ast.walk(tree):
        if isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            pairs = [*zip(positional[len(positional) - len(node.defaults) :], node.defaults, strict=True)]
            pairs += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d is not None]
            hooked |= {id(default) for arg, default in pairs if arg.arg in FAULT_HOOKS}
    references = [
        (node.id, enclosing, in_fault or id(node) in hooked)
        for node, enclosing, in_fault in guarded_nodes(tree)
        if isinstance(node, ast.Name) and node.id in functions
    ]
    only = {name for name, _, _ in references}
    while True:
        kept = {
            name
            for name in only
            if all(
                fault or (where in only and where != name) for ref, where, fault in references if ref == name
            )
        }
        if kept == only:
            return only
        only = kept


def _is_docstring(statement: ast.stmt, body: list[ast.stmt]) -> bool:
    return (
        bool(body)
        and statement is body[0]
        and isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


class _Collector(ast.NodeVisitor):
    """Walks one module and yields (node, replacement text, operator, description) candidates."""

    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.source = source
        self.raw = source.encode("utf-8")
        self.starts = _line_starts(self.raw)
        self.mutants: list[Mutant] = []
        self.parents: list[ast.AST] = []
        self.module: ast.AST | None = None
        self.fault_only: set[str] = set()
        # Inside a branch or function only a fault switch reaches: its mutants go to fault_switch.
        self.fault_depth = 1 if path in FAULT_CATALOGUES else 0
        self.fault_switch: list[Mutant] = []

    # -- text helpers ----------------------------------------------------------------------
    def span(self, node: ast.expr | ast.stmt) -> tuple[int, int]:
        """Byte offsets [start, end) of a node (ast columns are UTF-8 byte offsets)."""
        start = self.starts[node.lineno - 1] + node.col_offset
        end_line = node.end_lineno if node.end_lineno is not None else node.lineno
        end_col = node.end_col_offset if node.end_col_offset is not None else node.col_offset
        return start, self.starts[end_line - 1] + end_col

    def text(self, node: ast.expr | ast.stmt) -> str:
        """The node's source text."""
        start, end = self.span(node)
        return self.raw[start:end].decode("utf-8")

    def add(self, node: ast.expr | ast.stmt, replacement: str, operator: str, description: str) -> None:
        """Record a candidate replacing the node's text, parenthesised where the parent needs it."""
        parent = self.parents[-1] if self.parents else None
        atom = isinstance(node, ast.Constant | ast.Name | ast.Dict)
        if isinstance(node, ast.expr) and not atom and not isinstance(parent, _STATEMENT_SLOTS):
            replacement = f"({replacement})"
        start, end = self.span(node)
        self.add_edit(node.lineno, Edit(start, end, replacement), operator, description)

    def add_edit(self, line: int, edit: Edit, operator: str, description: str) -> None:
        """Record a candidate from an explicit edit (apart, when only a fault switch reaches it)."""
        mutant = Mutant(self.path, line, operator, description, edit)
        (self.fault_switch if self.fault_depth else self.mutants).append(mutant)

    def visit_under_fault(self, parent: ast.AST, nodes: list[ast.AST]) -> None:
        """Visit nodes that only a fault switch reaches (their mutants are kept apart)."""
        self.parents.append(parent)
        self.fault_depth += 1
        try:
            for node in nodes:
                self.visit(node)
        finally:
            self.fault_depth -= 1
            self.parents.pop()

    # -- traversal -------------------------------------------------------------------------
    def generic_visit(self, node: ast.AST) -> None:
        """Visit children with the parent stack kept, skipping what is never mutated."""
        self.parents.append(node)
        try:
            for field, value in ast.iter_fields(node):
                if field in ("annotation", "returns", "type_comment", "decorator_list"):
                    continue  # type hints and decorators: declarations, not behaviour
                children = value if isinstance(value, list) else [value]
                for child in children:
                    if isinstance(child, ast.AST):
                        self.visit(child)
        finally:
            self.parents.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        """Skip __repr__-like methods; functions that only fault switches reach are fault-switch only."""
        if node.name in REPR_METHODS:
            return
        if node.name in self.fault_only and self.parents[-1:] == [self.module]:
            self.fault_depth += 1
            try:
                self.generic_visit(node)
            finally:
                self.fault_depth -= 1
            return
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        """f-strings are messages: never mutated."""

    def visit_Assert(self, node: ast.Assert) -> None:
        """Asserts narrow types for mypy: never mutated."""

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        """Only the value of an annotated assignment is mutated."""
        if node.value is not None:
            self.parents.append(node)
            self.visit(node.value)
            self.parents.pop()

    def visit_Expr(self, node: ast.Expr) -> None:
        """Docstrings and logging calls are skipped; another call statement may be removed."""
        parent = self.parents[-1] if self.parents else None
        body = getattr(parent, "body", [])
        if _is_docstring(node, body) or _is_logging_call(node.value):
            return
        if isinstance(node.value, ast.Call):
            self.add(node, "pass", "remove-call", f"call removed: {self.text(node.value)[:60]}")
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        """A conditional expression on a fault switch: its switched side is fault-switch only."""
        if _needs_fault(node.test):
            self.parents.append(node)
            self.visit(node.orelse)
            self.parents.pop()
            self.visit_under_fault(node, [node.body])
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        """Swap the first two positional arguments if they differ; never in logging calls or fault checks."""
        if _is_logging_call(node) or _is_fault_check(node):
            return
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        if len(node.args) >= 2 and positional[:2] == node.args[:2]:
            first, second = node.args[0], node.args[1]
            if ast.dump(first) != ast.dump(second):
                start, _ = self.span(first)
                middle_start, second_start = self.span(first)[1], self.span(second)[0]
                _, end = self.span(second)
                middle = self.raw[middle_start:second_start].decode("utf-8")
                replacement = self.text(second) + middle + self.text(first)
                self.add_edit(
                    node.lineno,
                    Edit(start, end, replacement),
                    "swap-args",
                    f"arguments swapped: {self.text(first)[:30]} <-> {self.text(second)[:30]}",
                )
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        """Force the condition True and False; `if TYPE_CHECKING:` and fault-switch branches are skipped."""
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        negated = isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
        if _needs_fault(node.test) or (negated and _needs_fault(node.test.operand)):  # type: ignore[attr-defined]
            # A branch that runs only with a fault switch on is never part of a release.
            self.parents.append(node)
            for statement in node.orelse if not negated else node.body:
                self.visit(statement)
            self.parents.pop()
            self.visit_under_fault(node, list(node.body if not negated else node.orelse))
            return
        self.parents.append(node)
        for forced in ("True", "False"):
            self.add(
                node.test,
                forced,
                f"if-{forced.lower()}",
                f"condition forced {forced}: {self.text(node.test)[:60]}",
            )
        self.parents.pop()
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        """Replace a returned value by None."""
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self.add(
                node, "return None", "return-none", f"returns None instead of {self.text(node.value)[:50]}"
            )
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        """Remove a raise (a refusal that no longer happens)."""
        self.add(node, "pass", "remove-raise", f"raise removed: {self.text(node)[:60]}")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        """Flip each comparison operator (== / !=, < / <=, in / not in, is / is not)."""
        for index, op in enumerate(node.ops):
            flipped = COMPARE_FLIPS.get(type(op))
            if flipped is None:
                continue
            ops = list(node.ops)
            ops[index] = flipped()
            mutated = ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
            self.add(node, ast.unparse(mutated), "compare", f"{type(op).__name__} -> {flipped.__name__}")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        """Swap and / or."""
        swapped: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        mutated = ast.BoolOp(op=swapped, values=node.values)
        self.add(
            node,
            ast.unparse(mutated),
            "boolop",
            f"{type(node.op).__name__.lower()} -> {type(swapped).__name__.lower()}",
        )
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        """Remove `not`."""
        if isinstance(node.op, ast.Not):
            self.add(node, self.text(node.operand), "not-removed", f"not removed: {self.text(node)[:60]}")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        """Drop one key of a dict literal."""
        items = list(zip(node.keys, node.values, strict=True))
        for index, (key, _value) in enumerate(items):
            if key is None:
                continue  # a ** expansion, not a key
            kept = [
                (f"{self.text(k)}: {self.text(v)}" if k is not None else f"**{self.text(v)}")
                for i, (k, v) in enumerate(items)
                if i != index
            ]
            self.add(node, "{" + ", ".join(kept) + "}", "dict-drop", f"key dropped: {self.text(key)[:40]}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        """Numbers +-1, True <-> False, non-empty strings emptied."""
        value = node.value
        if isinstance(value, bool):
            self.add(node, str(not value), "constant", f"{value} -> {not value}")
        elif isinstance(value, int | float):
            for changed in (value + 1, value - 1):
                self.add(node, repr(changed), "constant", f"{value!r} -> {changed!r}")
        elif isinstance(value, str) and value:
            self.add(node, '""', "constant", f"string emptied: {value[:40]!r}")


def python_candidates(path: str, source: str) -> tuple[list[Mutant], list[Mutant]]:
    """(release candidates, fault-switch only mutants) of one Python file (equivalence not yet checked)."""
    tree = ast.parse(source)
    collector = _Collector(path, source)
    collector.module, collector.fault_only = tree, _fault_only_functions(tree)
    collector.visit(tree)
    return collector.mutants, collector.fault_switch


def python_mutants(path: str, source: str) -> list[Mutant]:
    """Every release candidate mutant of one Python file (not yet checked for equivalence)."""
    return python_candidates(path, source)[0]


def _fingerprint(code: types.CodeType) -> tuple[object, ...]:
    """Bytecode and constants, recursively, without line numbers or names of the file."""
    consts = tuple(
        _fingerprint(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
        for c in code.co_consts
    )
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)


def python_equivalence(source: str, mutated: str) -> str | None:
    """Why a mutant is trivially equivalent (same AST or bytecode), "invalid: ..." if it cannot compile."""
    try:
        mutated_tree = ast.parse(mutated)
        mutated_code = compile(mutated_tree, "<mutant>", "exec")
    except SyntaxError as exc:
        return f"invalid: {exc.msg}"
    original_dump, original_fingerprint = _original(source)
    if original_dump == ast.dump(mutated_tree):
        return "equivalent: the AST is unchanged"
    if original_fingerprint == _fingerprint(mutated_code):
        return "equivalent: the bytecode is identical"
    return None


@functools.lru_cache(maxsize=8)
def _original(source: str) -> tuple[str, tuple[object, ...]]:
    """The original file's AST dump and bytecode fingerprint (computed once for all its mutants)."""
    tree = ast.parse(source)
    return ast.dump(tree), _fingerprint(compile(tree, "<original>", "exec"))
