"""The values `replace` takes alike on its command line and in its ``--config`` file: durations and
surges. Each reading raises ValueError saying what is allowed; the caller names where the value came
from (the flag, or the file and key)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_SURGE = re.compile(r"^(\d+)(%?)$")
SURGE_RANGE = "1 or more instances, or 1% to 100% of the desired capacity"


def duration(text: str) -> timedelta:
    """kubectl-style durations: 90s, 15m, 1h30m, 7d."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match:
        raise ValueError("not a duration; write it like 90s, 15m, 1h30m or 7d")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def surge(text: str) -> int | str:
    """A wave's size: N instances (an int) or P% of the desired capacity ("P%")."""
    match = _SURGE.match(text.strip())
    if not match:
        raise ValueError(f"not a number of instances or a percentage; a surge is {SURGE_RANGE}")
    number, percent = int(match.group(1)), bool(match.group(2))
    if number < 1 or (percent and number > 100):
        raise ValueError(f"out of range; a surge is {SURGE_RANGE}")
    return f"{number}%" if percent else number
