"""``switchboard agents`` and ``switchboard queries``: the records, from a shell, and following one.

    switchboard agents [--all] [--status S] [--json] live agents (with --all, ended ones too, of earlier runs)
    switchboard agents --follow AGENT_ID             its log as it grows, until the agent ends
    switchboard queries [--all] [--json]             active queries (with --all, ended ones too, of earlier runs)
    switchboard queries --follow QUERY_ID            its state, control log and transcript as they grow, until it ends

Both lists follow one rule: what is live now by default, the history with ``--all``.

They read ``<data_dir>/agents.sqlite3`` (and an agent's log file) without opening the server's
other stores, so they are quick and safe beside a running server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from server.agents.records import LIVE_AGENT_STATUSES, AgentRecord, AgentRecords
from server.agents.transcript import complete_lines, transcript_path
from server.cli.settings import add_data_dir_argument, run_on_agent_records
from server.config import Settings
from server.errors import NotFound
from server.queries.records import ACTIVE_QUERY_STATUSES, ENDED_QUERY_STATUSES, QueryRecord, QueryRecords

FOLLOW_INTERVAL_S = 0.25
PAGE = 500


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``agents`` and ``queries`` to the ``switchboard`` command."""
    agents = commands.add_parser("agents", help="list live agents (--all: ended ones too), or follow one's log",
                                 description="List live agents (queued, spawning, ready, running, waiting); with "
                                             "--all, ended ones too, of this and earlier runs. Or follow one's log.")
    agents.add_argument("--status", help="only agents in this status, live or ended (e.g. running, ready, lost)")
    agents.add_argument("--follow", metavar="AGENT_ID", help="print its log as it grows, until the agent ends")
    queries = commands.add_parser("queries", help="list active queries (--all: ended ones too), or follow one",
                                  description="List active queries (waiting, queued, running, paused); with --all, "
                                              "ended ones too, of this and earlier runs. Or follow one.")
    queries.add_argument("--follow", metavar="QUERY_ID", help="print its state, control log and transcript (a "
                                                              "claude query's turns) as they grow, until it ends")
    for parser, what in ((agents, "agents"), (queries, "queries")):
        parser.add_argument("-a", "--all", action="store_true", help=f"ended {what} too, of this and earlier runs")
        # `queries --history` was this flag's first name: scripts using it keep working.
        parser.add_argument("--history", dest="all", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--json", action="store_true", help="one JSON object a line")
        add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    """0 on success (a --follow ended with Ctrl-C included), 1 if it failed (an unknown id), 2 for invalid settings."""
    return run_on_agent_records(args, _run)


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    records = await AgentRecords.open(settings.agents_database_path)
    try:
        if args.command == "agents":
            if args.follow:
                await _follow_agent(records, settings, args.follow, out)
            else:
                await _list_agents(records, args.status, args.all, args.json, out)
        elif args.follow:
            await _follow_query(QueryRecords(records), settings, args.follow, args.json, out)
        else:
            await _list_queries(QueryRecords(records), args.all, args.json, out)
    finally:
        await records.close()


AGENTS_HEADER = f"{'AGENT':<20} {'NAME':<16} {'TYPE':<16} {'STATUS':<10} {'PID':>7} {'TASKS':>5} {'COST':>9}\n"
QUERIES_HEADER = f"{'QUERY':<20} {'AGENT':<20} {'STATUS':<10} {'MODEL':<20} TASK\n"


async def _list_agents(records: AgentRecords, status: str | None, everything: bool, as_json: bool,
                       out: TextIO) -> None:
    # An explicit status is asked for whether it is live or not (`--status lost`).
    statuses = (status,) if status else () if everything else LIVE_AGENT_STATUSES
    after: int | None = 0
    listed = 0
    while after is not None:
        agents, after = await records.agents_page(statuses=statuses, after_seq=after, limit=PAGE)
        for agent in agents:
            if not as_json and listed == 0:
                out.write(AGENTS_HEADER)
            out.write(json.dumps(asdict(agent)) + "\n" if as_json else _agent_line(agent))
            listed += 1
    if listed == 0 and not as_json:  # JSON lines stay empty: zero objects is the answer for a script
        out.write(_no_agents(status, everything))
    out.flush()


def _no_agents(status: str | None, everything: bool) -> str:
    """What an empty list says instead of a bare header: what was looked for, and where the rest is."""
    if status:
        return f"no agents with status {status!r}\n"
    if everything:
        return "no agents on record\n"
    return "no live agents; `switchboard agents --all` lists ended ones too\n"


def _agent_line(agent: AgentRecord) -> str:
    return (f"{agent.id:<20} {agent.name[:16]:<16} {agent.type[:16]:<16} {agent.status:<10} {agent.pid or '-':>7} "
            f"{agent.tasks_run:>5} {agent.cost_usd:>9.4f}\n")


async def _list_queries(records: QueryRecords, everything: bool, as_json: bool, out: TextIO) -> None:
    after: int | None = 0
    listed = 0
    while after is not None:
        queries, after = await records.queries_page(
            statuses=() if everything else ACTIVE_QUERY_STATUSES, after_seq=after, limit=PAGE)
        for query in queries:
            if not as_json and listed == 0:
                out.write(QUERIES_HEADER)
            out.write(json.dumps(asdict(query)) + "\n" if as_json else
                      f"{query.id:<20} {query.agent_id:<20} {query.status:<10} {(query.model or '-')[:20]:<20} "
                      f"{query.task[:60].replace(chr(10), ' ')}\n")
            listed += 1
    if listed == 0 and not as_json:  # JSON lines stay empty: zero objects is the answer for a script
        out.write("no queries on record\n" if everything else
                  "no active queries; `switchboard queries --all` lists ended ones too\n")
    out.flush()


async def _follow_agent(records: AgentRecords, settings: Settings, agent_id: str, out: TextIO) -> None:
    """Prints the agent's log from its start, then what is added, until the agent has ended."""
    if await records.agent(agent_id) is None:
        raise NotFound(f"no agent {agent_id!r} (switchboard agents lists them)")
    state_dir = settings.data_dir.absolute() / "agents" / agent_id
    offsets: dict[Path, int] = {}
    while True:
        record = await records.agent(agent_id)
        for log in (state_dir / "output.log", state_dir / "session.log"):
            offsets[log] = await asyncio.to_thread(_copy_new, log, offsets.get(log, 0), out)
        if record is None or record.status not in LIVE_AGENT_STATUSES:
            out.write(f"-- agent {agent_id} is {record.status if record else 'gone'}\n")
            out.flush()
            return
        await asyncio.sleep(FOLLOW_INTERVAL_S)


def _copy_new(log: Path, offset: int, out: TextIO) -> int:
    try:
        with log.open("rb") as source:
            source.seek(offset)
            data = source.read()
    except FileNotFoundError:
        return offset
    if data:
        out.write(data.decode("utf-8", errors="replace"))
        out.flush()
    return offset + len(data)


async def _follow_query(records: QueryRecords, settings: Settings, query_id: str, as_json: bool, out: TextIO) -> None:
    """Prints the query's state when it changes, each new entry of its log and each line appended to its
    transcript, until it has ended."""
    seen_state: tuple[object, ...] | None = None
    seen_events = 0
    transcript_offset = 0
    while True:
        query = await records.query(query_id)
        if query is None:
            raise NotFound(f"no query {query_id!r} (switchboard queries --all lists them)")
        state = (query.status, query.model, query.permission_mode, query.turns, query.paused_total_ms)
        if state != seen_state:
            seen_state = state
            out.write(json.dumps({"query": asdict(query)}) + "\n" if as_json else _query_line(query))
        events = (await records.events_of([query_id])).get(query_id, [])
        for event in events[seen_events:]:
            out.write(json.dumps({"event": asdict(event)}) + "\n" if as_json else
                      f"   {event.action} by {event.actor}: {event.outcome}"
                      f"{' ' + json.dumps(event.detail) if event.detail else ''}\n")
        seen_events = len(events)
        # Read after the record: a query recorded as ended has its whole transcript written already.
        path = transcript_path(settings.data_dir.absolute() / "agents" / query.agent_id, query_id)
        entries, transcript_offset = await asyncio.to_thread(_new_entries, path, transcript_offset)
        for entry in entries:
            out.write(json.dumps({"transcript": entry}) + "\n" if as_json else _transcript_line(entry))
        out.flush()
        if query.status in ENDED_QUERY_STATUSES:
            if not as_json and query.result:
                out.write(f"-- result: {query.result.strip()[:2000]}\n")
            return
        await asyncio.sleep(FOLLOW_INTERVAL_S)


def _new_entries(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The whole lines appended since ``offset``, and where the next read starts (a line still being
    written is read when it is whole)."""
    try:
        with path.open("rb") as source:
            source.seek(offset)
            data = source.read()
    except FileNotFoundError:
        return [], offset
    entries, used = complete_lines(data)
    return entries, offset + used


def _transcript_line(entry: dict[str, Any]) -> str:
    kind, turn = entry.get("type"), entry.get("turn")
    if kind == "turn":
        return f"   [turn {turn}] {entry.get('model', '')}\n"
    if kind == "text":
        return f"   [{turn}] {entry.get('text', '')}\n"
    if kind == "tool_use":
        return f"   [{turn}] -> {entry.get('name')} {json.dumps(entry.get('input'), ensure_ascii=False)}\n"
    if kind == "tool_result":
        label = "error" if entry.get("is_error") else "result"
        return f"   [{turn}] <- {label}: {entry.get('content', '')}\n"
    if kind == "usage":
        return f"   [{turn}] tokens {json.dumps(entry.get('usage'))}\n"
    if kind == "result":
        return f"   [{turn}] ended: {entry.get('turns')} turns, cost {entry.get('cost_usd')}\n"
    return f"   [{turn}] {json.dumps(entry, ensure_ascii=False)}\n"


def _query_line(query: QueryRecord) -> str:
    detail = query.error or ""
    return (f"{query.id} {query.status} model={query.model or '-'} mode={query.permission_mode or '-'} "
            f"turns={query.turns if query.turns is not None else '-'}{' ' + detail if detail else ''}\n")
