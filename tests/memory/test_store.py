"""MemoryStore on a real SQLite file: writes, versions, expiry, listing, search, stats."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from server.errors import Conflict, InvalidArgument, NotFound, TooLarge, Unavailable
from server.memory import MemoryStore, PutRequest
from tests.manual_clock import ManualClock


async def snapshot(store: MemoryStore) -> list[tuple]:
    """Every row, expired or not, straight from the file: what "nothing changed" is checked against."""
    with closing(sqlite3.connect(store.path)) as conn:
        return conn.execute("SELECT * FROM entries ORDER BY id").fetchall()


async def test_put_then_get_returns_value_and_metadata(store: MemoryStore, clock: ManualClock) -> None:
    meta = await store.put("ns", "k", {"a": [1, 2, "x"]}, ttl_seconds=60, tags=["t1", "t2"])
    assert (meta.version, meta.size, meta.tags) == (1, len('{"a":[1,2,"x"]}'), ("t1", "t2"))
    assert meta.expires_ms == clock.now_ms() + 60_000
    entry = await store.get("ns", "k")
    assert entry is not None and entry.value == {"a": [1, 2, "x"]} and entry.version == 1


async def test_each_write_grows_the_version_and_keeps_created(store: MemoryStore, clock: ManualClock) -> None:
    first = await store.put("ns", "k", 1)
    clock.advance(5)
    second = await store.put("ns", "k", 2)
    assert second.version == 2
    assert second.created_ms == first.created_ms
    assert second.updated_ms == first.updated_ms + 5000


async def test_string_value_is_kept_as_the_same_string(store: MemoryStore) -> None:
    text = '{"agent": 7, "status": "spawned"}'
    await store.put("ns", "k", text)
    entry = await store.get("ns", "k")
    assert entry is not None and entry.value == text


async def test_expired_entry_is_never_returned_before_the_sweep(store: MemoryStore, clock: ManualClock) -> None:
    await store.put("ns", "short", "v", ttl_seconds=10, tags=["x"])
    await store.put("ns", "long", "v", ttl_seconds=100)
    clock.advance(10)  # expiry is exclusive: at expires_ms the entry is gone
    assert await store.get("ns", "short") is None
    assert [e.key for e in (await store.list_page("ns")).entries] == ["long"]
    assert [e.key for e in await store.search(key_glob="*")] == ["long"]
    stats = await store.stats()
    assert stats.total_entries == 1
    assert len(await snapshot(store)) == 2  # still on disk until the sweeper runs


async def test_store_over_an_expired_entry_starts_fresh(store: MemoryStore, clock: ManualClock) -> None:
    await store.put("ns", "k", "old", ttl_seconds=1)
    await store.put("ns", "k", "old2", ttl_seconds=1)
    clock.advance(2)
    meta = await store.put("ns", "k", "new")
    assert meta.version == 1 and meta.created_ms == clock.now_ms() and meta.expires_ms is None
    assert (await store.stats()).expired_total == 1


async def test_ttl_zero_or_absent_never_expires(store: MemoryStore, clock: ManualClock) -> None:
    assert (await store.put("ns", "a", 1, ttl_seconds=0)).expires_ms is None
    assert (await store.put("ns", "b", 1)).expires_ms is None
    clock.advance(10 * 365 * 24 * 3600)
    assert await store.get("ns", "a") is not None


async def test_compare_and_set_writes_only_at_the_expected_version(store: MemoryStore) -> None:
    await store.put("ns", "k", "v1")
    await store.put("ns", "k", "v2", if_version=1)
    before = await snapshot(store)
    with pytest.raises(Conflict, match="at version 2, not if_version 1"):
        await store.put("ns", "k", "v3", if_version=1)
    assert await snapshot(store) == before


async def test_if_version_zero_means_only_if_absent(store: MemoryStore) -> None:
    assert (await store.put("ns", "k", "first", if_version=0)).version == 1
    with pytest.raises(Conflict, match="at version 1"):
        await store.put("ns", "k", "second", if_version=0)
    with pytest.raises(Conflict, match="does not exist"):
        await store.put("ns", "missing", "x", if_version=3)
    assert await store.get("ns", "missing") is None


async def test_batch_is_all_or_nothing(store: MemoryStore) -> None:
    await store.put("ns", "taken", 1)
    before = await snapshot(store)
    with pytest.raises(Conflict, match="'taken'"):
        await store.put_many([PutRequest("ns", "a", 1), PutRequest("ns", "taken", 2, if_version=0)])
    with pytest.raises(InvalidArgument, match="entry 1: key"):
        await store.put_many([PutRequest("ns", "a", 1), PutRequest("ns", "", 2)])
    with pytest.raises(InvalidArgument, match="appears twice"):
        await store.put_many([PutRequest("ns", "a", 1), PutRequest("ns", "a", 2)])
    assert await snapshot(store) == before
    written = await store.put_many([PutRequest("ns", f"k{i}", i) for i in range(500)] + [PutRequest("ns", "taken", 9)])
    assert [m.key for m in written[:3]] == ["k0", "k1", "k2"] and written[-1].version == 2


@pytest.mark.parametrize(
    ("namespace", "key", "message"),
    [
        ("", "k", "namespace must be 1..256"),
        ("ns", "", "key must be 1..256"),
        ("ns", "x" * 257, "key must be 1..256 characters long; got 257"),
        ("ns", "line\nbreak", "non-printable"),
        ("tab\there", "k", "non-printable"),
        (7, "k", "namespace must be a string"),
    ],
)
async def test_bad_names_are_refused_and_change_nothing(store: MemoryStore, namespace, key, message) -> None:
    before = await snapshot(store)
    with pytest.raises(InvalidArgument, match=message):
        await store.put(namespace, key, "v")
    assert await snapshot(store) == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"value": "x" * (64 * 1024)}, TooLarge, "limit is 65536 bytes"),
        ({"value": float("nan")}, InvalidArgument, "JSON value"),
        ({"value": {1, 2}}, InvalidArgument, "JSON value"),
        ({"value": 1, "ttl_seconds": -1}, InvalidArgument, "must not be negative"),
        ({"value": 1, "ttl_seconds": 31 * 24 * 3600}, InvalidArgument, "exceeds the configured maximum"),
        ({"value": 1, "ttl_seconds": 1.5}, InvalidArgument, "whole number of seconds"),
        ({"value": 1, "tags": [""]}, InvalidArgument, "tags are 1..64"),
        ({"value": 1, "tags": [f"t{i}" for i in range(33)]}, InvalidArgument, "at most 32 tags"),
        ({"value": 1, "if_version": -2}, InvalidArgument, "if_version must be"),
    ],
)
async def test_bad_values_are_refused_and_change_nothing(store: MemoryStore, kwargs, error, message) -> None:
    await store.put("ns", "k", "original")
    before = await snapshot(store)
    value = kwargs.pop("value")
    with pytest.raises(error, match=message):
        await store.put("ns", "k", value, **kwargs)
    assert await snapshot(store) == before


async def test_list_pages_through_every_key_once_in_order(store: MemoryStore) -> None:
    keys = [f"task-{i:03d}" for i in range(25)] + ["other-1", "task"]
    await store.put_many([PutRequest("ns", k, k) for k in keys])
    await store.put("elsewhere", "task-999", 1)
    seen, cursor = [], None
    while True:
        page = await store.list_page("ns", prefix="task-", limit=10, cursor=cursor)
        seen += [e.key for e in page.entries]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(k for k in keys if k.startswith("task-"))
    assert len((await store.list_page("ns", limit=1000)).entries) == 27


async def test_list_refuses_foreign_or_garbled_cursors(store: MemoryStore) -> None:
    await store.put_many([PutRequest("a", f"k{i}", i) for i in range(3)])
    page = await store.list_page("a", limit=1)
    with pytest.raises(InvalidArgument, match="belongs to a listing of namespace 'a'"):
        await store.list_page("b", cursor=page.next_cursor)
    with pytest.raises(InvalidArgument, match="not one this server issued"):
        await store.list_page("a", cursor="!!not-a-cursor")
    with pytest.raises(InvalidArgument, match="limit must be"):
        await store.list_page("a", limit=1001)


async def test_delete_one_key_and_compare_and_delete(store: MemoryStore) -> None:
    await store.put("ns", "k", 1)
    await store.put("ns", "k", 2)
    assert await store.delete("ns", "missing") == 0
    with pytest.raises(Conflict, match="at version 2"):
        await store.delete("ns", "k", if_version=1)
    with pytest.raises(NotFound):
        await store.delete("ns", "missing", if_version=1)
    assert await store.delete("ns", "k", if_version=2) == 1
    assert await store.get("ns", "k") is None


async def test_delete_namespace_counts_only_live_entries(store: MemoryStore, clock: ManualClock) -> None:
    await store.put_many([PutRequest("gone", f"k{i}", i) for i in range(5)])
    await store.put("gone", "short", 1, ttl_seconds=1)
    await store.put("kept", "k", 1)
    clock.advance(2)
    assert await store.delete_namespace("gone") == 5
    stats = await store.stats()
    assert [ns.namespace for ns in stats.namespaces] == ["kept"]
    assert stats.expired_total == 1


async def test_search_by_key_glob_and_value_text_across_namespaces(store: MemoryStore) -> None:
    await store.put("a", "agent-1", {"note": "Found the AUTH bug"})
    await store.put("b", "agent-2", "auth works now")
    await store.put("b", "config", "nothing here")
    assert [(e.namespace, e.key) for e in await store.search(key_glob="agent-*")] == [("a", "agent-1"), ("b", "agent-2")]
    assert [e.key for e in await store.search(text="auth")] == ["agent-1", "agent-2"]
    assert [e.key for e in await store.search(namespace="b", text="auth")] == ["agent-2"]
    assert [e.key for e in await store.search(key_glob="agent-?", text="bug")] == ["agent-1"]
    assert [e.key for e in await store.search(key_glob="*", limit=1)] == ["agent-1"]
    with pytest.raises(InvalidArgument, match="pattern"):
        await store.search()


async def test_stats_per_namespace_and_totals(store: MemoryStore, clock: ManualClock) -> None:
    await store.put("a", "k1", "xx", ttl_seconds=1800)  # size 4 ('"xx"')
    clock.advance(1)
    await store.put("a", "k2", 12345, ttl_seconds=7200)  # size 5
    await store.put("b", "k", True)  # size 4
    stats = await store.stats()
    a, b = stats.namespaces
    assert (a.namespace, a.entries, a.bytes, a.expiring_within_hour) == ("a", 2, 9, 1)
    assert a.oldest_ms == clock.now_ms() - 1000 and a.newest_ms == clock.now_ms()
    assert (b.entries, b.bytes) == (1, 4)
    assert (stats.total_entries, stats.total_bytes) == (3, 13)
    assert stats.database_bytes > 0


async def test_sweep_deletes_expired_rows_in_bounded_batches(store: MemoryStore, clock: ManualClock) -> None:
    await store.put_many([PutRequest("ns", f"k{i}", i, ttl_seconds=10) for i in range(25)])
    await store.put("ns", "keep", 1)
    clock.advance(11)
    assert await store.sweep_expired(10) == 10
    assert await store.sweep_expired(10) == 10
    assert await store.sweep_expired(10) == 5
    assert await store.sweep_expired(10) == 0
    assert len(await snapshot(store)) == 1
    assert (await store.stats()).expired_total == 25


async def test_acknowledged_writes_survive_reopening(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "m.sqlite3"
    store = await MemoryStore.open(path, clock=clock, max_value_bytes=1024, max_ttl_seconds=100)
    await store.put("ns", "k", {"kept": True})
    await store.close()
    reopened = await MemoryStore.open(path, clock=clock, max_value_bytes=1024, max_ttl_seconds=100)
    entry = await reopened.get("ns", "k")
    await reopened.close()
    assert entry is not None and entry.value == {"kept": True}


async def test_refuses_a_database_from_a_newer_schema(tmp_path: Path, clock: ManualClock) -> None:
    import sqlite3

    path = tmp_path / "m.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(Unavailable, match="schema version 99"):
        await MemoryStore.open(path, clock=clock, max_value_bytes=1024, max_ttl_seconds=100)


async def test_concurrent_compare_and_set_increments_lose_nothing(store: MemoryStore) -> None:
    await store.put("ns", "counter", 0)
    workers, increments_each = 50, 8
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        done = 0
        while done < increments_each:
            entry = await store.get("ns", "counter")
            assert entry is not None
            try:
                await store.put("ns", "counter", entry.value + 1, if_version=entry.version)
                done += 1
            except Conflict:
                conflicts += 1

    await asyncio.gather(*(increment() for _ in range(workers)))
    entry = await store.get("ns", "counter")
    assert entry is not None
    assert entry.value == workers * increments_each
    assert entry.version == workers * increments_each + 1
    assert conflicts > 0  # the test really raced


async def test_hundreds_of_concurrent_stores_all_land(store: MemoryStore) -> None:
    results = await asyncio.gather(*(store.put("ns", f"k{i}", {"i": i}) for i in range(500)))
    assert {m.key for m in results} == {f"k{i}" for i in range(500)}
    assert (await store.stats()).total_entries == 500


async def test_reads_do_not_wait_behind_a_slow_write(store: MemoryStore) -> None:
    await store.put("ns", "k", "committed")
    write_started, release_write = asyncio.Event(), asyncio.Event()

    async def slow_write(conn) -> None:
        await conn.execute("INSERT INTO counters (name, value) VALUES ('held', 1)")
        write_started.set()
        await release_write.wait()  # the write transaction stays open until the read is done

    writing = asyncio.create_task(store._writer.submit(slow_write))
    await write_started.wait()
    with anyio.fail_after(5):  # a deadline against a hang, not a timing assertion
        entry = await store.get("ns", "k")
    release_write.set()
    await writing
    assert entry is not None and entry.value == "committed"


async def test_close_commits_what_was_already_queued(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "m.sqlite3"
    store = await MemoryStore.open(path, clock=clock, max_value_bytes=1024, max_ttl_seconds=100)
    pending = [asyncio.create_task(store.put("ns", f"k{i}", i)) for i in range(50)]
    await asyncio.sleep(0)  # let every put enqueue
    await store.close()
    assert all(task.done() and not task.exception() for task in pending)
    reopened = await MemoryStore.open(path, clock=clock, max_value_bytes=1024, max_ttl_seconds=100)
    assert (await reopened.stats()).total_entries == 50
    await reopened.close()
    with pytest.raises(Unavailable, match="shutting down"):
        await store.put("ns", "late", 1)


def test_size_counts_utf8_bytes_of_compact_json() -> None:
    from server.memory.validation import encode_value

    assert encode_value({"b": "é", "a": [1.5, None]}, 100) == ('{"b":"é","a":[1.5,null]}', 25)


async def test_sweeper_empties_every_expired_entry_in_one_pass(store: MemoryStore, clock: ManualClock) -> None:
    from server.memory import ExpirySweeper

    await store.put_many([PutRequest("ns", f"k{i}", i, ttl_seconds=5) for i in range(23)])
    clock.advance(5)
    assert await ExpirySweeper(store, interval_seconds=60, batch_size=4).sweep_once() == 23
    assert await snapshot(store) == []


async def test_stores_opening_a_fresh_database_together_migrate_it_once(tmp_path: Path, clock: ManualClock) -> None:
    for attempt in range(20):  # the race is between reading the version and migrating: give it many chances
        path = tmp_path / f"m{attempt}.sqlite3"
        stores = await asyncio.gather(*(
            MemoryStore.open(path, clock=clock, max_value_bytes=1024, max_ttl_seconds=100) for _ in range(4)))
        await stores[0].put("ns", "k", 1)
        assert (await stores[3].get("ns", "k")) is not None
        for store in stores:
            await store.close()


async def test_text_search_reads_string_values_as_written(store: MemoryStore) -> None:
    await store.put("ns", "quote", 'she said "ship it"')
    await store.put("ns", "path", "C:\\temp\\out")
    await store.put("ns", "lines", "line one\nline two")
    await store.put("ns", "object", {"status": "done"})
    assert [e.key for e in await store.search(text='"ship it"')] == ["quote"]
    assert [e.key for e in await store.search(text="C:\\temp")] == ["path"]
    assert [e.key for e in await store.search(text="one\nline")] == ["lines"]
    assert [e.key for e in await store.search(text='"status":"done"')] == ["object"]


async def test_a_batch_over_the_byte_cap_is_too_large_and_writes_nothing(tmp_path: Path, clock: ManualClock) -> None:
    store = await MemoryStore.open(tmp_path / "m.sqlite3", clock=clock, max_value_bytes=1024 * 1024,
                                   max_ttl_seconds=100, max_batch_bytes=3 * 1024 * 1024)
    try:
        big = "x" * (1024 * 1024 - 2)  # 1 MiB serialised, within the per-value limit
        await store.put_many([PutRequest("ns", f"k{i}", big) for i in range(3)])  # exactly at the cap
        with pytest.raises(TooLarge, match=r"more than 3145728 bytes \(SWITCHBOARD_MEMORY_MAX_BATCH_BYTES\) by "
                                           r"entry 3.*nothing was written"):
            await store.put_many([PutRequest("ns", f"new{i}", big) for i in range(10)])
        assert [e.key for e in (await store.list_page("ns")).entries] == ["k0", "k1", "k2"]
    finally:
        await store.close()


async def test_search_answers_carry_values_up_to_the_byte_budget_then_previews(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = await MemoryStore.open(tmp_path / "m.sqlite3", clock=clock, max_value_bytes=64 * 1024,
                                   max_ttl_seconds=100, max_answer_bytes=100_000)
    try:
        await store.put_many([PutRequest("ns", f"big{i}", f"needle {i} " + "y" * 40_000) for i in range(4)]
                             + [PutRequest("ns", "small", "needle small")])
        found = await store.search(text="needle", limit=10)
        assert [entry.key for entry in found] == ["big0", "big1", "big2", "big3", "small"]
        full = [entry.key for entry in found if entry.preview is None]
        assert full == ["big0", "big1", "small"]  # 2 x 40 KB fit; the small one still fits after the others
        assert sum(entry.size for entry in found if entry.preview is None) <= 100_000
        cut = found[2]
        assert cut.value is None and cut.preview is not None and cut.preview.startswith("needle 2 yyy")
        assert len(cut.preview) == 200 and cut.version == 1 and cut.size > 40_000
        assert (await store.get("ns", "big2")).value.startswith("needle 2 ")  # retrieve still gives all of it
    finally:
        await store.close()


async def test_a_quick_read_does_not_queue_behind_a_reader_held_by_a_long_scan(store: MemoryStore) -> None:
    await store.put("ns", "k", "v")
    async with store._readers.connection():  # type: ignore[attr-defined]  # one reader busy scanning
        with anyio.fail_after(10):  # a hang guard: with a single connection this waits forever
            entry = await store.get("ns", "k")
    assert entry is not None and entry.value == "v"


def test_the_cost_of_preparing_a_batch_decides_where_it_is_prepared() -> None:
    from server.memory.put_batch import cheap_to_prepare as _cheap_to_prepare

    assert _cheap_to_prepare(["short note"] * 64)
    assert not _cheap_to_prepare(["x" * (1024 * 1024)])  # one value of 1 MiB: a worker thread
    assert not _cheap_to_prepare(["x" * 300] * 64)  # many modest ones add up
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert not _cheap_to_prepare([deep])  # judged costly without walking all of it
    assert not _cheap_to_prepare([{"k": list(range(10_000))}])


@pytest.mark.parametrize(
    "decoded", ['["ns", "\\ud800"]', "[" * 100_000 + "]" * 100_000, "[" * 1500 + "]" * 1500, '["ns", 1]', "{}"]
)
async def test_a_cursor_decoding_to_anything_unusable_is_invalid_argument(store: MemoryStore, decoded: str) -> None:
    cursor = base64.urlsafe_b64encode(decoded.encode()).decode()
    with pytest.raises(InvalidArgument, match="cursor is not one this server issued"):
        await store.list_page("ns", cursor=cursor)


@pytest.mark.parametrize(
    ("value", "message"),
    [("ok \ud800 broken", r"lone surrogate \(\\ud800\)"), ({"deep": "x\udfff"}, r"lone surrogate \(\\udfff\)")],
)
async def test_a_value_that_is_not_unicode_text_is_invalid_and_writes_nothing(store: MemoryStore, value, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await store.put("ns", "k", value)
    assert await snapshot(store) == []


async def test_a_value_nested_too_deeply_is_invalid_argument(store: MemoryStore) -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        await store.put("ns", "k", deep)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"key_glob": "h" * 50_001}, "pattern must be at most 4096"), ({"text": "x\ud800"}, "query holds a lone surrogate"),
     ({"key_glob": "*", "text": "q" * 4097}, "query must be at most 4096")],
)
async def test_search_refuses_patterns_sqlite_cannot_take(store: MemoryStore, options, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await store.search(**options)
