"""Stopping a command from outside: Ctrl-C (SIGINT) and SIGTERM (``timeout``, systemd, ``docker stop``, CI runners).

While :func:`stop_signals` is active (the ``freezeframe`` command runs inside it) SIGTERM raises
``KeyboardInterrupt`` in the main thread, as Ctrl-C does, so every place that stops Ctrl-C at a safe point
(an epoch saved whole, a model or report written whole or not at all) does the same for SIGTERM. The
exit status then says which signal came: 128 + its number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
"""The stop signals that arrived while :func:`stop_signals` was active, in order (signals are the process's)."""


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGTERM (and Ctrl-C) raise ``KeyboardInterrupt`` in the main thread, and are remembered
    for :func:`exit_status`. A signal that was ignored when the block began (a background job's Ctrl-C,
    ``nohup``'s parent ignoring SIGTERM) stays ignored; outside the main thread nothing changes."""
    if not _on_main_thread():
        yield
        return
    _received.clear()

    def stop(signum: int, frame) -> None:
        _received.append(signum)
        raise KeyboardInterrupt

    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) not in (signal.SIG_IGN, None):
            previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_status() -> int:
    """128 + the number of the first stop signal received: 143 after SIGTERM, else 130 (Ctrl-C)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def stopped_by() -> str:
    """How the command was stopped, as its last line says it: ``interrupted`` or ``interrupted by SIGTERM``."""
    if _received and _received[0] != signal.SIGINT:
        return f"interrupted by {signal.Signals(_received[0]).name}"
    return "interrupted"


@contextlib.contextmanager
def ctrl_c_deferred(deliver: bool = True) -> Iterator[list[int]]:
    """Hold a Ctrl-C or SIGTERM that arrives inside the block until the block ends, so that an epoch logged as
    done is also saved, and a model being written is written whole. Yields the list of the signals held
    (empty if none came); ``deliver`` raises the first one held as the block ends (through the handler it
    had), else the caller says what happened. Only signals handled in Python are held (an ignored one stays
    ignored, a default SIGTERM still ends the process), and only in the main thread, which alone receives them.
    """
    held: list[int] = []
    if not _on_main_thread():
        yield held
        return

    def hold(signum: int, frame) -> None:
        held.append(signum)
        _received.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in STOP_SIGNALS if callable(signal.getsignal(signum))}
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held and deliver:
        previous[held[0]](held[0], None)
