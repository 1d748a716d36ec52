"""Argument errors in words a person (or a model) can act on: which argument, what it must be,
and what was sent.

pydantic's own text names its model (``memory_usageArguments``), puts the constraint and the
input on separate lines and ends with a documentation URL; a client reading it learns that
``limit`` is "less than or equal to 1000" but not that it must also be at least 1. The
accepted values are read from the tool's input schema, the same one the model was shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# More problems than this in one call are summarised by count: the first ones are enough to act on.
MOST_PROBLEMS = 3
# Long strings are shown by their start: enough to recognise, never a wall of text.
SHOWN_CHARS = 60

Schema = Mapping[str, Any]


def explain(error: ValidationError, schema: Schema) -> str:
    """One problem per argument in error, joined (without the ``invalid_argument:`` code), e.g.
    ``limit must be an integer from 1 to 1000; got 5000``."""
    definitions: Schema = schema.get("$defs", {})
    problems: list[str] = []
    paths: set[str] = set()
    for detail in error.errors(include_url=False):
        path, node = _locate(detail["loc"], schema, definitions)
        if path in paths:  # a union reports each arm; one line per argument is enough
            continue
        paths.add(path)
        problems.append(_problem(detail, path, node, definitions))
    return summary(problems)


def summary(problems: Sequence[str]) -> str:
    """The first problems joined into one message, the rest counted."""
    text = "; ".join(problems[:MOST_PROBLEMS])
    if len(problems) > MOST_PROBLEMS:
        text += f"; and {len(problems) - MOST_PROBLEMS} more"
    return text


def booleans_for_numbers(arguments: Mapping[str, Any], schema: Schema) -> list[str]:
    """A line for each ``true``/``false`` sent where a number is expected.

    pydantic reads ``true`` as 1 for an integer argument; a client that sends ``"limit": true``
    has confused two arguments, and silently listing one entry would hide that."""
    definitions: Schema = schema.get("$defs", {})
    problems: list[str] = []

    def visit(value: Any, node: Schema, path: str) -> None:
        # Descends only where the schema describes the structure, never into free-form JSON values.
        node = _resolve(node, definitions)
        if isinstance(value, bool):
            if node.get("type") in ("integer", "number"):
                problems.append(f"{path} must be {accepted(node, definitions)}; got {shown(value)}")
        elif isinstance(value, dict) and "properties" in node:
            for key, item in value.items():
                if key in node["properties"]:
                    visit(item, node["properties"][key], f"{path}.{key}" if path else key)
        elif isinstance(value, list) and node.get("type") == "array" and "items" in node:
            for index, item in enumerate(value):
                visit(item, node["items"], f"{path}[{index}]")

    visit(arguments, schema, "")
    return problems


def accepted(node: Schema, definitions: Schema) -> str:
    """What a JSON Schema accepts: "an integer from 1 to 1000", "one of 'text', 'semantic'"."""
    node = _resolve(node, definitions)
    if "enum" in node:
        return "one of " + ", ".join(shown(choice) for choice in node["enum"])
    if "anyOf" in node:
        return " or ".join(accepted(arm, definitions) for arm in node["anyOf"] if arm.get("type") != "null")
    kind = node.get("type")
    if kind == "integer":
        return "an integer" + _range(node)
    if kind == "number":
        return "a number" + _range(node)
    if kind == "string":
        return "a string" + _length(node)
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        items = node.get("items")
        return _list_of(node, _plural(items, definitions) if items else "")
    if kind == "object" or "properties" in node:
        return "an object" + _members(node, definitions)
    return "any JSON value"


def shown(value: object) -> str:
    """A short, single-line rendering of a value the client sent, in JSON terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # str() of an int with thousands of digits is refused by Python (and useless to show).
        return str(value) if abs(value) < 10**40 else "an integer of more than 40 digits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        # repr escapes control characters and lone surrogates, so the message stays valid UTF-8.
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _problem(detail: ErrorDetails, path: str, node: Schema, definitions: Schema) -> str:
    kind = detail["type"]
    if kind == "missing":
        return f"{path} is required: {accepted(node, definitions)}"
    if kind == "recursion_loop":
        return f"{path} is nested too deeply"
    if kind == "extra_forbidden":
        return f"unknown argument {shown(detail['loc'][-1])}"
    if kind in ("value_error", "assertion_error"):
        message = detail["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return f"{path}: {message}"
    if kind in _CONSTRAINTS and not _bounded(node, definitions):
        # A bound the schema does not show: pydantic's words name it ("at most 500 items").
        return f"{path}: {detail['msg']}; got {_sized(detail['input'])}"
    if kind == "string_pattern_mismatch":
        pattern = detail.get("ctx", {}).get("pattern")
        return f"{path} must be {accepted(node, definitions)} matching {pattern}; got {shown(detail['input'])}"
    if kind in ("too_short", "too_long"):
        return f"{path} must be {accepted(node, definitions)}; got {_sized(detail['input'])}"
    return f"{path} must be {accepted(node, definitions)}; got {shown(detail['input'])}"


# pydantic's error types for a value of the right type outside a declared bound.
_CONSTRAINTS = frozenset({
    "too_short", "too_long", "string_too_short", "string_too_long", "string_pattern_mismatch",
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of",
})
# The JSON Schema keywords that carry those bounds.
_BOUND_KEYWORDS = frozenset({
    "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
})


def _bounded(node: Schema, definitions: Schema) -> bool:
    node = _resolve(node, definitions)
    return bool(_BOUND_KEYWORDS & node.keys()) or any(_bounded(arm, definitions) for arm in node.get("anyOf", ()))


def _sized(value: object) -> str:
    """A value shown with its size, for a too-short or too-long error: "a list of 501", "an empty list"."""
    if isinstance(value, list):
        return f"a list of {len(value)}" if value else "an empty list"
    if isinstance(value, dict):
        return f"an object of {len(value)} members" if value else "an empty object"
    return shown(value)


def _locate(location: Sequence[int | str], schema: Schema, definitions: Schema) -> tuple[str, Schema]:
    """The argument an error location points at, as ``entries[2].ttl``, and its schema.

    Stops at the first step the schema does not describe (pydantic adds union arm names such as
    ``list[...]`` inside JSON values): the argument up to there is what the client must fix."""
    path, node = "", _resolve(schema, definitions)
    for step in location:
        if isinstance(step, int) and node.get("type") == "array" and "items" in node:
            path, node = f"{path}[{step}]", node["items"]
        elif isinstance(step, str) and step in node.get("properties", {}):
            path, node = f"{path}.{step}" if path else step, node["properties"][step]
        elif isinstance(step, str) and isinstance(node.get("additionalProperties"), dict):
            path, node = f"{path}[{step!r}]", node["additionalProperties"]
        else:
            break
        node = _resolve(node, definitions)
    return path or "arguments", node


def _resolve(node: Schema, definitions: Schema) -> Schema:
    """Follows a ``$ref`` and unwraps ``X | None`` (absent and null mean the same to every tool)."""
    if "$ref" in node:
        return _resolve(definitions.get(node["$ref"].rsplit("/", 1)[-1], {}), definitions)
    arms = [arm for arm in node.get("anyOf", ()) if arm.get("type") != "null"]
    if len(arms) == 1:
        return _resolve(arms[0], definitions)
    return node


def _range(node: Schema) -> str:
    if "minimum" in node and "maximum" in node:
        return f" from {node['minimum']} to {node['maximum']}"
    low = f">= {node['minimum']}" if "minimum" in node else (
        f"> {node['exclusiveMinimum']}" if "exclusiveMinimum" in node else "")
    high = f"<= {node['maximum']}" if "maximum" in node else (
        f"< {node['exclusiveMaximum']}" if "exclusiveMaximum" in node else "")
    bounds = " and ".join(bound for bound in (low, high) if bound)
    return f" {bounds}" if bounds else ""


def _list_of(node: Schema, items: str) -> str:
    """"a list of strings", "a list of 1 to 500 strings", "a non-empty list of objects {...}"."""
    low, high = node.get("minItems"), node.get("maxItems")
    noun = items or "items"
    if low and high is not None:
        return f"a list of {low} to {high} {noun}"
    if high is not None:
        return f"a list of at most {high} {noun}"
    if low == 1:
        return f"a non-empty list of {noun}"
    if low:
        return f"a list of at least {low} {noun}"
    return f"a list of {items}" if items else "a list"


def _length(node: Schema) -> str:
    if "minLength" in node and "maxLength" in node:
        return f" of {node['minLength']} to {node['maxLength']} characters"
    if "minLength" in node:
        return f" of at least {node['minLength']} characters"
    if "maxLength" in node:
        return f" of at most {node['maxLength']} characters"
    return ""


def _plural(items: Schema, definitions: Schema) -> str:
    items = _resolve(items, definitions)
    kind = items.get("type")
    if kind in ("string", "integer", "number", "boolean") and "enum" not in items:
        return {"string": "strings", "integer": "integers", "number": "numbers", "boolean": "booleans"}[kind]
    if kind == "object" or "properties" in items:
        return "objects" + _members(items, definitions)
    return f"items, each {accepted(items, definitions)}"


def _members(node: Schema, definitions: Schema) -> str:
    """`` {key, value, namespace?}`` for an object with known fields; `` of strings`` for a map."""
    properties: Schema = node.get("properties", {})
    if properties:
        required = set(node.get("required", ()))
        return " {" + ", ".join(name if name in required else f"{name}?" for name in properties) + "}"
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return f" of {_plural(extra, definitions)}"
    return ""
