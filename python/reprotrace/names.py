"""The names a cell defines, deletes and uses: a static reading of its source.

:func:`of_cell` transforms the cell's IPython syntax into Python
(``shell.transform_cell``), parses it with :mod:`ast` and walks its top-level
statements in order. Nothing is run or imported. It returns three lists of
names of the notebook's global namespace, each in first-seen order without
duplicates, or None when the source is not Python (a ``SyntaxError``):

``defines``
    names the cell may bind at its top level: assignment targets (tuple and
    starred unpacking included), augmented assignments, annotated assignments
    with a value, ``:=`` (also inside comprehensions), ``for`` targets,
    ``with ... as``, ``except ... as``, ``match`` captures, ``import a.b``
    (binds ``a``), ``import a.b as c`` and ``from m import c`` (bind ``c``),
    ``def``/``async def``/``class`` and ``type`` aliases; and a name a
    function of the cell declares ``global`` and binds. A binding in a branch
    or a loop counts: the cell may define it.
``deletes``
    ``del name`` at the top level (or on a name a function of the cell
    declares ``global``).
``uses``
    names the cell reads that it has not bound by then, so values it takes
    from earlier cells: ``x = x + 1`` uses ``x``; ``y = 1; print(y)`` does
    not use ``y``. A top-level read counts unless the name is *surely* bound
    before it, in statement order: a binding in only one branch of an ``if``
    or ``match``, in a loop body (for what follows the loop), or in a ``try``
    body or ``except`` handler but not in all of them is not sure (``with``
    bodies are, as if no context manager swallowed an exception). Function and lambda bodies run later, so
    a global they read is a use unless the cell binds that name at its top
    level anywhere (a function's parameters and locals are not globals;
    closures resolve to their enclosing function). Comprehensions and class
    bodies run at once, like top-level code. Annotations, decorators, default
    values and base classes are read where they are evaluated.
    Python's builtins (``dir(builtins)``) are no uses unless the cell itself
    defines that name, nor are IPython's own names (``get_ipython``, ``In``,
    ``Out``, ``_``, ``__``, ``___``, ``_i``, ``_ii``, ``_iii``, ``_i<N>``,
    ``_<N>``, ``_ih``, ``_oh``, ``_dh``, ``exit``, ``quit``, ``display``,
    ``__builtins__``).

The code-running magics ``%time``/``%%time``, ``%timeit``/``%%timeit`` (uses
only: what it binds does not outlive it) and ``%%capture [name]`` (which binds
``name``) are read through: their code counts as the cell's.

Limits (a static reading cannot see what only running the code shows):

- dynamic code: ``exec``, ``eval``, ``globals()[...] = ...``, ``setattr`` on
  the ``__main__`` module, ``%run``, ``%store -r`` and other magics, shell
  escapes and their ``$x``/``{x}`` expansions: names reached that way are
  missed;
- ``from m import *`` binds names it cannot list (none are reported);
- names used through strings (``df.query("a > @x")``, ``pd.eval``,
  templates, ``locals()``) are missed;
- mutations through methods or attributes are uses, not definitions:
  ``df.append(...)``, ``a.b = 1``, ``a[0] = 1`` and ``del a[0]`` use ``a``
  and define nothing, although they change it;
- a builtin a previous cell redefined (``list = ...``) is not reported when
  this cell reads it;
- flow inside expressions is not followed (``a or (b := 1)`` surely binds
  ``b``), nor are ``break``/``return``/``raise`` or a function called before
  the global it reads is bound by the cell;
- a cell nested deeper than the interpreter's recursion limit has no names
  (None).
"""
import ast
import builtins
import re
from typing import Callable, Iterable, List, NamedTuple, Optional, Set, Tuple

__all__ = ["Names", "of_cell", "of_source", "IPYTHON_NAMES", "is_ipython_name"]

# PyCF_ALLOW_TOP_LEVEL_AWAIT (3.8+): IPython runs cells with top-level await.
_PARSE_FLAGS = ast.PyCF_ONLY_AST | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)

BUILTINS = frozenset(dir(builtins))
IPYTHON_NAMES = frozenset(
    ["get_ipython", "In", "Out", "_", "__", "___", "_ih", "_oh", "_dh", "exit", "quit", "display", "__builtins__"]
)
# _i, _ii, _iii (the last inputs), _i<N> (input N), _<N> (output N).
_IPYTHON_NAME = re.compile(r"_i{1,3}|_i[0-9]+|_[0-9]+")

# Magics whose argument is Python code run in the user's namespace:
# name -> whether what the code binds outlives the magic.
_TIMEIT_OPTIONS = re.compile(r"\s*(?:-[nrp]\s*\S+\s+|-[tcqo]\s+)*")
_CODE_MAGICS = {"time": True, "timeit": False, "capture": True}

_Match = getattr(ast, "Match", None)  # 3.10+
_TryStar = getattr(ast, "TryStar", None)  # 3.11+
_TypeAlias = getattr(ast, "TypeAlias", None)  # 3.12+
_TRY = tuple(t for t in (ast.Try, _TryStar) if t is not None)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


class Names(NamedTuple):
    """What a cell's source binds, deletes and reads at the top level."""

    defines: List[str]
    deletes: List[str]
    uses: List[str]


def is_ipython_name(name: str) -> bool:
    """Whether IPython itself puts ``name`` in the user's namespace."""
    return name in IPYTHON_NAMES or _IPYTHON_NAME.fullmatch(name) is not None


def of_cell(raw_cell: str, transform: Optional[Callable[[str], str]] = None) -> Optional[Names]:
    """The names of a cell, after ``transform`` (``shell.transform_cell``)
    turned its IPython syntax into Python; None if it is not Python."""
    try:
        source = raw_cell if transform is None else transform(raw_cell)
        tree = _parse(source)
    except (SyntaxError, ValueError, RecursionError):
        # ValueError: a NUL in the source, as Python < 3.12 says it.
        return None
    try:
        return _analyze(tree, transform)
    except RecursionError:  # deeper than this walk can go
        return None


def of_source(source: str) -> Optional[Names]:
    """The names of Python source (no IPython syntax); None if it is not Python."""
    return of_cell(source)


def _parse(source: str) -> ast.Module:
    return compile(source, "<cell>", "exec", _PARSE_FLAGS, dont_inherit=True)


class _Ordered:
    """An insertion-ordered set of names."""

    def __init__(self) -> None:
        self.items: List[str] = []
        self._seen: Set[str] = set()

    def add(self, name: str) -> None:
        if name not in self._seen:
            self._seen.add(name)
            self.items.append(name)

    def __contains__(self, name: object) -> bool:
        return name in self._seen

    def __iter__(self):
        return iter(self.items)


def _analyze(tree: ast.Module, transform: Optional[Callable[[str], str]]) -> Names:
    module = _Module(transform)
    module.body(tree.body)
    defined = set(module.defines)
    uses = _Ordered()
    for name, deferred in module.reads:
        if deferred and name in module.bound_at_top:
            continue
        if is_ipython_name(name) or (name in BUILTINS and name not in defined):
            continue
        uses.add(name)
    return Names(list(module.defines), list(module.deletes), list(uses))


# ---------------------------------------------------------------------------
# Nested scopes (functions, lambdas, classes, comprehensions): which names
# they read from, and bind in, enclosing scopes. Python decides a name's scope
# for a whole function body, so this reading ignores statement order.


class _Scope:
    """What a nested scope reads and binds outside itself."""

    def __init__(self) -> None:
        self.free = _Ordered()  # read, not bound here: an enclosing scope's or a global
        self.global_reads = _Ordered()  # read, declared global (here or in a nested scope)
        self.global_binds = _Ordered()  # bound, declared global
        self.global_deletes = _Ordered()
        self.enclosing_binds = _Ordered()  # := in a comprehension: binds in the enclosing scope


class _Collector:
    """Walks one scope's code (not the nested scopes'), noting its names."""

    def __init__(self) -> None:
        self.loads = _Ordered()  # own reads
        # Own reads (False) and nested scopes' free names (True), in order.
        self.reads: List[Tuple[str, bool]] = []
        self.stores = _Ordered()
        self.deletes = _Ordered()
        self.globals: Set[str] = set()
        self.nonlocals: Set[str] = set()
        self.global_reads = _Ordered()
        self.global_binds = _Ordered()
        self.global_deletes = _Ordered()

    # Statements ----------------------------------------------------------

    def stmts(self, body: Iterable[ast.stmt]) -> None:
        for node in body:
            self.stmt(node)

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, _FUNCTIONS):
            self._function_outside(node)
            self.stores.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for expr in node.decorator_list:
                self.expr(expr)
            type_params = _type_param_names(node)
            for expr in node.bases + [k.value for k in node.keywords]:
                self.nested(_expr_scope(expr, type_params)) if type_params else self.expr(expr)
            self.nested(_class_scope(node))
            self.stores.add(node.name)
        elif isinstance(node, ast.Global):
            self.globals.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            self.nonlocals.update(node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in _imported(node):
                self.stores.add(name)
        elif _TypeAlias is not None and isinstance(node, _TypeAlias):
            self.stores.add(node.name.id)
            self.nested(_type_alias_scope(node))
        else:
            self.generic(node)

    def _function_outside(self, node) -> None:
        """What a def evaluates where it stands, then its body as a scope."""
        for expr in node.decorator_list:
            self.expr(expr)
        _arguments_outside(node.args, self.expr)
        type_params = _type_param_names(node)
        for expr in _annotations(node):
            self.nested(_expr_scope(expr, type_params)) if type_params else self.expr(expr)
        self.nested(_function_scope(node))

    # Expressions and everything else -------------------------------------

    def expr(self, node: ast.AST) -> None:
        self.generic(node)

    def generic(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.load(node.id)
            elif isinstance(node.ctx, ast.Store):
                self.stores.add(node.id)
            else:
                self.deletes.add(node.id)  # `del x` makes x local too
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            self.load(node.target.id)
            self.expr(node.value)
            self.stores.add(node.target.id)
        elif isinstance(node, ast.ExceptHandler):
            if node.type is not None:
                self.expr(node.type)
            if node.name:
                self.stores.add(node.name)
            self.stmts(node.body)
        elif isinstance(node, ast.Lambda):
            _arguments_outside(node.args, self.expr)
            self.nested(_lambda_scope(node))
        elif isinstance(node, _COMPREHENSIONS):
            self.expr(node.generators[0].iter)
            self.nested(_comprehension_scope(node))
        elif isinstance(node, _FUNCTIONS + (ast.ClassDef, ast.Global, ast.Nonlocal, ast.Import, ast.ImportFrom)):
            self.stmt(node)
        elif _TypeAlias is not None and isinstance(node, _TypeAlias):
            self.stmt(node)
        elif _Match is not None and isinstance(node, ast.MatchAs):
            if node.pattern is not None:
                self.generic(node.pattern)
            if node.name:
                self.stores.add(node.name)
        elif _Match is not None and isinstance(node, ast.MatchStar):
            if node.name:
                self.stores.add(node.name)
        elif _Match is not None and isinstance(node, ast.MatchMapping):
            for child in node.keys + node.patterns:
                self.generic(child)
            if node.rest:
                self.stores.add(node.rest)
        else:
            for child in ast.iter_child_nodes(node):
                self.generic(child)

    def load(self, name: str) -> None:
        self.loads.add(name)
        self.reads.append((name, False))

    def nested(self, scope: _Scope) -> None:
        for name in scope.free:
            self.reads.append((name, True))
        for name in scope.enclosing_binds:
            self.stores.add(name)
        for name in scope.global_reads:
            self.global_reads.add(name)
        for name in scope.global_binds:
            self.global_binds.add(name)
        for name in scope.global_deletes:
            self.global_deletes.add(name)

    # The result ------------------------------------------------------------

    def scope(self, local: Set[str], class_body: bool = False) -> _Scope:
        """This scope's outside view, ``local`` being the names it binds.

        A class body's names are not visible from the functions in it: its
        nested scopes' free names pass it by.
        """
        scope = _Scope()
        for name, nested in self.reads:
            if name in self.globals:
                scope.global_reads.add(name)
            elif name not in local or (nested and class_body):
                scope.free.add(name)
        for names, into in ((self.global_reads, scope.global_reads), (self.global_binds, scope.global_binds)):
            for name in names:
                into.add(name)
        for name in self.global_deletes:
            scope.global_deletes.add(name)
        for name in self.stores:
            if name in self.globals:
                scope.global_binds.add(name)
        for name in self.deletes:
            if name in self.globals:
                scope.global_deletes.add(name)
        return scope

    def locals(self, params: Iterable[str] = ()) -> Set[str]:
        return (set(params) | set(self.stores) | set(self.deletes)) - self.globals - self.nonlocals


def _function_scope(node) -> _Scope:
    collector = _Collector()
    collector.stmts(node.body)
    params = _parameters(node.args) | _type_param_names(node)
    return collector.scope(collector.locals(params))


def _lambda_scope(node: ast.Lambda) -> _Scope:
    collector = _Collector()
    collector.expr(node.body)
    return collector.scope(collector.locals(_parameters(node.args)))


def _class_scope(node: ast.ClassDef) -> _Scope:
    collector = _Collector()
    collector.stmts(node.body)
    return collector.scope(collector.locals(_type_param_names(node)), class_body=True)


def _type_alias_scope(node) -> _Scope:
    return _expr_scope(node.value, _type_param_names(node))


def _expr_scope(expr: ast.AST, local: Set[str]) -> _Scope:
    """An expression evaluated in a scope of its own where ``local`` are bound
    (annotations of a generic function, a ``type`` alias' value)."""
    collector = _Collector()
    collector.expr(expr)
    return collector.scope(set(local))


def _comprehension_scope(node) -> _Scope:
    """A comprehension but its first iterable (evaluated outside). Its
    targets are its own; what ``:=`` binds is the enclosing scope's."""
    collector = _Collector()
    for i, generator in enumerate(node.generators):
        if i:
            collector.expr(generator.iter)
        collector.generic(generator.target)  # a[i] as a target reads a and i
        for condition in generator.ifs:
            collector.expr(condition)
    for expr in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
        collector.expr(expr)
    targets: Set[str] = set()
    for generator in node.generators:
        targets |= _bound_by_target(generator.target)
    walrus = [name for name in _walrus_targets(node) if name not in targets]
    scope = collector.scope(targets | set(walrus))
    for name in walrus:
        scope.enclosing_binds.add(name)
    return scope


def _walrus_targets(node: ast.AST) -> List[str]:
    """Names ``:=`` binds in a comprehension, nested comprehensions included."""
    found: List[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.NamedExpr) and isinstance(current.target, ast.Name):
            found.append(current.target.id)
        if isinstance(current, (ast.Lambda,) + _FUNCTIONS + (ast.ClassDef,)):
            continue
        stack.extend(ast.iter_child_nodes(current))
    return found


def _bound_by_target(target: ast.AST) -> Set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        names: Set[str] = set()
        for elt in target.elts:
            names |= _bound_by_target(elt)
        return names
    if isinstance(target, ast.Starred):
        return _bound_by_target(target.value)
    return set()


def _parameters(args: ast.arguments) -> Set[str]:
    names = {a.arg for a in getattr(args, "posonlyargs", []) + args.args + args.kwonlyargs}
    for extra in (args.vararg, args.kwarg):
        if extra is not None:
            names.add(extra.arg)
    return names


def _arguments_outside(args: ast.arguments, read: Callable[[ast.AST], None]) -> None:
    """Default values, evaluated where the def or lambda stands."""
    for expr in args.defaults + [d for d in args.kw_defaults if d is not None]:
        read(expr)


def _annotations(node) -> List[ast.AST]:
    args = node.args
    every = getattr(args, "posonlyargs", []) + args.args + args.kwonlyargs
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    found = [a.annotation for a in every if a.annotation is not None]
    if node.returns is not None:
        found.append(node.returns)
    return found


def _type_param_names(node) -> Set[str]:
    return {param.name for param in getattr(node, "type_params", None) or []}


def _imported(node) -> List[str]:
    names = []
    for alias in node.names:
        if alias.name == "*":
            continue
        if alias.asname:
            names.append(alias.asname)
        elif isinstance(node, ast.Import):
            names.append(alias.name.split(".")[0])
        else:
            names.append(alias.name)
    return names


# ---------------------------------------------------------------------------
# The top level (and class bodies in it): statement order, and which names
# are surely bound at each point.


class _Flow:
    """Runs through the statements of one namespace (the module, a class body
    at the top level, the code of ``%timeit``), tracking the names surely
    bound so far."""

    def __init__(self, module: "_Module") -> None:
        self.module = module
        self.sure: Set[str] = set()

    # Names -------------------------------------------------------------------

    def read(self, name: str) -> None:
        raise NotImplementedError

    def bind(self, name: str, sure: bool = True) -> None:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def declare(self, node) -> None:
        """``global``/``nonlocal`` where they have no effect."""

    def nested(self, scope: _Scope, deferred: bool) -> None:
        """A nested scope's reads: now (a comprehension) or later (a function
        or lambda body); and what it binds outside itself."""
        for name in scope.free:
            self.module.deferred_read(name) if deferred else self.read(name)
        for name in scope.global_reads:
            self.module.deferred_read(name) if deferred else self.module.read(name)
        for name in scope.enclosing_binds:
            self.bind(name, sure=False)  # a comprehension may run no iteration
        for name in scope.global_binds:
            self.module.define(name)
        for name in scope.global_deletes:
            self.module.deletes.add(name)

    # Statements ----------------------------------------------------------------

    def body(self, stmts: Iterable[ast.stmt]) -> None:
        for node in stmts:
            self.stmt(node)

    def branch(self, stmts: Iterable[ast.stmt]) -> Set[str]:
        """Run ``stmts`` from the current state; return the names surely bound
        after them, and leave the current state as it was."""
        before = set(self.sure)
        self.body(stmts)
        after, self.sure = self.sure, before
        return after

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, _FUNCTIONS):
            for expr in node.decorator_list:
                self.expr(expr)
            _arguments_outside(node.args, self.expr)
            type_params = _type_param_names(node)
            for expr in _annotations(node):
                self.annotation(expr, type_params)
            self.bind(node.name)
            self.nested(_function_scope(node), deferred=True)  # run later: order is moot
        elif isinstance(node, ast.ClassDef):
            for expr in node.decorator_list:
                self.expr(expr)
            type_params = _type_param_names(node)
            for expr in node.bases + [k.value for k in node.keywords]:
                self.annotation(expr, type_params)
            _ClassFlow(self.module, type_params).body(node.body)
            self.bind(node.name)
        elif isinstance(node, ast.Assign):
            self.expr(node.value)
            for target in node.targets:
                self.target(target)
        elif isinstance(node, ast.AugAssign):
            if isinstance(node.target, ast.Name):
                self.read(node.target.id)
                self.expr(node.value)
                self.bind(node.target.id)
            else:
                self.target(node.target)
                self.expr(node.value)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expr(node.value)
            if isinstance(node.target, ast.Name):
                if node.value is not None:
                    self.bind(node.target.id)
            else:
                self.target(node.target)  # evaluated even without a value
            self.expr(node.annotation)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                self.delete_target(target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter)
            before = set(self.sure)
            self.target(node.target)
            self.body(node.body)
            self.sure = before  # the body may run no iteration
            self.branch(node.orelse)  # a break skips it
        elif isinstance(node, ast.While):
            self.expr(node.test)
            self.branch(node.body)
            self.branch(node.orelse)
        elif isinstance(node, ast.If):
            self.expr(node.test)
            self.sure = self.branch(node.body) & self.branch(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            self.body(node.body)
        elif isinstance(node, _TRY):
            before = set(self.sure)
            self.body(node.body)
            self.body(node.orelse)
            after = self.sure
            for handler in node.handlers:
                self.sure = set(before)  # the exception may come before any binding
                if handler.type is not None:
                    self.expr(handler.type)
                if handler.name:
                    self.bind(handler.name)
                self.body(handler.body)
                if handler.name:
                    self.sure.discard(handler.name)  # Python deletes it
                after = after & self.sure
            self.sure = after
            self.body(node.finalbody)
        elif _Match is not None and isinstance(node, _Match):
            self.expr(node.subject)
            before = set(self.sure)
            after = None  # type: Optional[Set[str]]
            exhaustive = False
            for case in node.cases:
                self.sure = set(before)
                self.pattern(case.pattern)
                if case.guard is not None:
                    self.expr(case.guard)
                self.body(case.body)
                after = self.sure if after is None else after & self.sure
                exhaustive = exhaustive or (case.guard is None and _irrefutable(case.pattern))
            if after is None or not exhaustive:  # no case may match
                after = before if after is None else after & before
            self.sure = after
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in _imported(node):
                self.bind(name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            self.declare(node)
        elif _TypeAlias is not None and isinstance(node, _TypeAlias):
            self.nested(_type_alias_scope(node), deferred=True)  # evaluated lazily
            self.bind(node.name.id)
        else:  # Expr, Return, Raise, Assert, Pass, Break, Continue, ...
            for child in ast.iter_child_nodes(node):
                self.expr(child)

    def annotation(self, expr: ast.AST, type_params: Set[str]) -> None:
        """An expression evaluated where a def or class stands, where the
        def's or class's type parameters are bound."""
        if type_params:
            self.nested(_expr_scope(expr, type_params), deferred=False)
        else:
            self.expr(expr)

    def target(self, node: ast.AST) -> None:
        """Bind an assignment target (``a.b``, ``a[i]``: read a and i)."""
        if isinstance(node, ast.Name):
            self.bind(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        else:
            self.expr(node)

    def delete_target(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.delete(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.delete_target(elt)
        else:
            self.expr(node)

    def pattern(self, node: ast.AST) -> None:
        collector = _Collector()
        collector.generic(node)
        for name in collector.loads:  # value patterns (a.B) and class patterns
            self.read(name)
        for name in collector.stores:
            self.bind(name)

    # Expressions ---------------------------------------------------------------

    def expr(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.read(node.id)
            elif isinstance(node.ctx, ast.Store):
                self.bind(node.id)
            else:
                self.delete(node.id)
        elif isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.target(node.target)
        elif isinstance(node, ast.Lambda):
            _arguments_outside(node.args, self.expr)
            self.nested(_lambda_scope(node), deferred=True)
        elif isinstance(node, _COMPREHENSIONS):
            self.expr(node.generators[0].iter)
            self.nested(_comprehension_scope(node), deferred=False)
        elif isinstance(node, ast.Call) and self.magic(node):
            pass
        else:
            for child in ast.iter_child_nodes(node):
                self.expr(child)

    # IPython magics that run code ---------------------------------------------

    def magic(self, call: ast.Call) -> bool:
        """Read through ``get_ipython().run_line_magic('time', code)`` and the
        like; False if ``call`` is no such call (or its code is not Python)."""
        func = call.func
        if not (
            isinstance(func, ast.Attribute)
            and func.attr in ("run_line_magic", "run_cell_magic")
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "get_ipython"
            and not call.keywords
            and len(call.args) == (2 if func.attr == "run_line_magic" else 3)
            and all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in call.args)
        ):
            return False
        args = [arg.value for arg in call.args]  # type: ignore[attr-defined]
        name, line, cell = args[0], args[1], (args[2] if len(args) == 3 else None)
        if name not in _CODE_MAGICS or self.module.depth >= 8:
            return False
        if name == "timeit":
            line = _TIMEIT_OPTIONS.sub("", line, count=1)
            codes = [line] if cell is None else [line, cell]  # %%timeit: the line is its setup
        elif name == "time":
            codes = [line] if cell is None else [cell]
        elif cell is not None:  # %%capture
            codes = [cell]
        else:
            return False
        transform = self.module.transform
        trees = []
        for code in codes:
            try:
                trees.append(_parse(code if transform is None else transform(code)))
            except (SyntaxError, ValueError):
                return False
        self.read(func.value.func.id)
        self.module.depth += 1
        try:
            flow = self if _CODE_MAGICS[name] else _ThrowawayFlow(self)
            for tree in trees:
                flow.body(tree.body)
        finally:
            self.module.depth -= 1
        if name == "capture":
            words = [word for word in line.split() if not word.startswith("-")]
            if words and words[0].isidentifier():
                self.bind(words[0])
        return True


class _Module(_Flow):
    """The notebook's global namespace, as the cell sees it."""

    def __init__(self, transform: Optional[Callable[[str], str]]) -> None:
        super().__init__(self)
        self.transform = transform
        self.depth = 0  # magics read through, nested
        self.defines = _Ordered()
        self.deletes = _Ordered()
        self.bound_at_top: Set[str] = set()  # by a top-level statement, anywhere
        self.reads: List[Tuple[str, bool]] = []  # (name, deferred), in source order

    def read(self, name: str) -> None:
        if name not in self.sure:
            self.reads.append((name, False))

    def deferred_read(self, name: str) -> None:
        self.reads.append((name, True))

    def bind(self, name: str, sure: bool = True) -> None:
        self.define(name)
        self.bound_at_top.add(name)
        if sure:
            self.sure.add(name)

    def define(self, name: str) -> None:
        self.defines.add(name)

    def delete(self, name: str) -> None:
        self.deletes.add(name)
        self.sure.discard(name)


class _ClassFlow(_Flow):
    """A class body at the top level: a namespace of its own, run at once.
    What it has not bound it reads from the module's (not from an enclosing
    class'); the functions in it do not see its names."""

    def __init__(self, module: _Module, type_params: Set[str]) -> None:
        super().__init__(module)
        self.type_params = type_params
        self.sure = set(type_params)
        self.globals: Set[str] = set()

    def read(self, name: str) -> None:
        if name in self.globals or name not in self.sure:
            self.module.read(name)

    def bind(self, name: str, sure: bool = True) -> None:
        if name in self.globals:
            self.module.bind(name, sure)
        elif sure:
            self.sure.add(name)

    def delete(self, name: str) -> None:
        if name in self.globals:
            self.module.delete(name)
        else:
            self.sure.discard(name)

    def declare(self, node) -> None:
        if isinstance(node, ast.Global):
            self.globals.update(node.names)

    def nested(self, scope: _Scope, deferred: bool) -> None:
        for name in scope.free:
            if name not in self.type_params:
                self.module.deferred_read(name) if deferred else self.module.read(name)
        for name in scope.global_reads:
            self.module.deferred_read(name) if deferred else self.module.read(name)
        for name in scope.enclosing_binds:
            self.bind(name, sure=False)
        for name in scope.global_binds:
            self.module.define(name)
        for name in scope.global_deletes:
            self.module.deletes.add(name)


class _ThrowawayFlow(_Flow):
    """Code whose bindings do not outlive it (``%timeit``'s): only its reads
    of what it did not bind count."""

    def __init__(self, outer: _Flow) -> None:
        super().__init__(outer.module)
        self.outer = outer

    def read(self, name: str) -> None:
        if name not in self.sure:
            self.outer.read(name)

    def bind(self, name: str, sure: bool = True) -> None:
        if sure:
            self.sure.add(name)

    def delete(self, name: str) -> None:
        self.sure.discard(name)


def _irrefutable(pattern: ast.AST) -> bool:
    """``case _`` or ``case name`` (or an or-pattern holding one)."""
    if isinstance(pattern, ast.MatchAs):
        return pattern.pattern is None or _irrefutable(pattern.pattern)
    if isinstance(pattern, ast.MatchOr):
        return any(_irrefutable(p) for p in pattern.patterns)
    return False
