from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.groups import Workers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Starts worker groups (group_worker.py); kills and reaps whatever is left of them afterwards."""
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()
