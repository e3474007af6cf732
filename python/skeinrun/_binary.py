"""Where the submit binary is: SKEIN_SUBMIT, else the one this wheel carries."""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


class BinaryNotFound(RuntimeError):
    pass


def submit_path() -> str:
    """The submit binary to run: SKEIN_SUBMIT when set, else skeinrun/bin/submit
    from the wheel."""
    env = os.environ.get("SKEIN_SUBMIT")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise BinaryNotFound(f"SKEIN_SUBMIT={env} is not an executable file")
        return env
    p = os.path.join(_HERE, "bin", "submit")
    if os.path.isfile(p) and os.access(p, os.X_OK):
        return p
    raise BinaryNotFound(
        f"skeinrun has no submit binary ({p} is missing): install skeinrun from its platform wheel "
        "(pip install skeinrun, or pip install ./python in the Skein repository, which builds it with Go), "
        "or set SKEIN_SUBMIT to a submit binary"
    )
