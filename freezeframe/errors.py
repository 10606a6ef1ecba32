"""The one exception type that carries a message meant for the user."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator

logger = logging.getLogger("freezeframe")


class FreezeframeError(Exception):
    """A problem with the user's input or environment, worded so a person can fix it.

    The command-line tool prints the message as one line on stderr and exits with ``exit_code``.
    """

    exit_code = 2


class NotAClassifier(ValueError):
    """Weights that hold no classification head at all where a trained classifier is loaded: a pretrained encoder's."""


def spoken_list(items: list[str], conjunction: str = "and") -> str:
    """Items as a sentence names them: ``a``, ``a and b``, ``a, b and c`` (``or`` as ``conjunction``)."""
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}" if len(items) > 1 else "".join(items)


def require_packages(modules: tuple[str, ...], purpose: str, extra: str) -> None:
    """Refuse in one line, naming the extra that installs them, when optional packages ``purpose`` needs are missing.

    Args:
        modules: top-level module names to look for (found without importing them).
        purpose: what needs them, e.g. ``"ONNX export"``.
        extra: the ``freezeframe[...]`` extra that installs them.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise FreezeframeError(f"{purpose} needs {spoken_list(missing)} (not installed): pip install 'freezeframe[{extra}]'")


def report(message: str) -> None:
    """Tell the user about something that was handled on their behalf (one line on stderr)."""
    logger.warning(message)


@contextlib.contextmanager
def reports_held_back() -> Iterator[None]:
    """Drop the reports of a block that repeats work already reported (an ensemble's second member loading
    the same checkpoint says what the first said)."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
