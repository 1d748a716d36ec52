"""A batch of writes validated and encoded before it reaches the writer.

`prepare_batch` checks every `PutRequest` (naming every invalid one in a single error) and
encodes the rows `MemoryStore`'s upsert statement reads, all before the write is queued: a
refused batch never touches the shared transaction of a commit group. Encoding megabytes of
values takes long enough to stall the event loop, so `cheap_to_prepare` tells the store which
batches to prepare in a worker thread instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from server.errors import InvalidArgument, SwitchboardError, TooLarge
from server.memory.models import PutRequest
from server.memory.validation import (
    MemoryLimits,
    check_name,
    check_tags,
    check_ttl,
    check_version,
    encode_tags,
    encode_value,
)

# A batch whose values come to about this much is validated and encoded on the event loop (well
# under a millisecond); a costlier one in a worker thread, so other calls are not stalled.
INLINE_PREPARE_COST = 16 * 1024
# Problems listed in one batch error; the rest are counted.
BATCH_PROBLEMS_SHOWN = 10


def cheap_to_prepare(values: Sequence[Any], budget: int = INLINE_PREPARE_COST) -> bool:
    """Whether encoding these values costs less than ``budget`` (roughly bytes of JSON). Walks at
    most ``budget`` steps itself, so a huge or deeply nested value is judged costly at once."""
    pending: list[Any] = list(values)
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            budget -= len(item) + 2
        elif isinstance(item, dict):
            budget -= 2 + 8 * len(item)
            pending.extend(item.values())
            pending.extend(item.keys())
        elif isinstance(item, list | tuple):
            budget -= 2 + len(item)
            pending.extend(item)
        else:
            budget -= 8
        if budget < 0:
            return False
    return True


class PreparedPut(NamedTuple):  # a tuple: batches build ten thousand of these
    namespace: str
    key: str
    value_json: str
    tags_json: str
    size: int
    ttl_seconds: int | None
    if_version: int | None


def prepare_batch(
    requests: Sequence[PutRequest], limits: MemoryLimits, can_index: bool
) -> tuple[list[PreparedPut], str]:
    """Validate every request (naming every invalid one) and encode the rows the upsert reads: a
    JSON array of [namespace, key, value_json, tags_json, size, ttl_seconds]. ``can_index`` says
    whether the store has a vector index, without which ``index: true`` is refused."""
    prepared: list[PreparedPut] = []
    problems: list[tuple[int, SwitchboardError]] = []
    total_bytes = 0
    for position, request in enumerate(requests):
        try:
            put = _prepare(request, limits, can_index)
        except SwitchboardError as error:
            problems.append((position, error))
            continue
        prepared.append(put)
        total_bytes += put.size
        if total_bytes > limits.max_batch_bytes:  # stop encoding at once: the rest cannot change the answer
            raise TooLarge(
                f"the values of this batch come to more than {limits.max_batch_bytes} bytes "
                f"(SWITCHBOARD_MEMORY_MAX_BATCH_BYTES) by entry {position}; split it into smaller "
                "batches; nothing was written"
            )
    if problems:
        if len(requests) == 1:
            raise problems[0][1]
        raise _batch_error(problems, len(requests))
    if len({(p.namespace, p.key) for p in prepared}) < len(prepared):
        seen: set[tuple[str, str]] = set()
        for put in prepared:
            if (put.namespace, put.key) in seen:
                raise InvalidArgument(f"key {put.key!r} appears twice in namespace {put.namespace!r} in one batch")
            seen.add((put.namespace, put.key))
    rows = json.dumps([[p.namespace, p.key, p.value_json, p.tags_json, p.size, p.ttl_seconds] for p in prepared],
                      ensure_ascii=False)
    return prepared, rows


def _prepare(request: PutRequest, limits: MemoryLimits, can_index: bool) -> PreparedPut:
    namespace = check_name("namespace", request.namespace)
    key = check_name("key", request.key)
    value_json, size = encode_value(request.value, limits.max_value_bytes)
    tags = check_tags(request.tags)
    ttl = check_ttl(request.ttl_seconds, limits.max_ttl_seconds)
    if_version = check_version("if_version", request.if_version)
    if not isinstance(request.index, bool):
        raise InvalidArgument(f"index must be true or false; got {request.index!r}")
    if request.index and not can_index:
        raise InvalidArgument("index: true needs semantic indexing, which this memory store was opened without")
    return PreparedPut(namespace, key, value_json, encode_tags(tags), size, ttl, if_version)


def _batch_error(problems: list[tuple[int, SwitchboardError]], count: int) -> SwitchboardError:
    kinds = {type(error) for _, error in problems}
    kind = kinds.pop() if len(kinds) == 1 else InvalidArgument
    listed = "; ".join(f"entry {position}: {error.message}" for position, error in problems[:BATCH_PROBLEMS_SHOWN])
    more = f"; and {len(problems) - BATCH_PROBLEMS_SHOWN} more" if len(problems) > BATCH_PROBLEMS_SHOWN else ""
    summary = "" if len(problems) == 1 else f"{len(problems)} of {count} entries are invalid: "
    return kind(f"{summary}{listed}{more}; nothing was written")
