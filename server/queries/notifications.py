"""`RequestNotifier`: a POST to ``SWITCHBOARD_NOTIFY_URL`` for each new permission request or question.

The document is small and reads as a chat message: ``text`` (Slack, Mattermost, ntfy's JSON
publish) and ``content`` (Discord) carry the same line, beside the request's fields for a
program. Each POST is retried with backoff in the background; a failure is logged (naming the
host only: a webhook URL is a secret) and never delays or fails the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential_jitter

from server.queries.approvals import PermissionRequest

logger = logging.getLogger(__name__)

ATTEMPTS = 5
TIMEOUT_S = 10.0


def notification(request: PermissionRequest) -> dict[str, Any]:
    """The JSON document posted for ``request``."""
    if request.is_question:
        asked = "; ".join(question for question, _ in request.choices)
        line = (f"Agent {request.agent_id} asks: {asked} (answer: switchboard answer {request.id} CHOICE..., "
                f"or query_control approve with answers)")
    else:
        shown = json.dumps(request.input, ensure_ascii=False)
        line = (f"Agent {request.agent_id} asks to use {request.tool}: {shown[:300]}{'…' if len(shown) > 300 else ''} "
                f"(switchboard approve {request.id} | switchboard deny {request.id})")
    return {"text": line, "content": line[:2000], "event": "permission_request", "request_id": request.id,
            "query_id": request.query_id, "agent_id": request.agent_id, "tool": request.tool,
            "question": request.is_question, "expires_ms": request.expires_ms}


class RequestNotifier:
    def __init__(self, url: str) -> None:
        self._url = url
        self._host = urlsplit(url).netloc.rsplit("@", 1)[-1]  # never the path or the credentials
        self._sending: set[asyncio.Task[None]] = set()

    def notify(self, request: PermissionRequest) -> None:
        """Schedules the POST; answers at once."""
        task = asyncio.get_running_loop().create_task(self._post(notification(request)), name=f"notify-{request.id}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _post(self, document: dict[str, Any]) -> None:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as client:
                async for attempt in AsyncRetrying(stop=stop_after_attempt(ATTEMPTS), reraise=True,
                                                   wait=wait_exponential_jitter(multiplier=0.5, max=10)):
                    with attempt:
                        answer = await client.post(self._url, json=document)
                        answer.raise_for_status()
        except (httpx.HTTPError, OSError) as error:
            reason = f"HTTP {error.response.status_code}" if isinstance(error, httpx.HTTPStatusError) \
                else type(error).__name__
            logger.warning("could not notify %s of request %s after %d attempts (%s)", self._host,
                           document["request_id"], ATTEMPTS, reason)

    async def close(self) -> None:
        """Gives the POSTs under way a moment, then stops them."""
        if self._sending:
            await asyncio.wait(list(self._sending), timeout=2.0)
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
