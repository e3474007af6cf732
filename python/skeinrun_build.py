"""The build backend of the skeinrun wheel (PEP 517), also a script.

The wheel is a platform wheel: the skeinrun package and, as
skeinrun/bin/submit, the submit binary built from this repository's Go code
(python/cmd/skeinrun-submit: submit, with the coordinator and runtime behind
the same executable for the executor's warm local installation). Go is
needed to build the wheel, never to install it.

    python skeinrun_build.py OUT_DIR     # writes OUT_DIR/skeinrun-<v>-py3-none-<platform>.whl

The Go module is the directory above this file (the one holding go.mod), or
SKEIN_SOURCE. GOOS and GOARCH pick the target (default: go env's). Only the
standard library is used, so that pip needs nothing to build it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

NAME = "skeinrun"
HERE = os.path.dirname(os.path.abspath(__file__))

# The platform tags of a static (CGO_ENABLED=0) Go binary.
_PLATFORMS = {
    ("linux", "amd64"): "manylinux_2_17_x86_64.manylinux2014_x86_64.musllinux_1_1_x86_64",
    ("linux", "arm64"): "manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64",
    ("darwin", "amd64"): "macosx_10_12_x86_64",
    ("darwin", "arm64"): "macosx_11_0_arm64",
}


def _version() -> str:
    with open(os.path.join(HERE, NAME, "_version.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("skeinrun/_version.py has no __version__")


def _metadata(version: str) -> str:
    with open(os.path.join(HERE, "README.md")) as f:
        readme = f.read()
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {version}\n"
        "Summary: Lithops' FunctionExecutor on Skein: map, map-reduce and calls of any Python callable, "
        "with the submit binary inside\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.9\n"
        "Requires-Dist: cloudpickle>=2.0\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme
    )


def _source() -> str:
    src = os.environ.get("SKEIN_SOURCE") or os.path.dirname(HERE)
    if not os.path.isfile(os.path.join(src, "go.mod")):
        raise RuntimeError(
            f"skeinrun: no go.mod in {src}: the wheel is built from the Skein repository "
            "(build from its python/ folder, or set SKEIN_SOURCE to the repository)"
        )
    return src


def _go_env(src: str, key: str) -> str:
    if os.environ.get(key):
        return os.environ[key]
    return subprocess.check_output(["go", "env", key], cwd=src, text=True).strip()


def _build_binary(src: str, out: str) -> tuple[str, str]:
    goos, goarch = _go_env(src, "GOOS"), _go_env(src, "GOARCH")
    env = dict(os.environ, CGO_ENABLED="0", GOOS=goos, GOARCH=goarch)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./python/cmd/skeinrun-submit"],
        cwd=src, env=env, check=True, stdout=sys.stderr,
    )
    return goos, goarch


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build(out_dir: str) -> str:
    """Build the wheel into out_dir and return its file name."""
    version = _version()
    src = _source()
    with tempfile.TemporaryDirectory(prefix="skeinrun-build-") as tmp:
        binary = os.path.join(tmp, "submit")
        goos, goarch = _build_binary(src, binary)
        plat = _PLATFORMS.get((goos, goarch))
        if plat is None:
            raise RuntimeError(f"skeinrun: no wheel platform tag for GOOS={goos} GOARCH={goarch}")
        files: list[tuple[str, bytes, int]] = []
        pkg = os.path.join(HERE, NAME)
        for root, dirs, names in os.walk(pkg):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and d != "bin")
            for n in sorted(names):
                if n.endswith((".pyc", ".pyo")):
                    continue
                p = os.path.join(root, n)
                rel = os.path.relpath(p, HERE).replace(os.sep, "/")
                with open(p, "rb") as f:
                    files.append((rel, f.read(), 0o644))
        with open(binary, "rb") as f:
            files.append((f"{NAME}/bin/submit", f.read(), 0o755))
        info = f"{NAME}-{version}.dist-info"
        files.append((f"{info}/METADATA", _metadata(version).encode(), 0o644))
        files.append((f"{info}/WHEEL", (
            "Wheel-Version: 1.0\nGenerator: skeinrun_build\nRoot-Is-Purelib: false\n"
            + "".join(f"Tag: py3-none-{p}\n" for p in plat.split("."))).encode(), 0o644))
        files.append((f"{info}/top_level.txt", f"{NAME}\n".encode(), 0o644))
        record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d, _ in files) + f"{info}/RECORD,,\n"
        files.append((f"{info}/RECORD", record.encode(), 0o644))
        name = f"{NAME}-{version}-py3-none-{plat}.whl"
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, name)
        with zipfile.ZipFile(path + ".part", "w", zipfile.ZIP_DEFLATED) as z:
            for n, d, mode in files:
                zi = zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0))
                zi.external_attr = (0o100000 | mode) << 16
                zi.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(zi, d)
        os.replace(path + ".part", path)
        return name


# PEP 517 hooks.
def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return build(wheel_directory)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    version = _version()
    info = os.path.join(metadata_directory, f"{NAME}-{version}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(_metadata(version))
    return os.path.basename(info)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python skeinrun_build.py OUT_DIR")
    print(os.path.join(sys.argv[1], build(sys.argv[1])))
