"""Turn what a DAG author passes as a function into a Skein function reference.

A Python callable that a runtime can import by name (a module-level function of
a module other than the DAG file) becomes ``py:module:function`` plus the file
(or top-level package directory) that has to be shipped so that the runtimes can
import it. Any other callable (a function defined in the DAG file, a lambda, a
closure, a nested function, a method, a functools.partial...) travels by value:
it is pickled with cloudpickle into ``skein_fn_<hash>.pkl`` and run as
``py:@skein_fn_<hash>.pkl`` (see pkg/pyhost), with the modules it uses by name
shipped beside it. A string is taken as a reference as it is:
``py:module:function``, ``module:function`` (``py:`` is added) or a plain name
of a Go built-in (``add``, ``sum``, ``wordcount``...).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import json
import os
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from airflow.sdk.exceptions import AirflowException

# Airflow's DAG file processor imports a DAG file under this module-name prefix.
_AIRFLOW_DAG_MODULE_PREFIX = "unusual_prefix_"

_GO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_PY_REF = re.compile(r"^(py:)?([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)$")


class FunctionError(AirflowException):
    """A function argument that cannot be run remotely."""


@dataclass(frozen=True)
class FunctionRef:
    """A function as the submit CLI names it, and the files to ship with it.
    pickled holds the file of a function shipped by value (ref is then
    ``py:@<its name>``)."""

    ref: str
    ship: tuple[str, ...] = field(default_factory=tuple)
    pickled: bytes | None = None

    @property
    def file(self) -> str | None:
        return self.ref[len("py:@"):] if self.pickled is not None else None


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


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def resolve(fn: Any, param: str, dag_file: str | None = None) -> FunctionRef:
    """Resolve fn (the operator argument named param) into a FunctionRef.

    dag_file is the DAG's file when known: a function defined in it is refused.
    """
    if fn is None:
        raise FunctionError(f"{param} is required: pass a Python callable or a function reference string")
    if isinstance(fn, str):
        return _resolve_string(fn, param)
    if not callable(fn):
        raise FunctionError(f"{param} must be a callable or a function reference string, not {type(fn).__name__}")
    return _resolve_callable(fn, param, dag_file)


def _resolve_string(s: str, param: str) -> FunctionRef:
    s = s.strip()
    m = _PY_REF.match(s)
    if m:
        return FunctionRef(ref=f"py:{m.group(2)}:{m.group(4)}")
    if s.startswith("py:"):
        raise FunctionError(f"{param}={s!r} is not a valid Python reference: want py:module:function")
    if _GO_NAME.match(s):
        return FunctionRef(ref=s)
    raise FunctionError(
        f"{param}={s!r} is not a function reference: want py:module:function, module:function, "
        "or the name of a Go built-in such as add"
    )


def _resolve_callable(fn: Callable[..., Any], param: str, dag_file: str | None) -> FunctionRef:
    if inspect.isclass(fn):
        raise FunctionError(f"{param}={fn!r} is a class; pass a function")
    target = inspect.unwrap(fn) if inspect.isfunction(fn) or hasattr(fn, "__wrapped__") else fn
    name = getattr(fn, "__name__", None) or getattr(target, "__name__", None)
    qualname = getattr(fn, "__qualname__", None) or name
    module_name = getattr(fn, "__module__", None) or getattr(target, "__module__", None)
    module = sys.modules.get(module_name) if module_name else None
    if not _by_value(fn, target, name, qualname, module_name, module, dag_file):
        ship = _ship_path(module)
        return FunctionRef(ref=f"py:{module_name}:{name}", ship=(ship,) if ship else ())
    return _pickle(fn, param, dag_file)


def _is_dag_module(module: ModuleType | None, dag_file: str | None) -> bool:
    if module is None:
        return False
    if module.__name__ == "__main__" or module.__name__.startswith(_AIRFLOW_DAG_MODULE_PREFIX):
        return True
    return bool(dag_file) and _same_file(getattr(module, "__file__", None), dag_file)


def _by_value(fn: Any, target: Any, name: str | None, qualname: str | None, module_name: str | None,
              module: ModuleType | None, dag_file: str | None) -> bool:
    """Whether fn must travel by value: no runtime could import it by name."""
    if not inspect.isfunction(target) or not name or not module_name or module is None:
        return True  # a partial, a callable object, a builtin bound method...
    if name == "<lambda>" or "<locals>" in (qualname or "") or "." in (qualname or ""):
        return True
    if _is_dag_module(module, dag_file):
        return True
    try:
        src = inspect.getsourcefile(target)
    except TypeError:
        src = None
    if dag_file and _same_file(src, dag_file):
        return True
    return getattr(module, name, None) is not fn and getattr(module, name, None) is not target


def _code_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if inspect.iscode(c):
            names |= _code_names(c)
    return names


def _used_modules(fn: Any, dag_file: str | None) -> list[ModuleType]:
    """The modules fn uses by name (its own, those of the globals and closure
    values it refers to), following functions of the DAG file (which travel by
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


def _pickle(fn: Any, param: str, dag_file: str | None) -> FunctionRef:
    try:
        import cloudpickle
    except ImportError:
        raise FunctionError(
            f"{param} is not importable by name (a function of the DAG file, a lambda, a closure...), so it is "
            "shipped by value with cloudpickle, which this Python lacks: pip install cloudpickle"
        ) from None
    what = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', None) or type(fn).__name__}"
    # Functions of the DAG file (Airflow imports it under a private module
    # name no runtime has) are pickled by value, with what they refer to there.
    base = os.path.basename(dag_file) if dag_file else None
    dag_mods = [m for n, m in list(sys.modules.items()) if isinstance(m, ModuleType) and n != "__main__" and (
        n.startswith(_AIRFLOW_DAG_MODULE_PREFIX)
        or (base and os.path.basename(getattr(m, "__file__", None) or "") == base and _is_dag_module(m, dag_file)))]
    registered = []
    for m in dag_mods:
        try:
            cloudpickle.register_pickle_by_value(m)
            registered.append(m)
        except ValueError:
            pass
    try:
        data = cloudpickle.dumps(fn)
    except Exception as e:
        raise FunctionError(f"{param}={what} cannot be pickled to ship it to the runtimes: {type(e).__name__}: {e}") from e
    finally:
        for m in registered:
            cloudpickle.unregister_pickle_by_value(m)
    header = {"python": "%d.%d.%d" % sys.version_info[:3], "cloudpickle": cloudpickle.__version__, "name": what}
    blob = b"#skein-pickle " + json.dumps(header).encode() + b"\n" + data
    file = f"skein_fn_{hashlib.sha256(blob).hexdigest()[:16]}.pkl"
    ship = []
    for m in _used_modules(fn, dag_file):
        p = _ship_path(m)
        if p and p not in ship:
            ship.append(p)
    return FunctionRef(ref=f"py:@{file}", ship=tuple(ship), pickled=blob)


_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _looks_like_path(entry: str) -> bool:
    return os.sep in entry or "/" in entry or entry.endswith(".py") or entry.startswith(".")


def _search_dirs(dag_dir: str | None) -> list[str]:
    """The DAG file's folder, then the Python path (absolute entries, no duplicates)."""
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
    path or a module name looked up in the DAG file's folder, then on the Python
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
    where = f"the DAG file's folder ({dag_dir})" if dag_dir else "the DAG file's folder (unknown here)"
    if _looks_like_path(entry) or not _MODULE_NAME.match(entry):
        for d in _search_dirs(dag_dir):
            p = os.path.normpath(os.path.join(d, entry))
            if os.path.exists(p):
                return p
        raise FunctionError(
            f"include_modules: cannot find the path {entry!r}: looked in {where}, then on the Python path; "
            "give a path relative to the DAG file's folder, an absolute path, or a module name"
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
        "give a module name importable here, or a path (absolute, or relative to the DAG file's folder)"
    )


def _site_paths() -> tuple[str, ...]:
    paths = set()
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(os.path.realpath(p))
    return tuple(sorted(paths))


def resolve_includes(entries: list[str], dag_file: str | None) -> list[str]:
    """resolve_include over a list, without duplicates or standard-library modules."""
    out: list[str] = []
    for e in entries:
        p = resolve_include(e, dag_file)
        if p and p not in out:
            out.append(p)
    return out
