"""reprotrace's sitecustomize, for the hook dir reprotrace prepends to PYTHONPATH.

Every Python process of a traced command imports this module at start-up
(site.py imports ``sitecustomize``, and the hook dir comes first on sys.path).
It

1. runs the sitecustomize that would have been imported without it (Debian's
   /usr/lib/python3.X/sitecustomize.py, a virtualenv's, another tool's): the
   first one on sys.path after this file's directory, executed as the process's
   ``sitecustomize`` module, as site.py would have;
2. when REPROTRACE_CELL_MARKERS=1, makes IPython kernels load the
   ``reprotrace`` extension (the package beside this file), so that every cell
   they run emits cell markers. A finder on sys.meta_path waits for
   ``ipykernel.kernelapp`` to be imported and wraps
   ``IPKernelApp.initialize``: once the kernel app is initialized (the shell
   exists, the kernel's own start-up code and configured extensions have run)
   and before the kernel serves its first request, the extension is loaded.
   Other processes pay one string comparison per import.

Nothing here may break a process: an error is reported in one line on stderr
and swallowed. Written for Python 2.7 and 3.
"""
import os
import sys

_ENABLE_VARIABLE = "REPROTRACE_CELL_MARKERS"
_KERNEL_APP_MODULE = "ipykernel.kernelapp"
_EXTENSION = "reprotrace"


def _warn(what, exc):
    try:
        sys.stderr.write("reprotrace: %s failed: %s: %s\n" % (what, type(exc).__name__, exc))
    except Exception:
        pass


def _path_after_this_directory():
    """The sys.path entries site.py's import would have searched without us."""
    here = os.stat(os.path.dirname(os.path.abspath(__file__)))

    def is_here(entry):
        # By device and inode: one stat, and symlinked spellings match too.
        try:
            there = os.stat(entry or os.curdir)
        except (OSError, TypeError, ValueError):  # missing, or not a str/bytes path
            return False
        return there.st_ino == here.st_ino and there.st_dev == here.st_dev

    # The import found this file first: without this directory it would have
    # gone on with the entries after it. (Entries before it hold no
    # sitecustomize, or the one that chained to this file, as the hook dir of
    # an enclosing reprotrace would.)
    position = next((i for i, entry in enumerate(sys.path) if is_here(entry)), -1)
    return [entry for entry in sys.path[position + 1 :] if not is_here(entry)]


def _chain_next_sitecustomize():
    """Run the next sitecustomize as the process's sitecustomize module.

    It replaces this one in sys.modules, as if it had been imported directly:
    site.py's import returns whatever sys.modules holds once this file has
    run. The search takes a path list rather than a temporary sys.path: the
    next sitecustomize may change sys.path (site.addsitedir...), which must
    stay.
    """
    path = _path_after_this_directory()
    previous = sys.modules.get("sitecustomize")
    if sys.version_info >= (3, 5):
        # The import system's own modules are always loaded; importing
        # importlib.util instead would cost every process about 2 ms.
        try:
            from _frozen_importlib import module_from_spec
            from _frozen_importlib_external import PathFinder
        except ImportError:
            from importlib.machinery import PathFinder
            from importlib.util import module_from_spec

        spec = PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None:
            return
        module = module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules["sitecustomize"] = previous
            raise
    else:  # Python 2.7 and 3.4: no module_from_spec
        import imp

        try:
            found = imp.find_module("sitecustomize", path)
        except ImportError:
            return
        # Out of sys.modules, or load_module would run it in this module; and
        # kept elsewhere, for Python 2 clears a dropped module's globals.
        sys.modules["_reprotrace_sitecustomize_%x" % id(previous)] = sys.modules.pop("sitecustomize", None)
        try:
            imp.load_module("sitecustomize", *found)
        except BaseException:
            sys.modules["sitecustomize"] = previous
            raise
        finally:
            if found[0] is not None:
                found[0].close()


def _load_extension_after_initialize(app_class):
    initialize = app_class.initialize

    def initialize_then_load_reprotrace(self, *args, **kwargs):
        result = initialize(self, *args, **kwargs)
        shell = getattr(self, "shell", None)  # None for subcommands (ipykernel install)
        if shell is not None:
            try:
                shell.extension_manager.load_extension(_EXTENSION)
            except Exception as exc:
                _warn("loading the reprotrace IPython extension", exc)
        return result

    app_class.initialize = initialize_then_load_reprotrace


class _PatchingLoader(object):
    """Runs ipykernel.kernelapp with its real loader, then patches IPKernelApp."""

    def __init__(self, finder, loader):
        self._finder = finder
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def exec_module(self, module):
        # The module sees its real loader, as if this one had never been there.
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        # One kernel app per process: the finder has done its work. (No
        # import is searching sys.meta_path now: this one is past its search,
        # enclosing ones are running their modules.)
        try:
            sys.meta_path.remove(self._finder)
        except ValueError:
            pass
        try:
            _load_extension_after_initialize(module.IPKernelApp)
        except Exception as exc:
            _warn("hooking ipykernel's IPKernelApp", exc)


class _KernelAppFinder(object):
    """A sys.meta_path finder that finds nothing itself.

    For ipykernel.kernelapp it asks the finders after it and hands back their
    spec with a loader that patches the module once it has run.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _KERNEL_APP_MODULE:
            return None
        try:
            return self._patching_spec(fullname, path, target)
        except Exception as exc:
            _warn("hooking ipykernel's kernel app", exc)
            return None  # the other finders import it as usual

    def _patching_spec(self, fullname, path, target):
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(self, spec.loader)
        return spec


try:
    _chain_next_sitecustomize()
except Exception as exc:
    _warn("running the next sitecustomize", exc)

# After chaining: a finder that the next sitecustomize put first must not come
# before this one. (Finders have find_spec from Python 3.4 on; Python 2 has no
# kernel to hook.)
if os.environ.get(_ENABLE_VARIABLE) == "1" and sys.version_info >= (3, 4):
    sys.meta_path.insert(0, _KernelAppFinder())
