import pathlib
import signal

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C handler for the test, whatever the runner inherited (a shell running
    it in the background, or under nohup, starts it with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
