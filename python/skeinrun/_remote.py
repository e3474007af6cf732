"""What runs on the runtimes: the envelope around a user's function.

This module travels by value with every pickled function (cloudpickle's
register_pickle_by_value), so a runtime needs only cloudpickle, not skeinrun.
Keep it to the standard library.

A map task's arguments arrive as one keyword, ``p``: the base64 of a pickle of
(call_id, args, kwargs), so that any Python value travels as Lithops carries
it. The result goes back as a string: ``"r"`` and the base64 pickle of the
return value, or ``"e"`` and the base64 pickle of the exception with its
formatted remote traceback. A function's exception is a result, as in
Lithops: the other calls of the job go on, and the caller re-raises it.
"""

import base64
import inspect
import pickle
import traceback


def _dumps(value):
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def encode_result(value):
    return "r" + _b64(_dumps(value))


def encode_error(exc, skip=1):
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    exc.__traceback__ = None
    try:
        data = _dumps((exc, text))
        pickle.loads(data)  # an exception whose constructor cannot take its args back
    except Exception:
        data = pickle.dumps((None, (type(exc).__module__ + "." + type(exc).__qualname__, str(exc), text)))
    return "e" + _b64(data)


def _wants(fn):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    return {n for n in ("id", "storage", "obj") if n in params}


def make_map(fn, storage_config=None):
    """The map envelope of fn: decodes a call's arguments, adds the special
    parameters Lithops gives (id, storage, obj) when fn names them, runs fn
    and encodes its result or exception."""
    wants = _wants(fn)

    def skeinrun_map(p=None, obj=None, **raw):
        try:
            if p is not None:
                call_id, args, kwargs = pickle.loads(base64.b64decode(p))
            else:
                call_id, args, kwargs = (obj.part if obj is not None else 0), (), dict(raw)
            if obj is not None:
                kwargs["obj"] = obj
            if "id" in wants and "id" not in kwargs:
                kwargs["id"] = call_id
            if "storage" in wants and "storage" not in kwargs:
                kwargs["storage"] = Storage(storage_config)
            return encode_result(fn(*args, **kwargs))
        except Exception as e:
            return encode_error(e)

    return skeinrun_map


def make_reduce(fn, extra_args=None, storage_config=None):
    """The reduce envelope: decodes the map results (re-raising the first
    map error as the reducer's result, as Lithops does not reduce a failed
    map), calls fn(results, ...) and encodes what it returns."""
    wants = _wants(fn)

    def skeinrun_reduce(results, **kw):
        try:
            values = []
            for r in results:
                if isinstance(r, str) and r[:1] == "e":
                    return r
                values.append(pickle.loads(base64.b64decode(r[1:])) if isinstance(r, str) and r[:1] == "r" else r)
            args, kwargs = [values], {}
            if isinstance(extra_args, dict):
                kwargs.update(extra_args)
            elif extra_args is not None:
                args.extend(extra_args)
            if "id" in wants:
                kwargs.setdefault("id", 0)
            if "storage" in wants:
                kwargs.setdefault("storage", Storage(storage_config))
            return encode_result(fn(*args, **kwargs))
        except Exception as e:
            return encode_error(e)

    return skeinrun_reduce


class Storage:
    """Lithops' Storage client over Skein's local storage: buckets are
    directories under the root (SKEIN_STORAGE_LOCAL_ROOT's default,
    ``~/.cache/skein/storage``), the same place ``local://bucket/key`` names in
    iterdata. The calls and their arguments are Lithops' common ones."""

    def __init__(self, config=None):
        import os
        config = config or {}
        root = config.get("local_root") or os.environ.get("SKEIN_STORAGE_LOCAL_ROOT")
        if not root:
            cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            root = os.path.join(cache, "skein", "storage")
        self.root = root
        self.config = {"local_root": root}
        self.bucket = config.get("bucket") or "skein-storage"
        self.backend = "localhost"

    def _path(self, bucket, key):
        import os
        bucket = bucket or self.bucket
        parts = [p for p in str(key).split("/") if p]
        if not parts or any(p in (".", "..") for p in parts) or "/" in bucket or bucket in ("", ".", ".."):
            raise ValueError("bad bucket or key: %r %r" % (bucket, key))
        return os.path.join(self.root, bucket, *parts)

    def put_object(self, bucket, key, body):
        import os
        path = self._path(bucket, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(body, str):
            body = body.encode()
        elif hasattr(body, "read"):
            body = body.read()
        tmp = path + ".part-%d" % os.getpid()
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, path)

    def get_object(self, bucket, key, stream=False, extra_get_args=None):
        path = self._path(bucket, key)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise StorageNoSuchKeyError(bucket or self.bucket, key) from None
        rng = (extra_get_args or {}).get("Range")
        if rng:
            start, _, end = rng.replace("bytes=", "").partition("-")
            f.seek(int(start))
            data = f.read(int(end) - int(start) + 1) if end else f.read()
            f.close()
            return data
        if stream:
            return f
        with f:
            return f.read()

    def head_object(self, bucket, key):
        import os
        try:
            st = os.stat(self._path(bucket, key))
        except FileNotFoundError:
            raise StorageNoSuchKeyError(bucket or self.bucket, key) from None
        return {"content-length": str(st.st_size), "LastModified": st.st_mtime}

    def delete_object(self, bucket, key):
        import os
        try:
            os.remove(self._path(bucket, key))
        except FileNotFoundError:
            pass

    def delete_objects(self, bucket, key_list):
        for k in key_list:
            self.delete_object(bucket, k)

    def list_keys(self, bucket, prefix=None):
        import os
        base = os.path.join(self.root, bucket or self.bucket)
        out = []
        for root, _, names in os.walk(base):
            for n in names:
                if ".part-" in n:
                    continue
                k = os.path.relpath(os.path.join(root, n), base).replace(os.sep, "/")
                if not prefix or k.startswith(prefix):
                    out.append(k)
        return sorted(out)

    def list_objects(self, bucket, prefix=None):
        import os
        base = os.path.join(self.root, bucket or self.bucket)
        return [{"Key": k, "Size": os.path.getsize(os.path.join(base, *k.split("/")))}
                for k in self.list_keys(bucket, prefix)]

    def put_cloudobject(self, body, bucket=None, key=None):
        import uuid
        bucket = bucket or self.bucket
        key = key or "cloudobjects/%s" % uuid.uuid4().hex
        self.put_object(bucket, key, body)
        return CloudObject("localhost", bucket, key)

    def get_cloudobject(self, cloudobject, stream=False):
        return self.get_object(cloudobject.bucket, cloudobject.key, stream=stream)

    def delete_cloudobject(self, cloudobject):
        self.delete_object(cloudobject.bucket, cloudobject.key)


class CloudObject:
    def __init__(self, backend, bucket, key):
        self.backend, self.bucket, self.key = backend, bucket, key

    def __repr__(self):
        return "<CloudObject %s://%s/%s>" % (self.backend, self.bucket, self.key)


class StorageNoSuchKeyError(Exception):
    def __init__(self, bucket, key):
        super().__init__("no such key %r in bucket %r" % (key, bucket))
        self.bucket, self.key = bucket, key

    def __reduce__(self):
        return (StorageNoSuchKeyError, (self.bucket, self.key))
