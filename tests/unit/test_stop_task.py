"""``stop_task`` ends a task even when a cancellation is swallowed (Python 3.11's ``wait_for``
race, execution/tasks.py), and never hangs its caller on a task that refuses to end."""

from __future__ import annotations

import asyncio

from execution.tasks import stop_task


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0

    async def poller() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed == 0:  # what wait_for's race does to the first cancellation
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(poller())
    await asyncio.sleep(0.02)
    assert await stop_task(task, grace=0.05) is True
    assert task.cancelled() and swallowed == 1


async def test_a_task_that_never_ends_is_left_behind_after_the_rounds_without_hanging() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)  # running: a task cancelled before its first step just ends
    assert await stop_task(task, grace=0.02, rounds=3) is False
    assert not task.done()
    release.set()
    await task


async def test_a_finished_or_failed_task_and_none_are_stopped_at_once() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await stop_task(task) is True  # its error is consumed, not raised
    assert await stop_task(None) is True
