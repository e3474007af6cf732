"""Lithops' documented examples (docs/source/functions.md, the README and
docs/source/api_futures.rst of Lithops) give Lithops' documented results,
in each mode: a warm private installation, per-job embedded submit, and a
coordinator and runtime on the NATS test broker."""

from __future__ import annotations

import os
import time

import pytest

import helpers_remote
import skeinrun
from skeinrun import ALL_COMPLETED, ALWAYS, ANY_COMPLETED


def sum_list(list_of_numbers):
    total = 0
    for num in list_of_numbers:
        total = total + num
    return total


def sum_list_mult(list_of_numbers, x):
    total = 0
    for num in list_of_numbers:
        total = total + num
    return total * x


def my_function(x, y):
    return x + y


def sum_x_y(x, y):
    return x + y


y = 10


def sum_x_global_y(x):
    return x + y


def my_map_function(x):
    return x + 7


def my_reduce_function(results):
    total = 0
    for map_result in results:
        total = total + map_result
    return total


def test_call_async(fexec):
    fexec.call_async(sum_list, ([1, 2, 3, 4, 5],))
    assert fexec.get_result() == 15
    fexec.call_async(sum_list_mult, ([1, 2, 3, 4, 5], 5))
    assert fexec.get_result() == 75
    fexec.call_async(sum_list_mult, {"list_of_numbers": [1, 2, 3, 4, 5], "x": 3})
    assert fexec.get_result() == 45
    f = fexec.call_async(lambda: 42, ())
    assert f.result() == 42


def test_map_iterdata_forms(fexec):
    # Tuples are positional arguments, dicts keyword arguments, anything
    # else (a list too) the single argument.
    assert fexec.map(my_function, [(1, 2), (3, 4), (5, 6)]).get_result() == [3, 7, 11]
    assert fexec.map(my_function, [{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6}]).get_result() == [3, 7, 11]
    assert fexec.map(sum_list, [([1, 2],), ([3, 4],), ([5, 6],)]).get_result() == [3, 7, 11]
    assert fexec.map(sum_list, [[1, 2], [3, 4], [5, 6]]).get_result() == [3, 7, 11]
    assert fexec.map(sum_list_mult, [([1, 2, 3, 4, 5], 2), ([6, 7, 8, 9, 10], 3),
                                     ([11, 12, 13, 14, 15], 4)]).get_result() == [30, 120, 260]
    kwargs = [{"list_of_numbers": [1, 2, 3, 4, 5], "x": 2}, {"list_of_numbers": [6, 7, 8, 9, 10], "x": 3},
              {"list_of_numbers": [11, 12, 13, 14, 15], "x": 4}]
    assert fexec.map(sum_list_mult, kwargs).get_result() == [30, 120, 260]
    # Common parameters: a global, extra_args as a tuple or a dict.
    assert fexec.map(sum_x_global_y, [0, 1, 2]).get_result() == [10, 11, 12]
    assert fexec.map(sum_x_y, [0, 1, 2], extra_args=(10,)).get_result() == [10, 11, 12]
    assert fexec.map(my_function, [{"x": 1}, {"x": 3}, {"x": 5}], extra_args={"y": 3}).get_result() == [4, 6, 8]
    # Ranges, sets and generators are lists of single arguments.
    assert fexec.map(lambda v: v * v, range(5)).get_result() == [0, 1, 4, 9, 16]
    assert sorted(fexec.map(lambda v: -v, {3, 1, 2}).get_result()) == [-3, -2, -1]
    assert fexec.map(lambda v: v + 1, (i for i in range(3))).get_result() == [1, 2, 3]


def test_map_bad_arguments_raise_as_lithops():
    with skeinrun.FunctionExecutor(warm=False) as fexec:
        with pytest.raises(ValueError, match="Check the args names"):
            fexec.map(my_function, [{"x": 1}])
        with pytest.raises(TypeError):
            fexec.map(my_function, [(1, 2, 3)])
        # Elements are checked by shape (how many arguments, which
        # keywords): one of another shape after good ones is still caught.
        with pytest.raises(TypeError):
            fexec.map(my_function, [(1, 2), (3, 4), (5, 6, 7)])
        with pytest.raises(TypeError):
            fexec.map(my_function, [{"x": 1, "y": 2}, {"x": 1, "y": 2, "z": 3}])


def test_map_reduce(fexec):
    fexec.map_reduce(my_map_function, [1, 2, 3, 4], my_reduce_function)
    assert fexec.get_result() == 38
    fs = fexec.map_reduce(my_map_function, range(100), lambda results: max(results))
    assert fs.get_result() == 106
    assert len(fs) == 101 and all(f.done for f in fs)


def test_any_python_values(fexec):
    # Arguments and results are pickles: sets, bytes, tuples, objects.
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    fs = fexec.map(lambda p: (p.x + p.y, {p.x}, b"%d" % p.y), [Point(1, 2), Point(3, 4)])
    assert fs.get_result() == [(3, {1}, b"2"), (7, {3}, b"4")]


def test_closure_and_several_jobs(fexec):
    def make(k):
        return lambda v: v * k

    a = fexec.map(make(2), [1, 2])
    b = fexec.map(make(5), [1, 2])
    c = fexec.call_async(make(7), 3)
    assert b.get_result() == [5, 10]
    assert fexec.get_result([c]) == 21
    assert a.get_result() == [2, 4]
    # get_result() without futures: all the results not read yet, in order.
    fexec.map(make(3), [1])
    assert fexec.get_result() == [2, 4, 5, 10, 21, 3]
    assert fexec.get_result() == []


def slow(t):
    time.sleep(t)
    return t


def test_wait_modes(fexec):
    fast = fexec.map(slow, [0])
    late = fexec.map(slow, [3])
    t0 = time.monotonic()
    done, not_done = fexec.wait(fast + late, return_when=ALWAYS)
    assert time.monotonic() - t0 < 1
    assert late[0] in not_done
    done, not_done = fexec.wait(fast + late, return_when=ANY_COMPLETED)
    assert fast[0] in done and late[0] in not_done
    done, not_done = fexec.wait(late, return_when=ALL_COMPLETED, timeout=0.2)
    assert not done and late[0] in not_done
    done, not_done = fexec.wait(fast + late, return_when=ALL_COMPLETED)
    assert len(done) == 2 and not not_done
    assert fexec.get_result(fast + late) == [0, 3]


def test_calls_of_one_job_complete_as_they_land(fexec):
    # One job: the quick calls complete while the slow one still runs
    # (submit --stream), so ANY_COMPLETED and as_completed need not wait
    # for the job's end.
    fs = fexec.map(slow, [0, 0, 0, 4])
    t0 = time.monotonic()
    done, not_done = fexec.wait(fs, return_when=ANY_COMPLETED)
    assert time.monotonic() - t0 < 3.5, "ANY_COMPLETED waited for the whole job"
    assert fs[3] in not_done and done
    order = [f for f in skeinrun.as_completed(fs, timeout=60)]
    assert order[-1] is fs[3] and sorted(f.call_id for f in order) == sorted(f.call_id for f in fs)
    assert fexec.get_result(fs) == [0, 0, 0, 4]


def failing(x):
    if x == 2:
        raise KeyError(f"row {x} is missing")
    return x


def test_exception_with_remote_traceback(fexec):
    fs = fexec.map(failing, [1, 2, 3])
    with pytest.raises(KeyError) as info:
        fexec.get_result(fs)
    cause = info.value.__cause__
    assert isinstance(cause, skeinrun.RemoteTraceback)
    assert "in failing" in cause.tb and 'raise KeyError(f"row {x} is missing")' in cause.tb
    assert os.path.basename(__file__) in cause.tb
    # The other calls ran; throw_except=False gives None for the failed one.
    assert fexec.get_result(fs, throw_except=False) == [1, None, 3]
    done, not_done = fexec.wait(fs, throw_except=False)
    assert len(done) == 3 and [f.error for f in fs] == [False, True, False]
    with pytest.raises(KeyError):
        fs[1].result()
    with pytest.raises(KeyError):
        fexec.wait(fs)


def raises_user_class(x):
    raise helpers_remote.BadRow(f"bad row {x}")


def imports_inside(x):
    import helpers_remote as h  # found by no analysis: include_modules names it
    return h.scale(x)


def test_exception_class_from_a_shipped_module(fexec):
    # helpers_remote is used by name, so it is shipped with the job.
    fut = fexec.call_async(raises_user_class, 7)
    with pytest.raises(helpers_remote.BadRow, match="bad row 7"):
        fut.result()
    assert fexec.call_async(imports_inside, 2, include_modules=["helpers_remote"]).result() == 6


def test_retrying_executor(fexec, tmp_path):
    counter = tmp_path / "attempts"
    counter.write_text("")
    os.chmod(tmp_path, 0o777)
    os.chmod(counter, 0o666)

    def flaky(x, fails):
        with open(counter, "a") as f:
            f.write(f"{x}\n")
        tries = open(counter).read().split().count(str(x))
        if tries <= fails:
            raise RuntimeError(f"attempt {tries} of {x}")
        return x * 10

    rexec = skeinrun.RetryingFunctionExecutor(fexec)
    fs = rexec.map(flaky, [1, 2], extra_args=(2,), retries=2)
    done, pending = rexec.wait(fs)
    assert not pending and [f.result() for f in fs] == [10, 20]
    assert all(f.failure_count == 2 for f in fs)
    fs = rexec.map(flaky, [3], extra_args=(5,), retries=1)
    with pytest.raises(RuntimeError, match="attempt 2 of 3"):
        rexec.get_result(fs)


def test_timeout_and_memory_flags(fexec):
    fut = fexec.call_async(slow, 5, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        fut.result()
    assert time.monotonic() - t0 < 4.5
    assert fexec.call_async(lambda: os.environ["GREETING"], (), extra_env={"GREETING": "hi"}).result() == "hi"
    assert fexec.map(lambda v: len(bytearray(v)), [10], runtime_memory=512).get_result() == [10]


def uses_id_and_storage(x, id, storage):
    storage.put_object("skeinrun-test", f"k{id}", str(x * 2))
    return id, storage.get_object("skeinrun-test", f"k{id}").decode()


def test_special_parameters(fexec, tmp_path):
    # id is the call's index; storage a Storage client (here, the local root).
    assert fexec.map(uses_id_and_storage, [5, 6]).get_result() == [(0, "10"), (1, "12")]


def test_storage_objects_with_chunks(fexec, tmp_path):
    d = tmp_path / "books"
    d.mkdir()
    (d / "a.txt").write_text("one two three\nfour five\nsix\n")
    (d / "b.txt").write_text("alpha beta\ngamma\n")
    os.chmod(tmp_path, 0o755)

    def count(obj):
        return obj.key.split("/")[-1], sum(len(line.split()) for line in obj.data_stream)

    res = fexec.map(count, [f"local://{d}/"]).get_result()
    assert sorted(res) == [("a.txt", 6), ("b.txt", 3)]
    fs = fexec.map(count, [f"local://{d}/a.txt"], obj_chunk_number=2)
    assert len(fs) == 2 and sum(n for _, n in fs.get_result()) == 6
    per_obj = fexec.map_reduce(count, [f"local://{d}/"], lambda rs: sum(n for _, n in rs), obj_chunk_number=2,
                               obj_reduce_by_key=True)
    assert sorted(per_obj.get_result()) == [3, 6]


def test_plot_and_clean(fexec, tmp_path):
    fs = fexec.map(lambda v: v, [1, 2, 3])
    fs.get_result()
    files = fexec.plot(fs, dst=str(tmp_path))
    assert len(files) == 1 and open(files[0]).read().lstrip().lower().startswith("<!doctype html")
    job_dir = fs[0]._job.dir
    assert os.path.isdir(job_dir)
    fexec.clean(fs)
    assert not os.path.exists(job_dir)


def test_config_keys_without_meaning_are_refused():
    with pytest.raises(skeinrun.ConfigError, match="'aws_lambda'"):
        skeinrun.FunctionExecutor(backend="aws_lambda")
    with pytest.raises(skeinrun.ConfigError, match="lithops.chunksize"):
        skeinrun.FunctionExecutor(config={"lithops": {"backend": "localhost", "chunksize": 2}})
    with pytest.raises(skeinrun.ConfigError, match="ibm_cf"):
        skeinrun.FunctionExecutor(config={"ibm_cf": {"endpoint": "x"}})
    with pytest.raises(skeinrun.ConfigError, match="'spawn_threads'"):
        skeinrun.FunctionExecutor(spawn_threads=3)
    with pytest.raises(skeinrun.ConfigError, match="obj_newline"):
        skeinrun.FunctionExecutor(warm=False).map(lambda v: v, [1], obj_newline="\r")
    ex = skeinrun.FunctionExecutor(config={"lithops": {"backend": "localhost", "workers": 2}}, warm=False)
    assert ex.max_workers == 2
    assert ex.map(lambda v: v, [1]).get_result() == [1]


def nested(n):
    from skeinrun import FunctionExecutor
    with FunctionExecutor(warm=False) as inner:
        return inner.map(lambda v: v + 100, range(n)).get_result()


def test_nested_jobs():
    with skeinrun.FunctionExecutor() as fexec:
        assert fexec.call_async(nested, 3).result() == [100, 101, 102]


def test_max_workers_runs_in_parallel():
    with skeinrun.FunctionExecutor(max_workers=4) as fexec:
        t0 = time.monotonic()
        assert fexec.map(slow, [1, 1, 1, 1]).get_result() == [1, 1, 1, 1]
        assert time.monotonic() - t0 < 3.5


def test_unreachable_bus_fails_the_futures_fast():
    with skeinrun.FunctionExecutor(bus="nats://127.0.0.1:9") as fexec:
        fut = fexec.call_async(lambda: 1, ())
        t0 = time.monotonic()
        with pytest.raises(skeinrun.JobError) as info:
            fut.result()
        assert info.value.exit_code == 5 and "cannot reach the bus" in str(info.value)
        assert time.monotonic() - t0 < 30


def test_config_file_and_skein_section(tmp_path):
    cfg = tmp_path / "lithops.json"
    cfg.write_text('{"lithops": {"backend": "localhost", "execution_timeout": 0.5}, "skein": {"warm": false}}')
    with skeinrun.FunctionExecutor(config_file=str(cfg)) as fexec:
        assert fexec.call_async(lambda: 5, ()).result() == 5
        assert fexec.warm_bus is None
        with pytest.raises(TimeoutError):  # execution_timeout is each call's timeout
            fexec.call_async(slow, 3).result()
    bad = tmp_path / "bad.json"
    bad.write_text('{"skein": {"warm": true, "colour": "blue"}}')
    with pytest.raises(skeinrun.ConfigError, match="skein.colour"):
        skeinrun.FunctionExecutor(config_file=str(bad))


def test_on_rabbitmq(amqp_bus):
    # The same executor on a coordinator and runtime on RabbitMQ.
    with skeinrun.FunctionExecutor(bus=amqp_bus) as fexec:
        fexec.map(my_function, [(1, 2), (3, 4), (5, 6)])
        assert fexec.get_result() == [3, 7, 11]
        fexec.map_reduce(my_map_function, [1, 2, 3, 4], my_reduce_function)
        assert fexec.get_result() == 38
        with pytest.raises(KeyError) as info:
            fexec.call_async(failing, 2).result()
        assert "in failing" in info.value.__cause__.tb
