"""Which local modules a function needs on the runtimes.

The same analysis as the Airflow provider's (deploy/airflow/skein_provider/
functions.py, from which these helpers are taken): the modules a function
uses by name (its globals, its closure's values, the functions of __main__ it
calls, which travel by value with it) that are neither standard library nor
installed packages are shipped with the job; include_modules entries are
looked up in the script's folder, then on the Python path.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import re
import sys
import sysconfig
from types import ModuleType
from typing import Any


class FunctionError(ValueError):
    """A function or include_modules entry that cannot be shipped."""


def _is_dag_module(module: ModuleType | None, dag_file: str | None) -> bool:
    """Whether module travels by value with the function (the script's
    __main__, or the module of dag_file)."""
    if module is None:
        return False
    if module.__name__ == "__main__" or module.__name__ == "__mp_main__":
        return True
    if not dag_file:
        return False
    try:
        return os.path.realpath(getattr(module, "__file__", None) or "") == os.path.realpath(dag_file)
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _std_paths() -> tuple[str, ...]:
    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(os.path.realpath(p))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        paths.add(os.path.realpath(os.path.join(prefix, "lib")))
    return tuple(sorted(paths))


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + os.sep) for r in roots)


def _ship_path(module: ModuleType) -> str | None:
    """The file or top-level package directory to ship for module, or None
    when the runtime is expected to have it (standard library, installed
    packages, built-in modules)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    file = os.path.realpath(file)
    if _under(file, _std_paths()):
        return None
    top = module.__name__.split(".")[0]
    if top == module.__name__:
        if os.path.basename(file) == "__init__.py":
            return os.path.dirname(file)
        return file
    top_mod = sys.modules.get(top)
    top_file = getattr(top_mod, "__file__", None) if top_mod else None
    if top_file:
        return os.path.dirname(os.path.realpath(top_file))
    # A namespace package: walk up one directory per dotted part.
    d = os.path.dirname(file)
    for _ in range(module.__name__.count(".") - (0 if os.path.basename(file) == "__init__.py" else 1)):
        d = os.path.dirname(d)
    return d




def _code_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if inspect.iscode(c):
            names |= _code_names(c)
    return names


def _used_modules(fn: Any, dag_file: str | None) -> list[ModuleType]:
    """The modules fn uses by name (its own, those of the globals and closure
    values it refers to), following functions of the script (which travel by
    value with it). These have to be importable on the runtimes."""
    found: list[ModuleType] = []
    seen: set[int] = set()

    def add(m: ModuleType | None) -> None:
        if m is not None and not _is_dag_module(m, dag_file) and m not in found:
            found.append(m)

    def value(v: Any) -> None:
        if isinstance(v, ModuleType):
            add(v)
            return
        mod = sys.modules.get(getattr(v, "__module__", None) or "")
        if inspect.isfunction(v) and (_is_dag_module(mod, dag_file) or v.__name__ == "<lambda>"
                                      or "<locals>" in v.__qualname__):
            visit(v)
        elif callable(v) or inspect.isclass(v):
            add(mod)

    def visit(f: Any) -> None:
        if id(f) in seen:
            return
        seen.add(id(f))
        if isinstance(f, functools.partial):
            visit(f.func)
            for a in (*f.args, *(f.keywords or {}).values()):
                value(a)
            return
        f = getattr(f, "__func__", f)  # a bound method
        code = getattr(f, "__code__", None)
        if code is None:
            if not inspect.isfunction(f):
                value(type(f) if not isinstance(f, type) else f)
            return
        add(sys.modules.get(getattr(f, "__module__", None) or ""))
        g = getattr(f, "__globals__", {})
        for n in _code_names(code):
            if n in g:
                value(g[n])
        for cell in getattr(f, "__closure__", None) or ():
            try:
                value(cell.cell_contents)
            except ValueError:  # an empty cell
                pass

    visit(fn)
    return found




_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _looks_like_path(entry: str) -> bool:
    return os.sep in entry or "/" in entry or entry.endswith(".py") or entry.startswith(".")


def _search_dirs(dag_dir: str | None) -> list[str]:
    """The script's folder, then the Python path (absolute entries, no duplicates)."""
    dirs: list[str] = []
    for d in ([dag_dir] if dag_dir else []) + [p or os.getcwd() for p in sys.path]:
        if not os.path.isdir(d):
            continue
        d = os.path.realpath(d)
        if d not in dirs:
            dirs.append(d)
    return dirs


def _find_name_in(d: str, name: str) -> str | None:
    """What to ship for module name in directory d: the module file or package
    directory of a plain name; for a dotted name a.b, the top-level package a
    (when a/b.py or a/b/ exists under d)."""
    parts = name.split(".")
    if len(parts) == 1:
        if os.path.isfile(os.path.join(d, name + ".py")):
            return os.path.join(d, name + ".py")
        if os.path.isdir(os.path.join(d, name)):
            return os.path.join(d, name)
        return None
    sub = os.path.join(d, *parts)
    if os.path.isfile(sub + ".py") or os.path.isdir(sub):
        return os.path.join(d, parts[0])
    return None


def resolve_include(entry: str, dag_file: str | None) -> str | None:
    """Where include_modules' entry is: an absolute path as it is; a relative
    path or a module name looked up in the script's folder, then on the Python
    path (as the old plugin's users expect: ``["my_helpers"]``,
    ``["my_helpers.py"]``, ``["lib/helpers.py"]``, ``["pkg.sub"]``). A dotted name
    ships its top-level package. Returns None for a standard-library module
    (the runtime has its own) and raises FunctionError when nothing is found."""
    entry = entry.strip()
    dag_dir = os.path.dirname(os.path.realpath(dag_file)) if dag_file else None
    if os.path.isabs(entry):
        if not os.path.exists(entry):
            raise FunctionError(f"include_modules: {entry} does not exist")
        return entry
    where = f"the script's folder ({dag_dir})" if dag_dir else "the script's folder (unknown here)"
    if _looks_like_path(entry) or not _MODULE_NAME.match(entry):
        for d in _search_dirs(dag_dir):
            p = os.path.normpath(os.path.join(d, entry))
            if os.path.exists(p):
                return p
        raise FunctionError(
            f"include_modules: cannot find the path {entry!r}: looked in {where}, then on the Python path; "
            "give a path relative to the script's folder, an absolute path, or a module name"
        )
    if dag_dir:
        found = _find_name_in(os.path.realpath(dag_dir), entry)
        if found:
            return found
    top = entry.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is executed
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        if spec.origin in ("built-in", "frozen"):
            return None
        locations = list(spec.submodule_search_locations or [])
        path = os.path.realpath(locations[0]) if locations else (os.path.realpath(spec.origin) if spec.origin else None)
        if path:
            if _under(path, _std_paths()) and not _under(path, _site_paths()):
                return None  # the standard library
            if "." in entry:
                rest = entry.split(".")[1:]
                sub = os.path.join(path, *rest)
                if not locations or not (os.path.isfile(sub + ".py") or os.path.isdir(sub)):
                    raise FunctionError(f"include_modules: {top} has no module {entry!r}")
            return path
    raise FunctionError(
        f"include_modules: cannot find the module {entry!r}: looked in {where}, then on the Python path; "
        "give a module name importable here, or a path (absolute, or relative to the script's folder)"
    )


@functools.lru_cache(maxsize=None)
def _site_paths() -> tuple[str, ...]:
    paths = set()
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(os.path.realpath(p))
    return tuple(sorted(paths))




def resolve_includes(entries, script: str | None) -> list[str]:
    """resolve_include over a list, without duplicates or standard-library modules."""
    out: list[str] = []
    for e in entries or ():
        p = resolve_include(e, script)
        if p and p not in out:
            out.append(p)
    return out


def used_paths(fn: Any, script: str | None = None) -> list[str]:
    """The files and package directories to ship so that fn runs remotely:
    those of the modules fn uses, and, as Lithops' dependency analysis does,
    of the local modules those modules import at their top level (a module
    shipped by name is imported on the runtime, with its imports)."""
    out: list[str] = []
    todo = list(_used_modules(fn, script))
    seen: set[str] = set()
    while todo:
        m = todo.pop(0)
        if m.__name__ in seen:
            continue
        seen.add(m.__name__)
        p = _ship_path(m)
        if not p:
            continue  # standard library or installed: the runtime has it
        if p not in out:
            out.append(p)
        for v in list(vars(m).values()):
            dep = v if isinstance(v, ModuleType) else sys.modules.get(getattr(v, "__module__", None) or "") \
                if (inspect.isfunction(v) or inspect.isclass(v)) else None
            if dep is not None and dep is not m and dep.__name__ not in seen and not _is_dag_module(dep, script):
                todo.append(dep)
    return out
