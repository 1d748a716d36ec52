"""Every schema a client sees in tools/list holds up under a strict validator's reading.

The MCP Inspector's ``--strict`` mode warns about any (sub-)schema that carries no validation
keyword at all (``{}`` or only annotations such as a description): it accepts anything, so it
tells a client nothing. These tests apply the same rule to every tool's input and output schema,
through a real MCP client session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mcp import Client
from pydantic import BaseModel, ValidationError

from tools.support.json_value import JsonValue

Connect = Callable[[], Client]

# A schema holding one of these constrains what it accepts (or points to one that does).
VALIDATION_KEYWORDS = frozenset({
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "not", "$ref", "if",
    "properties", "patternProperties", "additionalProperties", "required", "propertyNames",
    "minProperties", "maxProperties", "dependentRequired", "dependentSchemas",
    "items", "prefixItems", "contains", "minItems", "maxItems", "uniqueItems",
    "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
})
# Keywords whose value is one schema, a map of name -> schema, or a list of schemas.
ONE_SCHEMA = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
NAMED_SCHEMAS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
LISTED_SCHEMAS = ("anyOf", "oneOf", "allOf", "prefixItems")


def unvalidated(schema: object, path: str) -> Iterator[str]:
    """The paths of every sub-schema of ``schema`` (itself included) with no validation keyword."""
    if not isinstance(schema, dict):
        return  # a boolean schema (`additionalProperties: false`) is a rule of its own
    if not VALIDATION_KEYWORDS & schema.keys():
        yield path
    for keyword in ONE_SCHEMA:
        if keyword in schema:
            yield from unvalidated(schema[keyword], f"{path}.{keyword}")
    for keyword in NAMED_SCHEMAS:
        for name, sub in (schema.get(keyword) or {}).items():
            yield from unvalidated(sub, f"{path}.{keyword}.{name}")
    for keyword in LISTED_SCHEMAS:
        for index, sub in enumerate(schema.get(keyword) or []):
            yield from unvalidated(sub, f"{path}.{keyword}[{index}]")


def test_the_walk_finds_an_empty_schema_nested_anywhere() -> None:
    # The rule itself, on a schema shaped like pydantic's old JsonValue one, so the test below
    # cannot pass by walking nothing.
    schema = {"type": "object", "properties": {"value": {"$ref": "#/$defs/JsonValue"},
                                               "tags": {"type": "array", "items": {"description": "a tag"}}},
              "$defs": {"JsonValue": {}, "Other": {"anyOf": [{"type": "string"}, {}]}}}
    assert sorted(unvalidated(schema, "s")) == ["s.$defs.JsonValue", "s.$defs.Other.anyOf[1]",
                                                "s.properties.tags.items"]


async def test_every_tool_schema_carries_a_validation_keyword_everywhere(connect: Connect) -> None:
    async with connect() as client:
        tools = (await client.list_tools()).tools
    assert {"memory_usage", "memory_search"} <= {tool.name for tool in tools}
    found = [path for tool in tools for path in unvalidated(tool.input_schema, f"{tool.name}.inputSchema")]
    found += [path for tool in tools if tool.output_schema is not None
              for path in unvalidated(tool.output_schema, f"{tool.name}.outputSchema")]
    assert found == []


class Holder(BaseModel):
    value: JsonValue


@pytest.mark.parametrize("value", [None, True, 0, -7, 2.5, "", "text", [], [1, "a", None], {}, {"a": {"b": [1.5]}}])
def test_json_value_still_accepts_every_json_value_unchanged(value: Any) -> None:
    assert Holder(value=value).value == value


@pytest.mark.parametrize("value", [object(), {1: "a key that is not a string"}, b"bytes", {"a": {1, 2}}])
def test_json_value_still_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(ValidationError):
        Holder(value=value)
