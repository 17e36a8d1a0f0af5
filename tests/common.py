"""Helpers shared by the Python end-to-end suites under tests/. The SOCKS5 client is the
package's own test harness's (`ambit.testing`), installed by the test command."""

from __future__ import annotations

import time

from ambit.testing import SocksRefused, socks5_connect  # noqa: F401  (re-exported)


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
