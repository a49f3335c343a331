"""The names a cell defines, deletes and uses (a static reading of its source)."""
import sys
import textwrap

import pytest

from reprotrace import names
from reprotrace.names import Names


def read(source, transform=None):
    return names.of_cell(textwrap.dedent(source), transform)


def check(source, defines=(), deletes=(), uses=()):
    assert read(source) == Names(list(defines), list(deletes), list(uses))


# (source, defines, deletes, uses)
CASES = [
    # Assignments.
    ("x = 1", ["x"], [], []),
    ("x = x + 1", ["x"], [], ["x"]),
    ("y = 1; print(y)", ["y"], [], []),
    ("print(y); y = 1", ["y"], [], ["y"]),
    ("a, (b, *c) = d", ["a", "b", "c"], [], ["d"]),
    ("[a, b] = c = e", ["a", "b", "c"], [], ["e"]),
    ("x += 1", ["x"], [], ["x"]),
    ("x = 0\nx += 1", ["x"], [], []),
    ("x: int = f()", ["x"], [], ["f"]),
    ("x: Frame", [], [], ["Frame"]),  # an annotation alone binds nothing (and is evaluated)
    ("x: int", [], [], []),
    ("(y := f(x))\nprint(y)", ["y"], [], ["f", "x"]),
    ("z = (y := 2) + y", ["y", "z"], [], []),
    # Attributes and subscripts use their object and define nothing.
    ("a.b = 1", [], [], ["a"]),
    ("a[i] = v", [], [], ["v", "a", "i"]),
    ("a.b.c += 1", [], [], ["a"]),
    ("a[k]: int = 1", [], [], ["a", "k"]),
    ("df.append(row)", [], [], ["df", "row"]),
    ("a, b.c = 1, 2", ["a"], [], ["b"]),
    # Deletes.
    ("del x", [], ["x"], []),
    ("del x, (y, z)", [], ["x", "y", "z"], []),
    ("del a[0], b.c", [], [], ["a", "b"]),
    ("x = 1\ndel x\nprint(x)", ["x"], ["x"], ["x"]),
    # Imports bind their first name, or the as-name.
    ("import os", ["os"], [], []),
    ("import os.path", ["os"], [], []),
    ("import a.b.c as d, e", ["d", "e"], [], []),
    ("from a.b import c, d as e", ["c", "e"], [], []),
    ("from . import sibling", ["sibling"], [], []),
    ("from m import *", [], [], []),
    ("import numpy as np\nnp.zeros(3)", ["np"], [], []),
    # Loops, with, except.
    ("for i, j in pairs: pass", ["i", "j"], [], ["pairs"]),
    ("for i in r:\n    total = total + i", ["i", "total"], [], ["r", "total"]),
    ("async for i in agen(): pass", ["i"], [], ["agen"]),
    ("with open(p) as f, lock: data = f.read()\nprint(data)", ["f", "data"], [], ["p", "lock"]),
    ("with ctx() as (a, b): pass", ["a", "b"], [], ["ctx"]),
    ("try:\n    pass\nexcept ValueError as err:\n    log(err)", ["err"], [], ["log"]),
    ("try:\n    pass\nexcept (E1, E2):\n    pass", [], [], ["E1", "E2"]),
    # Functions: their parameters and locals are theirs; their global reads are uses.
    ("def f(a, *args, b=1, **kw):\n    c = a + b\n    return c + len(args) + g", ["f"], [], ["g"]),
    ("async def f():\n    await fetch(url)", ["f"], [], ["fetch", "url"]),
    ("def f():\n    return helper()\ndef helper():\n    return 1", ["f", "helper"], [], []),
    ("def f():\n    return k\nk = 1", ["f", "k"], [], []),
    ("def f(x=default, *, y: Ann = other) -> Ret:\n    pass", ["f"], [], ["default", "other", "Ann", "Ret"]),
    ("@decorate(opt)\ndef f(): pass", ["f"], [], ["decorate", "opt"]),
    ("def f():\n    x = 1\n    def g():\n        return x + y\n    return g", ["f"], [], ["y"]),
    ("def f():\n    a()\n    g = lambda: b\n    c()", ["f"], [], ["a", "b", "c"]),  # first-seen order
    ("def f():\n    x = 1\n    def g():\n        nonlocal x\n        x += 1", ["f"], [], []),
    ("def f():\n    global g\n    g = 1", ["f", "g"], [], []),
    ("def f():\n    global counter\n    counter += 1", ["f", "counter"], [], ["counter"]),
    ("counter = 0\ndef f():\n    global counter\n    counter += 1", ["counter", "f"], [], []),
    ("def f():\n    global gone\n    del gone", ["f"], ["gone"], []),
    ("def f():\n    global x\n    def g():\n        return x\n    return g", ["f"], [], ["x"]),
    ("def f():\n    if c:\n        v = 1\n    return v", ["f"], [], ["c"]),  # v is local, even if unbound
    ("def f():\n    import os\n    return os.getcwd() + sep", ["f"], [], ["sep"]),
    ("def f():\n    for i in data: pass\n    return i", ["f"], [], ["data"]),
    ("def f():\n    try: pass\n    except E as e: return e", ["f"], [], ["E"]),
    ("def f():\n    class C:\n        attr = 1\n        def m(self):\n            return attr\n    return C", ["f"], [], ["attr"]),
    # Lambdas.
    ("f = lambda a, b=d: a + b + c", ["f"], [], ["d", "c"]),
    ("f = lambda: z\nz = 1", ["f", "z"], [], []),
    # Comprehensions run at once; their targets are theirs.
    ("[x for x in data if x > t]", [], [], ["data", "t"]),
    ("{k: v for k, v in items}", [], [], ["items"]),
    ("r = [y for x in xs for y in x]", ["r"], [], ["xs"]),
    ("s = sum(v * w for v in vals)", ["s"], [], ["vals", "w"]),
    ("x = 5\n[x for x in range(x)]", ["x"], [], []),
    ("[last := v for v in vals]\nprint(last)", ["last"], [], ["vals", "last"]),
    ("[y for x in xs if (y := f(x))]", ["y"], [], ["xs", "f"]),
    ("[[a for a in row] for row in grid]", [], [], ["grid"]),
    ("[lambda: i for i in r]", [], [], ["r"]),
    # Classes: the body runs at once in its own namespace; methods skip it.
    ("class A(Base, metaclass=Meta):\n    x = 1\n    y = x + z", ["A"], [], ["Base", "Meta", "z"]),
    ("class A:\n    def m(self):\n        return A, helper", ["A"], [], ["helper"]),
    ("class A:\n    x = 1\n    def m(self):\n        return x", ["A"], [], ["x"]),
    ("class A:\n    v = [w for w in ws if w > lim]", ["A"], [], ["ws", "lim"]),
    ("@dataclass\nclass P:\n    x: int = 0\n    y: Other = None", ["P"], [], ["dataclass", "Other"]),
    ("class A:\n    global g\n    g = 1", ["g", "A"], [], []),  # the body runs before A is bound
    # Flow: a use unless surely bound before.
    ("if c:\n    x = 1\nprint(x)", ["x"], [], ["c", "x"]),
    ("if c:\n    x = 1\nelse:\n    x = 2\nprint(x)", ["x"], [], ["c"]),
    ("if c:\n    x = 1\nelif d:\n    x = 2\nprint(x)", ["x"], [], ["c", "d", "x"]),
    ("while cond():\n    n = 1\nprint(n)", ["n"], [], ["cond", "n"]),
    ("for i in r:\n    pass\nelse:\n    done = 1\nprint(i, done)", ["i", "done"], [], ["r", "i", "done"]),
    ("try:\n    import fast as lib\nexcept ImportError:\n    import slow as lib\nlib.run()", ["lib"], [], []),
    ("try:\n    v = load()\nexcept Exception:\n    pass\nprint(v)", ["v"], [], ["load", "v"]),
    ("try:\n    v = load()\nfinally:\n    w = 1\nprint(v, w)", ["v", "w"], [], ["load"]),
    ("try:\n    pass\nexcept E as e:\n    pass\nprint(e)", ["e"], [], ["E", "e"]),  # Python deletes e
    ("x = 1\nif c:\n    del x\nprint(x)", ["x"], ["x"], ["c", "x"]),
    ("import re\nif (m := re.match(p, s)):\n    print(m)", ["re", "m"], [], ["p", "s"]),
    ("try:\n    a()\nexcept:\n    b = 1\nprint(b)", ["b"], [], ["a", "b"]),
    ("with a as b.c: pass", [], [], ["a", "b"]),
    ("for x.y in z: pass", [], [], ["z", "x"]),
    ("x = 1 if c else y", ["x"], [], ["c", "y"]),
    ("x = y[1:n:s]; z = {**d, 'k': v}", ["x", "z"], [], ["y", "n", "s", "d", "v"]),
    ("global x\nx = 1", ["x"], [], []),
    # Builtins and IPython's names are no uses, unless the cell defines them.
    ("print(len(range(3)), __name__)", [], [], []),
    ("list = [1]\nprint(list)", ["list"], [], []),
    ("print(sum); sum = 1", ["sum"], [], ["sum"]),
    ("get_ipython().system('ls'); x = _ + __ + ___ + _i + _ii + _i3 + _7 + In[1] + Out[2] + _oh + _ih + _dh", ["x"], [], []),
    ("display(df); exit(); quit()", [], [], ["df"]),
    ("_items = 1; print(_items, _internal)", ["_items"], [], ["_internal"]),
    # First-seen order, no duplicates.
    ("b(a); a(b); c = a", ["c"], [], ["b", "a"]),
    ("x = 1\nx = 2\ny = x", ["x", "y"], [], []),
    # Top-level await and async comprehensions.
    ("r = await fetch(u)", ["r"], [], ["fetch", "u"]),
    ("async with session() as s:\n    r = [x async for x in s]", ["s", "r"], [], ["session"]),
    # Strings and f-strings.
    ("msg = f'{name!r:>{width}}'", ["msg"], [], ["name", "width"]),
    ("q = 'x + y'", ["q"], [], []),
    # Dynamic code is not seen.
    ("exec('z = 1')\nglobals()['w'] = 2", [], [], []),
    ("", [], [], []),
    ("# only a comment", [], [], []),
]


@pytest.mark.parametrize("source, defines, deletes, uses", CASES)
def test_names(source, defines, deletes, uses):
    check(source, defines, deletes, uses)


@pytest.mark.skipif(sys.version_info < (3, 10), reason="match needs Python 3.10")
@pytest.mark.parametrize(
    "source, defines, uses",
    [
        ("match cmd:\n    case [verb, *rest]:\n        pass\n    case {'k': v, **others}:\n        pass", ["verb", "rest", "v", "others"], ["cmd"]),
        ("match p:\n    case Point(x=px) if px > lim:\n        pass", ["px"], ["p", "Point", "lim"]),
        ("match p:\n    case Color.RED | Color.BLUE as c:\n        pass", ["c"], ["p", "Color"]),
        ("match p:\n    case 1:\n        r = 1\n    case _:\n        r = 2\nprint(r)", ["r"], ["p"]),
        ("match p:\n    case 1:\n        r = 1\n    case 2:\n        r = 2\nprint(r)", ["r"], ["p", "r"]),
        ("match p:\n    case other:\n        pass\nprint(other)", ["other"], ["p"]),
    ],
)
def test_match(source, defines, uses):
    check(source, defines, [], uses)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="type parameters need Python 3.12")
@pytest.mark.parametrize(
    "source, defines, uses",
    [
        ("type Pair[T] = tuple[T, Other]", ["Pair"], ["Other"]),
        ("def first[T](xs: list[T]) -> T:\n    return xs[0]", ["first"], []),
        ("class Box[T](Base[T]):\n    item: T\n    def get(self) -> T:\n        return self.item", ["Box"], ["Base"]),
    ],
)
def test_type_parameters(source, defines, uses):
    check(source, defines, [], uses)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="except* needs Python 3.11")
def test_except_star():
    check("try:\n    pass\nexcept* ValueError as eg:\n    handle(eg)", ["eg"], [], ["handle"])


def test_syntax_errors_have_no_names():
    assert read("x = (") is None
    assert read("%time x = 1") is None  # IPython syntax, untransformed
    assert read("def f(:\n pass") is None
    assert read("x = 1\0") is None


def test_a_cell_too_deep_to_walk_has_no_names():
    assert read("x = " + "(" * 50 + "1" + ")" * 50) == Names(["x"], [], [])
    deep = "x = " + " + ".join(["y"] * 5000)
    found = read(deep)
    assert found is None or found == Names(["x"], [], ["y"])


def test_is_ipython_name():
    for name in ("_", "__", "___", "_i", "_ii", "_iii", "_i12", "_12", "In", "Out", "get_ipython", "_oh", "_dh"):
        assert names.is_ipython_name(name), name
    for name in ("____", "_x", "_items", "i", "_i_", "display_", "Input"):
        assert not names.is_ipython_name(name), name


# IPython syntax, transformed the way the hook does it.

try:
    from IPython.core.inputtransformer2 import TransformerManager

    transform = TransformerManager().transform_cell
except ImportError:  # pragma: no cover
    transform = None

needs_ipython = pytest.mark.skipif(transform is None, reason="needs IPython")


@needs_ipython
@pytest.mark.parametrize(
    "source, defines, deletes, uses",
    [
        ("%matplotlib inline\nimport matplotlib.pyplot as plt", ["plt"], [], []),
        ("files = !ls {path}\nprint(files)", ["files"], [], []),
        ("!echo hi", [], [], []),
        ("x?", [], [], []),
        ("%time y = f(x)", ["y"], [], ["f", "x"]),
        ("%%time\nimport pandas as pd\ndf = pd.read_csv(path)\n", ["pd", "df"], [], ["path"]),
        ("%%capture out --no-stderr\nr = run(job)\n", ["r", "out"], [], ["run", "job"]),
        ("%timeit -n 10 -r 3 g = h(k)", [], [], ["h", "k"]),
        ("%%timeit setup = make(n)\nuse(setup, other)\n", [], [], ["make", "n", "use", "other"]),
        ("%%bash\necho $x\n", [], [], []),
        ("%%time\n%time z = w\n", ["z"], [], ["w"]),
        ("%%time\nx = (\n", [], [], []),  # the body is not Python: the magic stays opaque
        ("%load_ext autoreload\n%autoreload 2", [], [], []),
    ],
)
def test_ipython_syntax(source, defines, deletes, uses):
    assert names.of_cell(source, transform) == Names(defines, deletes, uses)


@needs_ipython
def test_a_cell_that_does_not_transform_has_no_names():
    assert names.of_cell("%%time\n", lambda cell: (_ for _ in ()).throw(SyntaxError("no"))) is None
