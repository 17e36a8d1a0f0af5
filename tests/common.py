"""Helpers shared by the Python end-to-end suites under tests/."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    """Polls `predicate` until it returns something truthy (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError as e:  # a socket not up yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")
