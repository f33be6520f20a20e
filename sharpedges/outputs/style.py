"""Colour for people at a terminal: on when stdout is a TTY, off with NO_COLOR, forced with
FORCE_COLOR (https://no-color.org, https://force-color.org); NO_COLOR wins when both are set."""

from __future__ import annotations

import os
import sys

_CODES = {"bold": "1", "red": "1;31", "yellow": "1;33", "cyan": "36", "dim": "2", "green": "32"}


def colour_enabled(stream=None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


class Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, style: str) -> str:
        return f"\x1b[{_CODES[style]}m{text}\x1b[0m" if self.enabled else text
