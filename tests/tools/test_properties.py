"""Generated calls to every tool over one real MCP session per test (modern and legacy handshakes),
against a real SQLite file: valid calls mixed with wrong types, huge and deeply nested values,
lone surrogates, unknown and camelCase fields, dropped required fields.

After every call:
- the answer is a success with structured content, or a tool error whose text starts with a
  known code (``internal`` is not one: it means a bug);
- ``stats`` agrees with a full listing of every namespace (entries and bytes, per namespace
  and in total);
- what changed is exactly what the answer acknowledged: a refused call (a store_batch with one
  bad entry included) changed nothing, a store or store_batch moved each entry it reports one
  version up, a delete removed as many entries as it says, an upload added at most its summary;
and after each example the server still answers.

Hypothesis runs in a worker thread and drives the session in the event loop (anyio.from_thread),
so the session opens and closes in the test's own task and the server lives for the whole test:
state carries over from one example to the next, and every check is relative to the listing
taken before the call.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from mcp import Client

from server.config import Settings
from tests.tools.answers import error_text, structured_of

Connect = Callable[[], Client]
Call = tuple[str, dict[str, Any]]
# (namespace, key) -> (version, size)
Listing = dict[tuple[str, str], tuple[int, int]]

KNOWN_CODES = {"invalid_argument", "not_found", "conflict", "too_large", "forbidden", "unavailable", "aborted"}
NAMESPACES = ["default", "n1", "agents"]
UPLOADS = "uploads"  # where upload_batch keeps its batch summaries
# 120 examples of up to 6 calls each: about ten seconds for both handshake modes together.
EXAMPLES = int(os.environ.get("SWITCHBOARD_PROPERTY_EXAMPLES", "120"))  # more in a soak run
CALLS_PER_EXAMPLE = 6


@pytest.fixture
def settings(tmp_path: Path, upload_root: Path) -> Settings:
    (upload_root / "a.txt").write_text("uploaded by a generated call")
    return Settings.model_validate({"data_dir": tmp_path / "data", "memory_max_value_bytes": 64 * 1024,
                                    "upload_roots": [upload_root]})


# Values -----------------------------------------------------------------------------------------

def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


text = st.text(max_size=12)
# Lone surrogates (category Cs) among ordinary characters: clients can produce them from broken UTF-16.
odd_text = st.text(st.characters(categories=["Cs", "Cc", "Lu", "Ll", "Nd", "Zs", "So"]), max_size=12)
json_values = st.recursive(
    # NaN and infinities are left out: JSON has none, and the client sends them as null anyway.
    st.none() | st.booleans() | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
huge_text = st.integers(30_000, 120_000).map(lambda size: "h" * size)  # the server takes 64 KiB values
# The client's own serializer refuses nesting past ~250 levels, so that is as deep as a call can go.
deep = st.integers(50, 200).map(nested)
odd = st.one_of(json_values, huge_text, deep, odd_text, st.integers(10**30, 10**60), st.lists(odd_text, max_size=3))

# Mostly a few names, so that calls meet each other's entries; sometimes odd text.
good_namespaces = st.sampled_from(NAMESPACES)
namespaces = good_namespaces | good_namespaces | odd_text
good_keys = st.sampled_from(["k", "k2", "agent-1", "null", "[1]"])
keys = good_keys | good_keys | odd_text
words = st.sampled_from(["login", "bug", "k", "agent", "[1, 2]"]) | text
versions = st.integers(0, 4)
tags = st.lists(st.sampled_from(["a", "b", "run-1"]), max_size=3)
ttls = st.integers(0, 10**6)


@st.composite
def arguments(draw: st.DrawFn, required: dict[str, st.SearchStrategy[Any]],
              optional: dict[str, st.SearchStrategy[Any]] | None = None,
              exclusive: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
    """The required fields, any of the optional ones, and of each ``exclusive`` group (the spellings
    of one argument, or two arguments meaning the same) at most one: most generated calls are valid,
    and the mutations below make the rest."""
    optional = optional or {}
    grouped = {name for group in exclusive for name in group}
    drawn = draw(st.fixed_dictionaries(required, optional={n: s for n, s in optional.items() if n not in grouped}))
    for group in exclusive:
        name = draw(st.sampled_from([None, *group]))
        if name is not None:
            drawn[name] = draw(optional[name])
    return drawn


IF_VERSION = ["if_version", "ifVersion"]
batch_entry = arguments(
    {"key": good_keys, "value": json_values},
    {"namespace": good_namespaces, "ttl": ttls, "tags": tags, "if_version": versions, "ifVersion": versions,
     "index": st.booleans()},
    exclusive=[IF_VERSION],
)
# One such entry makes the whole batch a refusal, which must write nothing.
bad_entry = arguments({"key": keys, "value": json_values | huge_text}, {"namespace": namespaces, "ttl": odd})
store_calls = arguments(
    {"action": st.just("store"), "key": keys, "value": json_values | huge_text | deep},
    {"namespace": namespaces, "ttl": ttls, "tags": tags, "if_version": versions, "ifVersion": versions,
     "index": st.booleans()},
    exclusive=[IF_VERSION],
)
store_batch_calls = arguments(
    {"action": st.just("store_batch"), "entries": st.lists(batch_entry | batch_entry | bad_entry, min_size=1,
                                                           max_size=5)},
    {"namespace": namespaces, "ttl": ttls, "tags": tags},
)
memory_usage_calls = st.one_of(
    store_calls, store_calls, store_batch_calls, store_batch_calls,  # writes twice as often as the rest
    arguments({"action": st.just("retrieve"), "key": keys}, {"namespace": namespaces}),
    arguments({"action": st.just("list")},
              {"namespace": namespaces, "prefix": st.sampled_from(["", "k", "agent"]), "limit": st.integers(1, 5),
               "cursor": odd_text}),
    arguments({"action": st.just("delete"), "key": keys},
              {"namespace": namespaces, "if_version": versions, "ifVersion": versions}, exclusive=[IF_VERSION]),
    arguments({"action": st.just("delete"), "namespace": namespaces}, {"confirm": st.booleans()}),
    arguments({"action": st.just("search")},
              {"pattern": st.sampled_from(["*", "k*", "agent-?", "["]), "query": words, "namespace": namespaces,
               "mode": st.sampled_from(["text", "semantic"]), "limit": st.integers(1, 20), "tags": tags}),
    arguments({"action": st.just("stats")}),
)
scores = st.floats(-1, 1)
memory_search_calls = st.one_of(*(
    arguments(
        {name: words},  # claude-flow's pattern, or our query
        {"namespace": namespaces, "k": st.integers(1, 100), "limit": st.integers(1, 100), "min_score": scores,
         "minScore": scores, "threshold": scores, "mode": st.sampled_from(["semantic", "text"]), "tags": tags},
        exclusive=[["k", "limit"], ["min_score", "minScore", "threshold"]],
    )
    for name in ("query", "pattern")
))
upload_file = st.one_of(
    arguments({"content": odd_text, "key": st.sampled_from(["a.txt", "dir/b.md", "../up", "", "x" * 2000])}),
    arguments({"path": st.sampled_from(["a.txt", "missing.txt", "/etc/passwd", "../a.txt"])},
              {"key": st.just("c")}),
    arguments({"contentBase64": st.sampled_from(["eA==", "!!!", ""]), "key": st.just("bin")},
              {"contentType": text}),
)
upload_batch_calls = arguments(
    {"files": st.lists(upload_file, min_size=1, max_size=3)},
    {"prefix": st.sampled_from(["", "run-1", "null", "../.."]), "maxConcurrency": st.integers(1, 80),
     "allOrNothing": st.booleans(), "overwrite": st.booleans()},
)
UNKNOWN_NAMES = ["ttl_seconds", "ifversion", "minscore", "IfVersion", "top_k", "colour", "namespaces", "Action"]


@st.composite
def mutated(draw: st.DrawFn, calls: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A call as generated, or with one field added (unknown or odd), given an odd value, or dropped."""
    arguments = dict(draw(calls))
    change = draw(st.sampled_from(["keep", "keep", "keep", "add", "retype", "drop"]))
    if change == "add":
        arguments[draw(st.sampled_from(UNKNOWN_NAMES) | text)] = draw(odd)
    elif change == "retype" and arguments:
        arguments[draw(st.sampled_from(sorted(arguments)))] = draw(odd)
    elif change == "drop" and arguments:
        del arguments[draw(st.sampled_from(sorted(arguments)))]
    return arguments


tool_calls = st.one_of(
    st.tuples(st.just("memory_usage"), mutated(memory_usage_calls)),
    st.tuples(st.just("memory_usage"), mutated(memory_usage_calls)),
    st.tuples(st.just("memory_search"), mutated(memory_search_calls)),
    st.tuples(st.just("upload_batch"), mutated(upload_batch_calls)),
)


# Checks -----------------------------------------------------------------------------------------

class Observer:
    """Sends calls and checks each answer against the listings before and after it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.namespaces = {*NAMESPACES, UPLOADS}
        self.listing: Listing = {}

    async def start(self) -> None:
        self.listing = await self.full_listing()

    async def run(self, calls: list[Call]) -> list[str]:
        """Sends the calls, checking each; returns how each was answered (for hypothesis' statistics)."""
        outcomes = [await self.check(tool, arguments) for tool, arguments in calls]
        # The server still answers, and what it answers agrees with the listing.
        assert {tool.name for tool in (await self.client.list_tools()).tools} == {
            "memory_usage", "memory_search", "upload_batch", "agents_spawn_parallel", "agent_list", "agent_terminate",
            "agent_changes", "agent_merge", "query_start", "query_control", "query_list", "query_wait"}
        for (namespace, key), (version, _) in list(self.listing.items())[:3]:
            got = await self.ok("memory_usage", {"action": "retrieve", "namespace": namespace, "key": key})
            assert got["found"] is True and got["entry"]["version"] == version
        return outcomes

    async def check(self, tool: str, arguments: dict[str, Any]) -> str:
        result = await self.client.call_tool(tool, arguments)
        before, after = self.listing, await self.full_listing()
        changed = {entry for entry in before.keys() | after.keys() if before.get(entry) != after.get(entry)}
        if result.is_error:
            text = error_text(result)
            assert text.split(":", 1)[0] in KNOWN_CODES, (tool, arguments, text)
            assert not changed, (tool, arguments, text, changed)  # refused means nothing written, all or none
            outcome = f"{tool}: {text.split(':', 1)[0]}"
        else:
            answer = result.structured_content
            assert isinstance(answer, dict), (tool, arguments, result)
            self.check_changes(tool, answer, before, after, changed)
            outcome = f"{tool}: {answer.get('action', 'ok')}"
        self.listing = after
        return outcome

    @staticmethod
    def check_changes(tool: str, answer: dict[str, Any], before: Listing, after: Listing,
                      changed: set[tuple[str, str]]) -> None:
        action = answer.get("action") if tool == "memory_usage" else tool
        if action == "delete":
            assert all(entry not in after for entry in changed) and len(changed) == answer["deleted"], answer
        elif action == "upload_batch":
            assert len(changed) <= 1, changed
            assert all(namespace == UPLOADS and entry not in before and after[entry][0] == 1
                       for entry in changed for namespace in [entry[0]]), changed
        elif action == "store":
            written = answer["entry"]
            entry = (written["namespace"], written["key"])
            assert changed == {entry}, (answer, changed)
            assert after[entry][0] == written["version"] == before.get(entry, (0, 0))[0] + 1, (entry, before.get(entry))
        elif action == "store_batch":
            assert answer["stored"] == len(answer["versions"]) == len(changed), (answer, changed)
            assert sorted(answer["versions"]) == sorted(after[entry][0] for entry in changed), (answer, changed)
            for entry in changed:
                assert after[entry][0] == before.get(entry, (0, 0))[0] + 1, (entry, before.get(entry))
        else:
            assert not changed, (answer, changed)

    async def full_listing(self) -> Listing:
        """Every entry of every namespace, paged; checked against ``stats`` on the way."""
        stats = (await self.ok("memory_usage", {"action": "stats"}))["stats"]
        self.namespaces |= {usage["namespace"] for usage in stats["namespaces"]}
        listing: Listing = {}
        for namespace in sorted(self.namespaces):
            page_arguments: dict[str, Any] = {"action": "list", "namespace": namespace, "limit": 1000}
            while True:
                page = await self.ok("memory_usage", page_arguments)
                listing.update({(namespace, e["key"]): (e["version"], e["size"]) for e in page["entries"]})
                if "next_cursor" not in page:
                    break
                page_arguments["cursor"] = page["next_cursor"]
        entries, sizes = Counter[str](), Counter[str]()
        for (namespace, _), (_, size) in listing.items():
            entries[namespace] += 1
            sizes[namespace] += size
        assert {u["namespace"]: (u["entries"], u["bytes"]) for u in stats["namespaces"]} == {
            namespace: (entries[namespace], sizes[namespace]) for namespace in entries}
        assert (stats["total_entries"], stats["total_bytes"]) == (len(listing), sum(sizes.values()))
        return listing

    async def ok(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return structured_of(await self.client.call_tool(tool, arguments))


async def test_generated_calls_keep_every_invariant(connect: Connect) -> None:
    async with connect() as client:
        observer = Observer(client)
        await observer.start()

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example])
        @given(calls=st.lists(tool_calls, min_size=1, max_size=CALLS_PER_EXAMPLE))
        def example(calls: list[Call]) -> None:
            for outcome in anyio.from_thread.run(observer.run, calls):
                hypothesis.event(outcome)

        await anyio.to_thread.run_sync(example)
