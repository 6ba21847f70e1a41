"""Sync twins of :mod:`lockheed._async.compat`."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def shield(value: T) -> T:
    """Without an event loop nothing cancels a call half-way: the value as it is."""
    return value
