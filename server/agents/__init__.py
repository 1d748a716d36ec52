"""Worker agents: spawning, supervision, and the process groups they run in.

Kept import-light: `python -m server.agents.watchdog` imports this package, and the watchdog
must start fast with the standard library alone.
"""
