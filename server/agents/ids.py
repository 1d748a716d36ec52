"""Ids of agents and queries: a kind and 48 random bits (``agent-1a2b3c4d5e6f``, ``query-...``)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"
