"""SIGINT and SIGTERM as an exception, so that every ``except BaseException``/``finally`` clean-up runs.

The engine removes its hidden files when an exception passes through it (writers abort, the Dask staging folder is
deleted). SIGTERM's default action kills the process on the spot, which skips all of that; Typer turns Ctrl-C into a
returned exit code 130 that a caller may ignore. :func:`handling_signals` makes both signals raise
:class:`Interrupted` in the main thread; the CLI then prints one line and exits ``128 + signal number`` (130, 143).
A second signal while the clean-up runs is recorded, not raised, so the clean-up is not cut short (SIGKILL still is).
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``exit_code`` is what the process should exit with (128 + signal number)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


_received: list[int] = []


def received() -> int | None:
    """The first signal caught since :func:`handling_signals` was entered, or None."""
    return _received[0] if _received else None


def _raise(signum, _frame):
    first = not _received
    _received.append(signum)
    if first:
        raise Interrupted(signum)


@contextlib.contextmanager
def handling_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within this block (main thread only), ``signals`` raise :class:`Interrupted`; handlers restored after."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
