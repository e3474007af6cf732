"""Turn what a DAG author passes as a function into a Skein function reference.

A Python callable becomes ``py:module:function`` plus the file (or top-level
package directory) that has to be shipped to the runtimes so that they can
import it. A string is taken as a reference as it is: ``py:module:function``,
``module:function`` (``py:`` is added) or a plain name of a Go built-in
(``add``, ``sum``, ``wordcount``...).

Functions that a runtime cannot import by name are refused with a message
that says why and what to do: lambdas, functions nested in other functions,
functions defined in ``__main__`` or in the DAG file itself (Airflow loads a
DAG file under a private module name that no runtime can import).
"""

from __future__ import annotations

import importlib.util
import inspect
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
    """A function as the submit CLI names it, and the files to ship with it."""

    ref: str
    ship: tuple[str, ...] = field(default_factory=tuple)


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
        raise FunctionError(f"{param}={fn!r} is a class; pass a module-level function")
    target = inspect.unwrap(fn)
    name = getattr(fn, "__name__", None) or getattr(target, "__name__", None)
    qualname = getattr(fn, "__qualname__", None) or name
    module_name = getattr(fn, "__module__", None) or getattr(target, "__module__", None)
    if not name or not module_name:
        raise FunctionError(
            f"{param}={fn!r} has no module and name that a runtime could import; "
            "pass a function defined at the top level of a module"
        )
    if name == "<lambda>":
        raise FunctionError(
            f"{param} is a lambda, which cannot be shipped to the Skein runtimes: define it with def "
            "at the top level of a separate module (e.g. my_functions.py next to the DAG file) and import it"
        )
    if "<locals>" in (qualname or "") or "." in (qualname or ""):
        raise FunctionError(
            f"{param}={module_name}.{qualname} is nested in another function or class and cannot be "
            "imported by the Skein runtimes: move it to the top level of a separate module and import it"
        )
    if module_name == "__main__" or module_name.startswith(_AIRFLOW_DAG_MODULE_PREFIX):
        raise FunctionError(
            f"{param}={name} is defined in the DAG file (module {module_name}), which the Skein runtimes "
            "cannot import: move it to a separate module (e.g. my_functions.py next to the DAG file) and import it"
        )
    module = sys.modules.get(module_name)
    src = None
    try:
        src = inspect.getsourcefile(target)
    except TypeError:
        src = None
    if dag_file and (_same_file(src, dag_file) or _same_file(getattr(module, "__file__", None), dag_file)):
        raise FunctionError(
            f"{param}={name} is defined in the DAG file {dag_file}, which the Skein runtimes cannot import: "
            "move it to a separate module (e.g. my_functions.py next to the DAG file) and import it"
        )
    if module is None:
        raise FunctionError(f"{param}={name}: its module {module_name} is not imported; cannot locate it to ship it")
    if getattr(module, name, None) is None:
        raise FunctionError(
            f"{param}={name} cannot be found as {module_name}.{name}: the runtimes import functions by "
            "module and name, so it must be a module-level attribute"
        )
    ship = _ship_path(module)
    return FunctionRef(ref=f"py:{module_name}:{name}", ship=(ship,) if ship else ())


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
