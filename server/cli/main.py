"""The ``switchboard`` command: serve, dashboard, schemas, objects, memory, workspaces, agents, queries,
approvals (approve, deny, answer), status, doctor, version."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from server import __version__
from server.cli import agents as agents_command
from server.cli import approvals as approvals_command
from server.cli import memory as memory_command
from server.cli import objects as objects_command
from server.cli import workspaces as workspaces_command
from server.cli.settings import add_data_dir_argument, run_with_settings, settings_for_command
from server.config import CONFIG_FILE_ENV, Settings
from server.errors import SwitchboardError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Switchboard: an MCP server for coordinating many agents (shared TTL memory and more).",
        epilog="Settings come from SWITCHBOARD_* environment variables and an optional switchboard.toml.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)",
                                description="Run the MCP server. Logs go to stderr; on stdio, stdout is the protocol.")
    serve.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                       help="stdio (default) or streamable HTTP at http://HOST:PORT/mcp")
    serve.add_argument("--host", help="HTTP bind address (default SWITCHBOARD_HTTP_HOST or 127.0.0.1); "
                                      "anything but loopback requires SWITCHBOARD_HTTP_TOKEN")
    serve.add_argument("--port", type=int, help="HTTP port (default SWITCHBOARD_HTTP_PORT or 8765)")
    add_data_dir_argument(serve)
    serve.add_argument("--config", type=Path,
                       help=f"TOML settings file (default ./switchboard.toml; env {CONFIG_FILE_ENV})")

    schemas = commands.add_parser("schemas", help="write the JSON Schema of every tool's input and output",
                                  description="Write schemas/<tool>.input.json and <tool>.output.json.")
    schemas.add_argument("--out", type=Path, default=Path("schemas"), help="directory to write (default ./schemas)")

    objects_command.add_parser(commands)
    agents_command.add_parsers(commands)
    approvals_command.add_parsers(commands)
    memory_command.add_parser(commands)
    workspaces_command.add_parser(commands)
    status = commands.add_parser("status", help="what the server holds and runs now: memory, vectors, agents, "
                                                "queries, cost", epilog="Settings as for `serve`.")
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    add_data_dir_argument(status)
    dashboard = commands.add_parser("dashboard", help="serve only the dashboard and print its URL",
                                    description="Serve the dashboard (no /mcp) for the servers sharing this data "
                                                "dir; with SWITCHBOARD_HTTP_TOKEN the printed URL signs you in once.")
    dashboard.add_argument("--host", help="bind address (default SWITCHBOARD_HTTP_HOST or 127.0.0.1); anything but "
                                          "loopback requires SWITCHBOARD_HTTP_TOKEN")
    dashboard.add_argument("--port", type=int, default=8766, help="port (default 8766)")
    add_data_dir_argument(dashboard)
    doctor = commands.add_parser("doctor", help="check settings, data dir, databases, vector index, object store, "
                                                "Qdrant, agent executables and Claude credentials",
                                 epilog="One line per check: ok, warn (worth fixing; the run still passes) or "
                                        "FAIL; exits 1 when any fails. Settings as for `serve`.")
    add_data_dir_argument(doctor)
    commands.add_parser("version", help="print the version")
    return parser


def _configure_logging(level: str) -> None:
    # stdout carries the stdio protocol: every log line goes to stderr.
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # `version` and `schemas` are plain commands that answer on stdout; only `serve` speaks the
    # protocol there, and it never prints (its logs go to stderr).
    if args.command == "version":
        sys.stdout.write(f"switchboard {__version__}\n")
        return 0
    if args.command == "schemas":
        from tools.schemas import write_schemas

        for path in write_schemas(args.out):
            sys.stdout.write(f"{path}\n")
        return 0
    if args.command == "objects":
        return objects_command.run(args)
    if args.command in ("agents", "queries"):
        return agents_command.run(args)
    if args.command in approvals_command.COMMANDS:
        return approvals_command.run(args)
    if args.command == "memory":
        return memory_command.run(args)
    if args.command == "workspaces":
        return workspaces_command.run(args)
    if args.command == "status":
        return _status(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "dashboard":
        return _dashboard(args)
    return _serve(args)


def _status(args: argparse.Namespace) -> int:
    _configure_logging("WARNING")
    from server.services import open_services
    from server.status import render_text, status_of

    async def snapshot(settings: Settings) -> str:
        async with open_services(settings) as services:
            taken = await status_of(services)
        return taken.model_dump_json(indent=2) + "\n" if args.json else render_text(taken)

    def body(settings: Settings) -> None:
        sys.stdout.write(anyio.run(snapshot, settings))

    return run_with_settings(args.data_dir, body, name="switchboard status")


def _dashboard(args: argparse.Namespace) -> int:
    settings = settings_for_command(args.data_dir)
    if settings is None:
        return 2
    _configure_logging(settings.log_level)
    from server.app import serve_dashboard

    return _run_server(serve_dashboard, settings, args.host or settings.http_host, args.port)


def _doctor(args: argparse.Namespace) -> int:
    settings = settings_for_command(args.data_dir)
    if settings is None:
        sys.stdout.write("FAIL settings         invalid (see above)\n")
        return 1
    _configure_logging("ERROR")
    from rich.console import Console

    from server.cli.doctor import diagnose

    async def run() -> bool:
        healthy = True
        # The spinner goes to stderr and vanishes: stdout keeps only the result lines. It is stopped
        # while one is written: while it shows, rich takes over stdout and wraps what is printed at the
        # terminal's width, breaking a long path over lines.
        with Console(stderr=True).status("checking", spinner="dots") as spinner:
            async for check in diagnose(settings):
                healthy &= check.ok
                spinner.stop()
                sys.stdout.write(f"{check.verdict:<4} {check.name:<27} {check.detail}\n")
                sys.stdout.flush()
                spinner.update(f"checked {check.name}")
                spinner.start()
        return healthy

    return 0 if anyio.run(run) else 1


def _serve(args: argparse.Namespace) -> int:
    if args.config is not None:
        os.environ[CONFIG_FILE_ENV] = str(args.config)
    settings = settings_for_command(args.data_dir)
    if settings is None:
        return 2
    _configure_logging(settings.log_level)
    # claude-agent-sdk warns at every claude agent's start that its allowed tools skip the permission
    # callback; that is Switchboard's design (the type's tools run unasked, the callback answers the rest).
    warnings.filterwarnings("ignore", message="can_use_tool will not be invoked for")
    from server.app import serve_http, serve_stdio

    if args.transport == "http":
        return _run_server(serve_http, settings, args.host or settings.http_host, args.port or settings.http_port)
    return _run_server(serve_stdio, settings)


def _run_server(serve: Callable[..., Awaitable[None]], *args: object) -> int:
    """Runs a server until it stops: 0, or 1 once a refusal is logged (one line, what to fix)."""
    try:
        anyio.run(serve, *args)
    except SwitchboardError as error:
        logging.getLogger("switchboard").error("%s", error)
        return 1
    except BaseExceptionGroup as group:  # a task group wraps what was raised while serving
        found = _first_domain_error(group)
        if found is None:
            raise
        logging.getLogger("switchboard").error("%s", found)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _first_domain_error(group: BaseExceptionGroup) -> SwitchboardError | None:
    for error in group.exceptions:
        if isinstance(error, SwitchboardError):
            return error
        if isinstance(error, BaseExceptionGroup) and (found := _first_domain_error(error)) is not None:
            return found
    return None

