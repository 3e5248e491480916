"""AdaptiveFetchWait (streams/transport.py, issue 16): the fetch long-poll is short while fetches
bring records and long once none has for a while, and the first fetch with records brings the
short wait back for the next request. Driven with a fake fetcher and a manual clock: no broker,
no timing."""

from __future__ import annotations

from typing import Any

from streams.transport import AdaptiveFetchWait


class Fetcher:
    """The two things of aiokafka's Fetcher the wait uses: the wait it puts in each request, and
    the per-request coroutine that reports whether records came."""

    def __init__(self) -> None:
        self._fetch_max_wait_ms = 1500
        self.answers: list[bool] = []
        self.requests: list[int] = []

    async def _proc_fetch_request(self, assignment: Any, node_id: Any, request: Any) -> bool:
        self.requests.append(self._fetch_max_wait_ms)  # the wait this request was built with
        return self.answers.pop(0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def fetch(fetcher: Fetcher, clock: Clock, got: bool, after: float) -> None:
    clock.now += after
    fetcher.answers.append(got)
    await fetcher._proc_fetch_request(None, 0, None)


async def test_the_wait_is_short_while_busy_long_when_idle_and_short_again_when_data_comes() -> None:
    fetcher, clock = Fetcher(), Clock()
    wait = AdaptiveFetchWait(fetcher, busy_ms=5, idle_ms=100, idle_after=1.0, clock=clock)
    assert wait.wait_ms == 5  # the configured short wait replaces the library's default at once

    for _ in range(150):  # data keeps coming: the wait stays short
        await fetch(fetcher, clock, True, 0.005)
    for _ in range(150):  # nothing for 0.75 s: still short
        await fetch(fetcher, clock, False, 0.005)
    assert wait.wait_ms == 5
    for _ in range(60):  # nothing for over a second: long
        await fetch(fetcher, clock, False, 0.005)
    assert wait.wait_ms == 100
    await fetch(fetcher, clock, False, 0.1)
    assert fetcher.requests[-1] == 100  # idle requests carry the long wait

    await fetch(fetcher, clock, True, 0.1)  # the first message after the quiet spell
    assert wait.wait_ms == 5  # the next request (the next hop, the rest of the burst) waits briefly
    await fetch(fetcher, clock, False, 0.005)
    assert fetcher.requests[-1] == 5


async def test_a_long_wait_below_the_short_one_is_the_short_one() -> None:
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, busy_ms=20, idle_ms=5, idle_after=0.0, clock=Clock())
    await fetch(fetcher, Clock(), False, 1.0)
    assert wait.wait_ms == 20
