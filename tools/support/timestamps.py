"""The one time format every tool answers with: ISO-8601 UTC with milliseconds, e.g. 2026-11-21T19:14:00.000Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_utc_or_none(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else iso_utc(epoch_ms)
