"""SQL over the vector tables: the int8 copy of every indexed entry's vector, and which
embedder made them. Functions take the connection of the caller's transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import aiosqlite

from server.errors import Unavailable
from server.memory.sql import fetch_all
from server.vectors import SemanticIndex, text_to_embed
from server.vectors.semantic import ALL_NAMESPACES

logger = logging.getLogger(__name__)

# Start-up work (indexing, re-embedding) reads, embeds and writes this many entries at a time,
# so memory stays bounded whatever the database holds.
START_CHUNK_ENTRIES = 1000
# Rows of the vectors table fetched per call when all of them are read.
READ_CHUNK_ROWS = 4096

LIVE_ENTRY = "(e.expires_ms IS NULL OR e.expires_ms > :now)"


def has_all_tags(tags_column: str) -> str:
    """SQL that holds when the JSON tag list in ``tags_column`` contains every tag of :tags
    (:tag_count of them; 0 means no tag filter)."""
    return (
        f"(:tag_count = 0 OR (SELECT count(DISTINCT t.value) FROM json_each({tags_column}) AS t "
        "WHERE t.value IN (SELECT value FROM json_each(:tags))) = :tag_count)"
    )


async def log_changes_of_this_process(conn: aiosqlite.Connection, writer: str) -> None:
    """Record every vector this connection writes or deletes in ``vector_changes`` under ``writer``.

    TEMP triggers fire only for the connection that made them, which is what tells one server's
    changes from another's: each applies its own straight after commit and catches up on the
    others' from the log (`changes_since`)."""
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        await conn.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS log_vector_{event.lower()} AFTER {event} ON main.vectors "
            f"BEGIN INSERT INTO vector_changes (entry_id, writer) VALUES ({row}.entry_id, '{writer}'); END"
        )


async def log_position(conn: aiosqlite.Connection) -> int:
    rows = await fetch_all(conn, "SELECT coalesce(max(seq), 0) FROM vector_changes")
    return int(rows[0][0])


async def changes_since(
    conn: aiosqlite.Connection, position: int, upto: int | None = None
) -> list[tuple[int, int, str]]:
    """(seq, entry_id, writer) of every vector change after ``position`` (up to ``upto``), oldest first."""
    rows = await fetch_all(conn,
        "SELECT seq, entry_id, writer FROM vector_changes WHERE seq > :after AND (:upto IS NULL OR seq <= :upto) "
        "ORDER BY seq",
        {"after": position, "upto": upto},
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def vectors_of(conn: aiosqlite.Connection, ids: Sequence[int]) -> dict[int, bytes]:
    """The stored vector of each of these entries that has one."""
    rows = await fetch_all(conn,
        "SELECT entry_id, vector FROM vectors WHERE entry_id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),)
    )
    return {row[0]: row[1] for row in rows}


async def all_vectors(conn: aiosqlite.Connection) -> tuple[list[int], list[bytes]]:
    """Every stored vector, read a chunk at a time: fetching 100,000 rows in one call holds the GIL
    for the whole fetch (sqlite3 builds the rows in C), which would stall the event loop meanwhile."""
    ids: list[int] = []
    blobs: list[bytes] = []
    after = -1
    while rows := await fetch_all(
        conn, "SELECT entry_id, vector FROM vectors WHERE entry_id > ? ORDER BY entry_id LIMIT ?",
        (after, READ_CHUNK_ROWS),
    ):
        ids.extend(row[0] for row in rows)
        blobs.extend(row[1] for row in rows)
        after = ids[-1]
    return ids, blobs


async def trim_changes(conn: aiosqlite.Connection, keep: int, applied_here: int) -> None:
    """Forget all but the newest ``keep`` changes, but none this server has yet to apply (after
    ``applied_here``): another server further behind reloads every vector, this one never has to."""
    await conn.execute(
        "DELETE FROM vector_changes WHERE seq <= min((SELECT max(seq) FROM vector_changes) - ?, ?)",
        (keep, applied_here),
    )


async def open_vectors(conn: aiosqlite.Connection, vectors: SemanticIndex, *, reembed: bool) -> int:
    """At start: make sure the stored vectors come from the configured embedder (or re-embed them
    when allowed), then hand them to the index to load or rebuild. Returns the change-log position
    the loaded vectors reflect at least (later changes may be in them too; applying those again is harmless)."""
    identity = vectors.identity
    rows = await fetch_all(conn, "SELECT embedder, dimensions FROM vector_space")
    stored = await fetch_all(conn, "SELECT count(*) FROM vectors")
    recorded = (rows[0][0], rows[0][1]) if rows else None
    if recorded is not None and recorded != (identity.embedder, identity.dimensions) and stored[0][0]:
        if not reembed:
            raise Unavailable(
                f"the memory database holds {stored[0][0]} vectors made by {recorded[0]}, but the configured "
                f"embedder is {identity.embedder}; vectors of two embedders are never mixed. Configure "
                f"{recorded[0]} again, or set SWITCHBOARD_VECTOR_REEMBED=true to re-embed them at start"
            )
        await _reembed(conn, vectors, recorded[0])
    await conn.execute("BEGIN IMMEDIATE")
    await conn.execute(
        "INSERT INTO vector_space (only, embedder, dimensions) VALUES (1, ?, ?) "
        "ON CONFLICT (only) DO UPDATE SET embedder = excluded.embedder, dimensions = excluded.dimensions",
        (identity.embedder, identity.dimensions),
    )
    await conn.commit()
    await _index_unindexed(conn, vectors)
    position = await log_position(conn)  # before the vectors are read: nothing after it can be missed
    ids, blobs = await all_vectors(conn)
    await vectors.start(ids, blobs)
    return position


async def _index_unindexed(conn: aiosqlite.Connection, vectors: SemanticIndex) -> None:
    """Give a vector to every entry of an indexed namespace that has none: entries written before
    the namespace was marked indexed, or before this version of Switchboard. One chunk at a time,
    each its own transaction."""
    namespaces = sorted(vectors.indexed_namespaces)
    every = ALL_NAMESPACES in namespaces
    after, indexed = 0, 0
    while rows := await fetch_all(conn,
        "SELECT e.id, e.value FROM entries AS e LEFT JOIN vectors AS v ON v.entry_id = e.id "
        "WHERE e.id > :after AND v.entry_id IS NULL "
        "AND (:every OR e.namespace IN (SELECT value FROM json_each(:namespaces))) ORDER BY e.id LIMIT :chunk",
        {"after": after, "every": every, "namespaces": json.dumps(namespaces, ensure_ascii=False),
         "chunk": START_CHUNK_ENTRIES},
    ):
        embedded = await vectors.embed([text_to_embed(json.loads(row[1])) for row in rows])
        await conn.execute("BEGIN IMMEDIATE")
        await write(conn, [row[0] for row in rows], vectors.encode(embedded))
        await conn.commit()
        after, indexed = rows[-1][0], indexed + len(rows)
    if indexed:
        logger.info("indexed %d existing entries of indexed namespaces", indexed)


async def _reembed(conn: aiosqlite.Connection, vectors: SemanticIndex, previous: str) -> None:
    """Re-embed every stored vector with the configured embedder, one chunk (and transaction) at a
    time. Vectors of two embedders never meet in a search: the server is not serving yet."""
    count = await fetch_all(conn, "SELECT count(*) FROM vectors")
    logger.warning("re-embedding %d stored vectors made by %s with %s", count[0][0], previous,
                   vectors.identity.embedder)
    after = 0
    while rows := await fetch_all(conn,
        "SELECT e.id, e.value FROM vectors AS v JOIN entries AS e ON e.id = v.entry_id WHERE e.id > ? "
        "ORDER BY e.id LIMIT ?",
        (after, START_CHUNK_ENTRIES),
    ):
        blobs = vectors.encode(await vectors.embed([text_to_embed(json.loads(row[1])) for row in rows]))
        await conn.execute("BEGIN IMMEDIATE")
        await conn.executemany("UPDATE vectors SET vector = ? WHERE entry_id = ?",
                               zip(blobs, (row[0] for row in rows), strict=True))
        await conn.commit()
        after = rows[-1][0]


async def indexed_positions(conn: aiosqlite.Connection, keys: Sequence[tuple[str, str]], now: int) -> list[int]:
    """Positions in ``keys`` of live entries that have a vector (an overwrite keeps them indexed)."""
    if not keys:
        return []
    rows = await fetch_all(conn,
        "SELECT j.key FROM json_each(:keys) AS j "
        "JOIN entries AS e ON e.namespace = json_extract(j.value, '$[0]') AND e.key = json_extract(j.value, '$[1]') "
        f"JOIN vectors AS v ON v.entry_id = e.id WHERE {LIVE_ENTRY}",
        {"keys": json.dumps(list(keys), ensure_ascii=False), "now": now},
    )
    return [row[0] for row in rows]


async def write(conn: aiosqlite.Connection, ids: Sequence[int], blobs: Sequence[bytes]) -> None:
    await conn.executemany(
        "INSERT INTO vectors (entry_id, vector) VALUES (?, ?) ON CONFLICT (entry_id) DO UPDATE SET vector = excluded.vector",
        zip(ids, blobs),
    )


async def drop(conn: aiosqlite.Connection, ids: Sequence[int]) -> list[int]:
    """Delete the vectors of these entries; return the ids that had one."""
    if not ids:
        return []
    rows = await fetch_all(conn,
        "DELETE FROM vectors WHERE entry_id IN (SELECT value FROM json_each(:ids)) RETURNING entry_id",
        {"ids": json.dumps(list(ids))},
    )
    return [row[0] for row in rows]


async def candidate_ids(conn: aiosqlite.Connection, namespace: str | None, tags: Sequence[str], now: int) -> list[int]:
    """Ids of live, indexed entries in ``namespace`` (all if None) carrying every one of ``tags``."""
    rows = await fetch_all(conn,
        "SELECT v.entry_id FROM vectors AS v JOIN entries AS e ON e.id = v.entry_id "
        f"WHERE {LIVE_ENTRY} AND (:namespace IS NULL OR e.namespace = :namespace) AND {has_all_tags('e.tags')}",
        {"namespace": namespace, "now": now, "tags": json.dumps(list(tags), ensure_ascii=False), "tag_count": len(tags)},
    )
    return [row[0] for row in rows]
