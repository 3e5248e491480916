"""The last resort of a stop that hangs: the worker exits SHUTDOWN_GRACE after it was asked to
stop, even with its event loop blocked (streams/app.py ``_arm_exit_watchdog``)."""

from __future__ import annotations

import subprocess
import sys
import time

HANGING_STOP = """
import logging, time
from streams.app import _arm_exit_watchdog
logging.basicConfig()  # as the worker's logging is configured
_arm_exit_watchdog(0.5)
time.sleep(60)  # a stop stuck in a blocking call: the event loop cannot run anything
print("not reached")
"""


def test_a_stop_that_hangs_ends_the_process_after_the_grace() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HANGING_STOP], capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "not reached" not in done.stdout
    assert "exiting now without committing anything more" in done.stderr
    assert elapsed < 30  # (the subprocess timeout would have raised): it did not sleep its 60 s
