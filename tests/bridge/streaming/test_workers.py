"""Threads of the offline conversions: tasks side by side stop together on the first failure; reading ahead
keeps each prepared result intact until the caller has moved past it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from bridge.errors import CheckpointError
from bridge.streaming.pieces import FileSpan, Scratch
from bridge.streaming.workers import Stopped, ahead, check, default_workers, run_all


def test_run_all_returns_results_in_task_order_on_any_number_of_threads() -> None:
    def task(i: int):
        def run(stop: threading.Event) -> int:
            time.sleep(0.01 * (3 - i))  # finish in reverse order
            return i * i
        return run

    for workers in (1, 2, 4):
        assert run_all([task(i) for i in range(4)], workers=workers) == [0, 1, 4, 9]
    assert default_workers(1) == 1 and 1 <= default_workers(64) <= 64


def test_the_first_failure_stops_the_other_tasks_and_is_what_is_raised() -> None:
    steps: list[int] = []
    started = threading.Event()

    def long_task(stop: threading.Event) -> str:
        started.set()
        for step in range(500):  # 5 s unless stopped
            check(stop)
            steps.append(step)
            time.sleep(0.01)
        return "finished"

    def failing(stop: threading.Event) -> str:
        started.wait(5)
        raise CheckpointError("disk full")

    began = time.monotonic()
    with pytest.raises(CheckpointError, match="disk full"):
        run_all([long_task, failing], workers=2)
    assert time.monotonic() - began < 2.5 and len(steps) < 250  # stopped early, not run to the end
    count = len(steps)
    time.sleep(0.05)
    assert len(steps) == count  # and nothing runs after run_all returned


def test_tasks_not_yet_started_are_skipped_after_a_failure() -> None:
    ran: list[str] = []

    def failing(stop: threading.Event) -> None:
        raise ValueError("bad stage")

    def later(stop: threading.Event) -> None:
        check(stop)
        ran.append("later")

    with pytest.raises(ValueError, match="bad stage"):
        run_all([failing, *[later] * 20], workers=2)
    assert len(ran) < 20
    with pytest.raises(ValueError, match="bad stage"):  # inline: the tasks after the failure never start
        run_all([failing, later], workers=1)
    with pytest.raises(Stopped):
        check(_set())


def _set() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@pytest.mark.parametrize("enabled", [True, False])
def test_ahead_keeps_each_result_intact_while_the_next_is_read(tmp_path: Path, enabled: bool) -> None:
    data = torch.arange(64 * 1024, dtype=torch.int32)
    path = tmp_path / "blob"
    path.write_bytes(data.numpy().tobytes())
    items = list(range(16))
    spans = {i: FileSpan(path, i * 4096 * 4, torch.int32, (4096,)) for i in items}
    prepared: list[int] = []

    def prepare(i: int, scratch: Scratch) -> torch.Tensor:
        prepared.append(i)
        return scratch.read([spans[i]])[0]

    seen = []
    for i, tensor in ahead(items, prepare, enabled=enabled):
        time.sleep(0.002)  # give the helper time to read the next item meanwhile
        assert torch.equal(tensor, data[i * 4096:(i + 1) * 4096]), i
        assert max(prepared) <= i + 1  # never more than one item ahead
        seen.append(i)
    assert seen == items and prepared == items


def test_ahead_raises_a_prepare_error_at_its_item_and_stops() -> None:
    def prepare(i: int, scratch: Scratch) -> int:
        if i == 3:
            raise CheckpointError("truncated")
        return i

    seen = []
    with pytest.raises(CheckpointError, match="truncated"):
        for i, result in ahead(range(10), prepare):
            seen.append(result)
    assert seen == [0, 1, 2]
    assert list(ahead([], prepare)) == []
