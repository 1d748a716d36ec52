"""What every ``switchboard`` command shares: its ``--data-dir`` option, the settings it runs with,
and how it ends (`run_with_settings`: its exit code, its error on stderr).

A command answers on stdout through the stream it is handed (``sys.stdout`` written explicitly),
never with ``print``: in ``serve`` stdout is the protocol, and ruff's T20 keeps ``print`` out of
the whole server package."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

import anyio
from pydantic import ValidationError

from server.config import Settings
from server.errors import NotFound, SwitchboardError


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


def run_with_settings(data_dir: Path | None, body: Callable[[Settings], None], *, name: str = "switchboard") -> int:
    """Runs a command's ``body`` with its settings: 0 when it is done, 1 when it failed (a domain
    error, or an OSError reading or writing its files: the reason on stderr), 2 for invalid settings."""
    settings = settings_for_command(data_dir)
    if settings is None:
        return 2
    try:
        body(settings)
    except (SwitchboardError, OSError) as error:
        sys.stderr.write(f"{name}: {error}\n")
        return 1
    return 0


def run_on_agent_records(args: argparse.Namespace,
                         main: Callable[[Settings, argparse.Namespace, TextIO], Awaitable[None]], *,
                         name: str = "switchboard") -> int:
    """`run_with_settings` for a command that reads the agents database (`NotFound` when there is
    none yet): runs ``main`` to its end, or until Ctrl-C ends a ``--follow``."""

    def body(settings: Settings) -> None:
        if not settings.agents_database_path.exists():
            raise NotFound(f"no agents on record in {settings.data_dir} (pass --data-dir or set SWITCHBOARD_DATA_DIR)")
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(main, settings, args, sys.stdout)

    return run_with_settings(args.data_dir, body, name=name)
