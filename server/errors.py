"""The domain errors every engine part raises.

Each error carries a stable ``code`` that tools put in front of the message, so
a client (or an LLM reading the text) can tell "fix your input" from "try again".
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error Switchboard reports to a caller."""

    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(SwitchboardError):
    """The caller's input is malformed or out of range; nothing was changed."""

    code = "invalid_argument"


class NotFound(SwitchboardError):
    """The named thing does not exist (or has expired)."""

    code = "not_found"


class Conflict(SwitchboardError):
    """A precondition such as ``if_version`` did not hold; nothing was changed."""

    code = "conflict"


class TooLarge(SwitchboardError):
    """The input exceeds a configured size limit; nothing was changed."""

    code = "too_large"


class Forbidden(SwitchboardError):
    """The configuration does not allow this operation."""

    code = "forbidden"


class BudgetExhausted(SwitchboardError):
    """A budget (the server's for the day, an agent's, a spawn call's) has nothing left to start the work with."""

    code = "budget_exhausted"


class Unavailable(SwitchboardError):
    """A dependency (database, remote store) cannot serve the call right now; retry later."""

    code = "unavailable"


class Aborted(SwitchboardError):
    """Not attempted or stopped part-way: another item of an all-or-nothing request failed, or the call
    was cancelled."""

    code = "aborted"


class Internal(SwitchboardError):
    """A bug in Switchboard, not a problem with the input or a dependency; the server log has the traceback."""

    code = "internal"
