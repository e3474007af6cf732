# Skein's Python host: one long-lived interpreter serving calls from the Go
# runtime (pkg/pyhost). Standard library only.
#
# Protocol (see pkg/pyhost/doc.go): frames are a 4-byte big-endian length
# followed by the payload. Requests arrive on fd 3, replies leave on fd 4;
# stdout and stderr belong to the user's function and are captured as its
# log. After each call the host writes SYNC to stdout so that the Go side
# knows every byte of that call's output has been read.
import builtins
import collections
import importlib
import inspect
import io
import json
import os
import select
import struct
import sys
import time
import traceback

SYNC = b"\x1eskein-pyhost-sync\x1e\n"
MAX_FRAME = 1 << 30
READ_CHUNK = 1 << 20

_req = None
_resp = None
# Calls read from the request pipe and not started (sent while another
# ran: pipelined).
_pending = collections.deque()


class _Input:
    """The request pipe (fd 3), read in large pieces: the Go side sends a
    slot's calls while one runs (pipelined), so one read often brings
    several frames."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0
        self.eof = False

    def _fill(self, block):
        if self.eof:
            return False
        if not block and not select.select([self.fd], [], [], 0)[0]:
            return False
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
            return False
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data
        return True

    def _parse(self):
        avail = len(self.buf) - self.pos
        if avail < 4:
            return None
        (n,) = struct.unpack_from(">I", self.buf, self.pos)
        if n > MAX_FRAME:
            raise ValueError("pyhost: frame of %d bytes is too large" % n)
        if avail < 4 + n:
            return None
        start = self.pos + 4
        self.pos = start + n
        return bytes(self.buf[start:self.pos])

    def frame(self, block=True):
        """The next frame; None at the end of the pipe (block) or when no
        whole frame has arrived (not block)."""
        while True:
            f = self._parse()
            if f is not None:
                return f
            if not self._fill(block):
                if self.eof and len(self.buf) > self.pos:
                    raise EOFError("pyhost: request pipe closed inside a frame")
                return None


def read_frame():
    return _req.frame(block=True)


def write_frame(payload):
    # One write a frame, straight to the pipe (no buffer to flush).
    data = memoryview(struct.pack(">I", len(payload)) + payload)
    while data:
        data = data[os.write(4, data):]


# Built once: json.dumps with arguments other than the defaults builds an
# encoder at every call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
_encode_result = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_decode = json.JSONDecoder().decode


def send(msg):
    write_frame(_encode(msg).encode())


class _ChunkRaw(io.RawIOBase):
    """Pulls the chunk's bytes from the Go side, on demand."""

    def __init__(self):
        self._eof = False

    def readable(self):
        return True

    def readinto(self, b):
        if self._eof:
            return 0
        n = min(len(b), READ_CHUNK)
        if n == 0:
            return 0
        send({"op": "read", "n": n})
        data = read_frame()
        if data is None:
            raise EOFError("pyhost: request pipe closed during a read")
        if not data:
            self._eof = True
            return 0
        b[: len(data)] = data
        return len(data)


class Obj:
    """The partition a map call reads (Lithops' obj argument)."""

    def __init__(self, meta):
        self.bucket = meta.get("bucket", "")
        self.key = meta.get("key", "")
        self.part = meta.get("part", 0)
        self.parts = meta.get("parts", 0)
        self.start = meta.get("start", 0)
        self.end = meta.get("end", 0)
        self.size = meta.get("size", 0)
        self.url = meta.get("url", "")
        self.store = meta.get("store", "")
        self.group = meta.get("group", 0)
        self.chunk_size = self.end - self.start
        self.data_byte_range = (self.start, self.end - 1)
        self._stream = io.BufferedReader(_ChunkRaw(), buffer_size=READ_CHUNK)
        self.data_stream = self._stream

    def __repr__(self):
        return "Obj(url=%r, part=%d/%d, bytes=%d-%d)" % (
            self.url, self.part, self.parts, self.start, self.end)


_funcs = {}
# The job's shipped modules (first on sys.path): where pickled callables are.
_modules_dir = ""
PICKLE_MAGIC = b"#skein-pickle "


class _Unknown(Exception):
    pass


def _python():
    return "%s (Python %s)" % (sys.executable, sys.version.split()[0])


def load_pickled(ref):
    """The callable of ref "@FILE": FILE among the job's shipped modules holds it,
    pickled with cloudpickle, after an optional header line
    '#skein-pickle {"python": "3.11.7", "cloudpickle": "3.1.2", "name": "f"}'."""
    name = ref[1:]
    if not _modules_dir:
        raise _Unknown("py:%s names a pickled callable, but the job ships no modules" % ref)
    path = os.path.join(_modules_dir, name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise _Unknown("py:%s: the job's shipped modules have no file %r" % (ref, name))
    header = {}
    if data.startswith(PICKLE_MAGIC):
        nl = data.find(b"\n")
        try:
            header = json.loads(data[len(PICKLE_MAGIC):nl].decode())
        except ValueError:
            raise _Unknown("py:%s: unreadable header" % ref)
        data = data[nl + 1:]
    what = "py:%s%s" % (ref, " (%s)" % header["name"] if header.get("name") else "")
    want = str(header.get("python") or "")
    here = "%d.%d" % sys.version_info[:2]
    if want and ".".join(want.split(".")[:2]) != here:
        raise _Unknown("%s was pickled by Python %s and this runtime's Python is %s: a function shipped "
                       "by value needs the same Python minor version on both sides (set SKEIN_PYTHON on the "
                       "runtimes)" % (what, want, _python()))
    try:
        import cloudpickle  # noqa: F401  (the pickle refers to its functions)
    except ImportError:
        raise _Unknown("%s is a function shipped by value with cloudpickle, and this runtime's Python, %s, "
                       "has no cloudpickle module: install it there (python3 -m pip install cloudpickle) "
                       "or point SKEIN_PYTHON at a Python that has it" % (what, _python()))
    import pickle
    try:
        return pickle.loads(data)
    except ModuleNotFoundError as e:
        raise _Unknown("unpickling %s: no module named %r on the runtime (ship it with include_modules)"
                       % (what, e.name))
    except Exception as e:
        raise _Unknown("unpickling %s failed (%s: %s); it was pickled with cloudpickle %s, this runtime "
                       "has %s" % (what, type(e).__name__, e, header.get("cloudpickle", "?"),
                                   getattr(sys.modules.get("cloudpickle"), "__version__", "?")))


# The bytes of each pickled callable in _funcs, to tell on a switch of
# modules dir whether the new job's file of that name is the same.
_pickled = {}


def switch_modules(new):
    """Serve calls from another job's modules dir new (""
    for none) in this interpreter, if that cannot change what the calls
    see: every module imported from the current dir has a file of the same
    bytes at the same place in new. Returns False (the interpreter must be
    replaced) otherwise. Pickled callables whose file differs in new are
    forgotten."""
    global _modules_dir
    old = _modules_dir
    if old:
        prefix = os.path.join(old, "")
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if not isinstance(f, str) or not f.startswith(prefix):
                continue
            if not new or not _same_file(f, os.path.join(new, f[len(prefix):])):
                return False
        while old in sys.path:
            sys.path.remove(old)
    for ref in [r for r in _funcs if r.startswith("@")]:
        data = _read(os.path.join(new, ref[1:])) if new else None
        if data is None or data != _pickled.get(ref):
            del _funcs[ref]
            _pickled.pop(ref, None)
    if new:
        sys.path.insert(0, new)
        try:
            os.chdir(new)
        except OSError:
            pass
    _modules_dir = new
    importlib.invalidate_caches()
    return True


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _same_file(a, b):
    x = _read(a)
    return x is not None and x == _read(b)


def resolve(ref):
    f = _funcs.get(ref)
    if f is not None:
        return f
    if ref.startswith("@"):
        _pickled[ref] = _read(os.path.join(_modules_dir, ref[1:])) if _modules_dir else None
        obj = load_pickled(ref)
        if not callable(obj):
            raise _Unknown("py:%s holds a %s, not a callable" % (ref, type(obj).__name__))
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            sig = None
        f = (obj, sig)
        _funcs[ref] = f
        return f
    if ":" in ref:
        modname, attr = ref.split(":", 1)
    elif "." in ref:
        modname, attr = ref.rsplit(".", 1)
    else:
        raise _Unknown("function reference %r names no module" % ref)
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name and (modname == e.name or modname.startswith(e.name + ".")):
            raise _Unknown("no module named %r on the import path (ship it with include_modules)" % e.name)
        raise
    obj = mod
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _Unknown("module %r has no attribute %r" % (modname, attr))
    if not callable(obj):
        raise _Unknown("%s is not callable" % ref)
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        sig = None
    f = (obj, sig)
    _funcs[ref] = f
    return f


def _type_name(e):
    t = type(e)
    if t.__module__ in ("builtins", "__main__"):
        return t.__qualname__
    return t.__module__ + "." + t.__qualname__


def _error(kind, e, tb_skip=0, retryable=True):
    tb = e.__traceback__
    for _ in range(tb_skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    stack = "".join(traceback.format_exception(type(e), e, tb))
    return {"ok": False, "kind": kind, "type": _type_name(e), "message": str(e),
            "stack": stack, "retryable": retryable}


def call(req):
    try:
        func, sig = resolve(req["ref"])
    except _Unknown as e:
        return {"ok": False, "kind": "unknown_function", "type": "LookupError",
                "message": str(e), "retryable": False}
    except MemoryError as e:
        return _error("oom", e)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return _error("error", e, tb_skip=1)
    args = req.get("args") or []
    kwargs = req.get("kwargs") or {}
    if req.get("obj") is not None:
        kwargs["obj"] = Obj(req["obj"])
    if sig is not None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            return {"ok": False, "kind": "bad_input", "type": "TypeError",
                    "message": "%s: %s" % (req["ref"], e), "retryable": False}
    try:
        result = func(*args, **kwargs)
    except MemoryError as e:
        return _error("oom", e, tb_skip=1)
    except SystemExit as e:
        return {"ok": False, "kind": "error", "type": "SystemExit",
                "message": "function called exit(%r)" % (e.code,), "retryable": True}
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        return _error("error", e, tb_skip=1)
    try:
        text = _encode_result(result)
    except MemoryError as e:
        return _error("oom", e)
    except (TypeError, ValueError) as e:
        return {"ok": False, "kind": "error", "type": type(e).__name__,
                "message": "result of type %s is not JSON serializable: %s" % (type(result).__name__, e),
                "retryable": False}
    return {"ok": True, "_text": text}


def with_env(env, fn, *a):
    if not env:
        return fn(*a)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return fn(*a)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main():
    global _req, _resp, _modules_dir
    os.set_inheritable(3, False)
    os.set_inheritable(4, False)
    _req = _Input(3)
    _resp = 4

    mem = int(os.environ.pop("SKEIN_PYHOST_MEMORY_MB", "0") or "0")
    if mem > 0:
        import resource
        limit = mem * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    path = os.environ.pop("SKEIN_PYHOST_PATH", "")
    # The script's own directory is not the user's: drop it from the path.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    if path:
        sys.path.insert(0, path)
        _modules_dir = path

    send({"op": "ready", "pid": os.getpid(), "python": sys.version.split()[0]})
    pending = _pending
    skip = set()  # ids of pending calls whose callers gave up

    def take(frame):
        msg = _decode(frame.decode())
        if msg.get("op") == "skip":
            if any(r.get("id") == msg.get("id") for r in pending):
                skip.add(msg.get("id"))
        else:
            pending.append(msg)

    while True:
        while not pending:
            frame = _req.frame(block=True)
            if frame is None:
                return
            take(frame)  # a call, or a late skip notice (ignored)
        # Take what else was sent (more calls, skip notices) without
        # waiting, so that a call given up on while queued does not start.
        while True:
            frame = _req.frame(block=False)
            if frame is None:
                break
            take(frame)
        req = pending.popleft()
        path = req.get("path")
        deadline = req.get("deadline")
        if req.get("id") in skip:
            skip.discard(req.get("id"))
            resp = {"ok": False, "kind": "skipped"}
        elif deadline and time.time_ns() >= deadline:
            resp = {"ok": False, "kind": "expired"}  # it waited here past its deadline: not started
        elif path is not None and path != _modules_dir and not switch_modules(path):
            resp = {"ok": False, "kind": "restart"}  # another job's modules: a fresh interpreter
        else:
            resp = with_env(req.get("env"), call, req)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os.write(1, SYNC)
        text = resp.pop("_text", None)
        if text is None:
            send(resp)
        else:
            write_frame(b'{"ok":true,"result":' + text.encode() + b"}")


if __name__ == "__main__":
    builtins.__skein_pyhost__ = True
    main()
