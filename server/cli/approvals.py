"""``switchboard approvals``, ``approve``, ``deny``, ``answer``: permission requests and questions, from a shell.

They read and answer the request rows in the agents database, so they work from any shell on the
machine while the server runs: the server's waiting agent sees the answer within its poll
interval. A request someone answered first is a conflict naming who.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TextIO

from server.agents.changes import ChangeFeed
from server.agents.records import AgentRecords
from server.cli.settings import add_data_dir_argument, run_on_agent_records
from server.clock import SystemClock
from server.config import Settings
from server.errors import InvalidArgument
from server.queries.approvals import ApprovalDesk, PermissionRequest

FOLLOW_INTERVAL_S = 0.5
COMMANDS = ("approvals", "approve", "deny", "answer")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser("approvals", help="list the permission requests and questions waiting for an answer",
                                  description="List pending permission requests and questions of every agent on "
                                              "this data dir; --follow prints new ones as they come.")
    listing.add_argument("--follow", action="store_true", help="keep printing requests as they are raised")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    approve = commands.add_parser("approve", help="allow a pending permission request")
    approve.add_argument("request_id", metavar="ID")
    approve.add_argument("--always", action="store_true",
                         help="allow such requests for the rest of the agent's life (Claude Code's suggestion)")
    deny = commands.add_parser("deny", help="deny a pending permission request")
    deny.add_argument("request_id", metavar="ID")
    deny.add_argument("-m", "--message", help="why, for the model")
    answer = commands.add_parser("answer", help="answer a pending question: one choice per question, in order")
    answer.add_argument("request_id", metavar="ID")
    answer.add_argument("choices", nargs="+", metavar="CHOICE", help="the chosen option's label (or its number, from 1)")
    for parser in (listing, approve, deny, answer):
        add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    """0 on success, 1 when it failed (an unknown id, a request answered already), 2 for invalid settings."""
    return run_on_agent_records(args, _run, name=f"switchboard {args.command}")


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    database = await AgentRecords.open(settings.agents_database_path)
    desk = ApprovalDesk(database, ChangeFeed(), SystemClock())
    try:
        if args.command == "approvals":
            await _list(desk, args.follow, args.json, out)
            return
        if args.command == "answer":
            request = await desk.get(args.request_id)
            decided = await desk.answer(args.request_id, allow=True, by="cli",
                                        answers=_chosen(request, args.choices))
        else:
            decided = await desk.answer(args.request_id, allow=args.command == "approve", by="cli",
                                        message=getattr(args, "message", None), remember=getattr(args, "always", False))
        out.write(f"{decided.id} {decided.status}\n")
    finally:
        await database.close()


async def _list(desk: ApprovalDesk, follow: bool, as_json: bool, out: TextIO) -> None:
    shown: set[str] = set()
    while True:
        for request in await desk.pending():
            if request.id not in shown:
                shown.add(request.id)
                out.write(json.dumps(asdict(request)) + "\n" if as_json else describe(request))
        if not follow:
            if not shown and not as_json:
                out.write("no permission requests or questions wait for an answer\n")
            out.flush()
            return
        out.flush()
        await asyncio.sleep(FOLLOW_INTERVAL_S)


def describe(request: PermissionRequest) -> str:
    """A request as a person reads it in a terminal: who asks what, and how to answer."""
    head = f"{request.id}  query {request.query_id}  agent {request.agent_id}\n"
    if request.is_question:
        lines = []
        for number, (question, labels) in enumerate(request.choices, 1):
            lines.append(f"  question {number}: {question}\n"
                         f"    choices: {' | '.join(labels) or '(free text)'}\n")
        return head + "".join(lines) + f"  answer: switchboard answer {request.id} CHOICE...\n"
    shown = json.dumps(request.input, ensure_ascii=False)
    return (head + f"  {request.tool}: {shown[:500]}{'…' if len(shown) > 500 else ''}\n"
            f"  answer: switchboard approve {request.id} [--always] | switchboard deny {request.id} [-m MESSAGE]\n")


def _chosen(request: PermissionRequest, choices: Sequence[str]) -> dict[str, str]:
    """{question: label} from one choice per question, given as the label or its number."""
    if not request.is_question:
        raise InvalidArgument(f"request {request.id} asks to use {request.tool}, not a question: "
                              "switchboard approve or deny it")
    questions = request.choices
    if len(choices) != len(questions):
        raise InvalidArgument(f"request {request.id} asks {len(questions)} question(s); give one choice for each, "
                              f"in order (got {len(choices)})")
    answers = {}
    for (question, labels), choice in zip(questions, choices, strict=True):
        by_number = choice.isdigit() and 1 <= int(choice) <= len(labels)
        answers[question] = labels[int(choice) - 1] if by_number else choice
    return answers
