"""What every ``switchboard`` command shares: its ``--data-dir`` option and the settings it runs with."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from server.config import Settings


def add_data_dir_argument(parser: argparse.ArgumentParser, what: str = "state directory") -> None:
    """``--data-dir`` for a ``switchboard`` command; `settings_for_command` takes its value."""
    parser.add_argument("--data-dir", type=Path, help=f"{what} (default SWITCHBOARD_DATA_DIR or ./.switchboard)")


def settings_for_command(data_dir: Path | None) -> Settings | None:
    """The settings a ``switchboard`` command runs with (``--data-dir`` over the environment and the
    TOML file), or None once stderr says why they are invalid (naming the setting, never its value)."""
    try:
        return Settings(data_dir=data_dir) if data_dir is not None else Settings()
    except (ValidationError, FileNotFoundError) as error:
        sys.stderr.write(f"switchboard: invalid settings: {error}\n")
        return None
