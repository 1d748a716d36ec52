"""Signing a browser in to the dashboard, and checking its state-changing requests.

With a token configured, a browser signs in once: the URL the server prints carries a one-time
code (valid ten minutes, once), or the login form takes the token itself; either becomes a
session cookie (HttpOnly, SameSite=Strict). Without a token the server is loopback-only and
any page load from an allowed host gets a session. Every state-changing request needs its
session's CSRF token in ``X-CSRF-Token`` and, when the browser sends one, an Origin naming the
host it was served from.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "switchboard_session"
CODE_TTL_S = 600.0
SESSION_TTL_S = 12 * 3600.0


@dataclass(slots=True)
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    expires: float = field(default_factory=lambda: time.monotonic() + SESSION_TTL_S)


class DashboardSessions:
    """One-time sign-in codes and live sessions, in memory (a restart signs everyone out)."""

    def __init__(self, token: str | None) -> None:
        self._token = token
        self._codes: dict[str, float] = {}
        self._sessions: dict[str, Session] = {}

    @property
    def needs_sign_in(self) -> bool:
        return self._token is not None

    def new_code(self) -> str:
        """A code for the printed sign-in URL: one use, within ten minutes."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = time.monotonic() + CODE_TTL_S
        return code

    def redeem_code(self, code: str) -> str | None:
        """A new session id for a valid unused code (which is used up), else None."""
        expires = self._codes.pop(code, None)
        if expires is None or expires < time.monotonic():
            return None
        return self._open()

    def redeem_token(self, token: str) -> str | None:
        if self._token is None or not hmac.compare_digest(token.encode(), self._token.encode()):
            return None
        return self._open()

    def open_without_sign_in(self) -> str:
        """A session for a server with no token (loopback only)."""
        assert self._token is None
        return self._open()

    def session(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        found = self._sessions.get(session_id)
        if found is None or found.expires < time.monotonic():
            self._sessions.pop(session_id, None)
            return None
        return found

    def _open(self) -> str:
        now = time.monotonic()
        for stale in [sid for sid, session in self._sessions.items() if session.expires < now]:
            del self._sessions[stale]
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session()
        return session_id


def csrf_ok(session: Session, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(header.encode(), session.csrf.encode())
