"""The executor interface: results in task order on every backend, errors raised in the caller, progress
from the workers, a shared object sent once and memory-mapped, the temporary directory removed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from deleverage.errors import InvalidInput
from deleverage.lab.executor import (
    LocalExecutor,
    SerialExecutor,
    check_backend,
    make_executor,
)
from tests.lab import executor_kit as kit


@pytest.fixture(scope="module")
def local() -> LocalExecutor:
    with LocalExecutor(2) as executor:
        yield executor


def test_results_come_in_task_order_whatever_order_the_workers_finish(local) -> None:
    tasks = [(n, 0.3 if n == 0 else 0.0) for n in range(8)]  # the first task finishes last
    assert list(local.map(kit.square_after, tasks)) == [n * n for n in range(8)]
    assert list(SerialExecutor().map(kit.square_after, tasks)) == [n * n for n in range(8)]


def test_an_error_in_a_task_reaches_the_caller(local) -> None:
    with pytest.raises(ValueError, match="task 3 refused"):
        list(local.map(kit.fail_on, range(6)))
    assert list(local.map(kit.fail_on, [1, 2])) == [1, 2]  # the executor is still usable


def test_progress_messages_reach_the_callback(local) -> None:
    for executor in (local, SerialExecutor()):
        seen: list[tuple[str, int | None]] = []
        assert list(executor.map(kit.talk, [1, 2], on_progress=lambda label, n, seen=seen: seen.append((label, n)))) == [1, 2]
        for label in ("t1", "t2"):
            assert [n for lab, n in seen if lab == label] == [1, 2, 3, None]


def test_a_shared_object_is_loaded_once_per_worker_and_memory_mapped(local) -> None:
    payload = kit.make_payload()
    shared = local.share(payload)
    results = list(local.map(kit.inspect_shared, [(shared, r % 4) for r in range(12)]))
    assert [r["sum"] for r in results] == [int(payload["array"][r % 4].sum()) for r in range(12)]
    assert all(r["label"] == "scene" and r["same"] for r in results)
    assert not any(r["owns"] for r in results)  # a view of the mapped file, not a copy
    assert all(r["writeable"] for r in results)  # copy-on-write: writable, private
    assert {r["scratch"] for r in results} == {str(local._dir)}
    # a write in one task lands in that worker's private pages, never in the file others read
    assert sorted(local.map(kit.write_in_shared, [shared] * 2))[0] == 1
    fresh = local.share(payload)
    assert [r["sum"] for r in local.map(kit.inspect_shared, [(fresh, 0)])] == [int(payload["array"][0].sum())]


def test_serial_share_is_the_object_itself() -> None:
    payload = kit.make_payload()
    shared = SerialExecutor().share(payload)
    assert shared.get() is payload
    assert list(SerialExecutor().map(kit.inspect_shared, [(shared, 1)]))[0]["scratch"] is None


def test_close_removes_only_the_directory_the_executor_made(tmp_path) -> None:
    executor = LocalExecutor(2)
    shared = executor.share({"array": np.ones((2, 2)), "label": "x"})
    directory = Path(shared.path).parent
    assert directory.is_dir() and directory.name.startswith("deleverage-executor-")
    executor.close()
    assert not directory.exists()


@pytest.mark.parametrize(("backend", "address", "field"), [
    ("spark", None, "backend"), ("local", "auto", "address"), ("ray", "nohost", "address"),
    ("ray", "host:99999", "address"),
])
def test_bad_backend_or_address_is_refused_by_name(backend, address, field) -> None:
    with pytest.raises(InvalidInput, match=field):
        check_backend(backend, address)


def test_workers_must_be_a_whole_number() -> None:
    with pytest.raises(InvalidInput, match="workers"):
        make_executor("local", workers=0)


def test_ray_not_installed_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(InvalidInput, match=r"deleverage\[ray\]"):
        make_executor("ray", workers=1)
