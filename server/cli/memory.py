"""``switchboard memory export`` and ``switchboard memory import``: the memory as JSON lines.

    switchboard memory export [--namespace N] > memory.jsonl
    switchboard memory import memory.jsonl

One entry a line: namespace, key, value, version, tags, created_ms, updated_ms and expires_ms
(absolute, so a TTL means the same moment after the round trip). Vectors are not written: they
are made from the values again on import, for the namespaces the importing server indexes.
Import writes one transaction per chunk of lines; an entry that is malformed, has expired, or
whose key holds a live entry already is skipped and reported (on stdout, with the summary), never
overwritten. Progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from server.cli.settings import add_data_dir_argument, run_with_settings
from server.config import Settings
from server.errors import InvalidArgument
from server.memory.models import Entry, ImportedEntry, Skipped
from server.startup_errors import open_services_or_refuse

CHUNK = 1000
SKIPPED_SHOWN = 50


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``memory export`` and ``memory import`` to the ``switchboard`` command."""
    memory = commands.add_parser("memory", help="export the memory to JSON lines, or import them",
                                 description="Export the memory as JSON lines, or import such a file.")
    actions = memory.add_subparsers(dest="memory_action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="every live entry, one JSON object a line, to stdout or FILE")
    export.add_argument("--namespace", help="only this namespace")
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    imported = actions.add_parser("import", help="entries from a file `memory export` wrote")
    imported.add_argument("file", type=Path, metavar="FILE", help="JSON lines, as `memory export` writes them")
    imported.add_argument("--chunk", type=int, default=CHUNK, help=f"lines per transaction (default {CHUNK})")
    for parser in (export, imported):
        add_data_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    """0 on success (skipped entries included), 1 if it failed, 2 for invalid settings."""

    def body(settings: Settings) -> None:
        if args.memory_action == "export":
            anyio.run(_export_to, settings, args.namespace, args.output)
            return
        if not 1 <= args.chunk <= 10_000:
            raise InvalidArgument(f"--chunk must be 1..10000; got {args.chunk}")
        anyio.run(_import, settings, args.file, args.chunk, sys.stdout)

    return run_with_settings(args.data_dir, body)


async def _export_to(settings: Settings, namespace: str | None, output: Path | None) -> None:
    if output is None:
        await _export(settings, namespace, sys.stdout)
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as sink:
            await _export(settings, namespace, sink)
        partial.replace(output)  # FILE appears whole, or not at all
    finally:
        partial.unlink(missing_ok=True)


async def _export(settings: Settings, namespace: str | None, sink: TextIO) -> None:
    async with open_services_or_refuse(settings) as services:
        memory = services.memory
        stats = await memory.stats()
        total = sum(n.entries for n in stats.namespaces if namespace is None or n.namespace == namespace)
        with _stderr_progress() as progress:
            task = progress.add_task("exporting", total=total)
            after = ("", "")
            while page := await memory.export_page(namespace=namespace, after=after):
                sink.writelines(_line(entry) for entry in page)
                progress.advance(task, len(page))
                after = (page[-1].namespace, page[-1].key)
        sink.flush()


def _line(entry: Entry) -> str:
    return json.dumps({"namespace": entry.namespace, "key": entry.key, "value": entry.value, "version": entry.version,
                       "tags": list(entry.tags), "created_ms": entry.created_ms, "updated_ms": entry.updated_ms,
                       "expires_ms": entry.expires_ms}, ensure_ascii=False) + "\n"


async def _import(settings: Settings, path: Path, chunk: int, out: TextIO) -> None:
    written, skipped = 0, list[Skipped]()
    size = (await anyio.Path(path).stat()).st_size
    async with open_services_or_refuse(settings) as services:
        with path.open("rb") as source, _stderr_progress() as progress:
            task = progress.add_task("importing", total=size)
            number = 0
            while lines := await anyio.to_thread.run_sync(_read_lines, source, chunk):
                entries = []
                for line in lines:
                    number += 1
                    parsed = _parse(line, number)
                    if isinstance(parsed, Skipped):
                        skipped.append(parsed)
                    elif parsed is not None:
                        entries.append(parsed)
                if entries:
                    report = await services.memory.import_entries(entries)
                    written += report.written
                    skipped.extend(report.skipped)
                progress.update(task, completed=source.tell())
    reasons = Counter(item.reason for item in skipped)
    out.write(f"imported {written} entries, skipped {len(skipped)}"
              + (": " + ", ".join(f"{count} {reason}" for reason, count in reasons.most_common()) if skipped else "")
              + "\n")
    for item in skipped[:SKIPPED_SHOWN]:
        out.write(f"  skipped {item.namespace}/{item.key}: {item.reason}\n")
    if len(skipped) > SKIPPED_SHOWN:
        out.write(f"  ... and {len(skipped) - SKIPPED_SHOWN} more\n")
    out.flush()


def _read_lines(source: BinaryIO, count: int) -> list[bytes]:
    lines: list[bytes] = []
    while len(lines) < count and (line := source.readline()):
        lines.append(line)
    return lines


def _parse(line: bytes, number: int) -> ImportedEntry | Skipped | None:
    if not line.strip():
        return None
    try:
        item: Any = json.loads(line)
        return ImportedEntry(namespace=item["namespace"], key=item["key"], value=item["value"],
                             version=item["version"], created_ms=item["created_ms"], updated_ms=item["updated_ms"],
                             expires_ms=item.get("expires_ms"), tags=tuple(item.get("tags") or ()))
    except (ValueError, KeyError, TypeError) as error:
        return Skipped(f"line {number}", "", f"not an exported entry ({type(error).__name__}: {error})")


def _stderr_progress() -> Progress:
    """A progress bar on stderr (stdout may be the export itself), gone when the work is done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)
