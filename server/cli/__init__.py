"""The command line, ``switchboard``: serve, dashboard, status and doctor, and the admin commands
over a data directory (agents, queries, objects, memory), one module each; `main` parses and runs."""

from server.cli.main import main

__all__ = ["main"]
