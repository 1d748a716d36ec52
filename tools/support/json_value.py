"""`JsonValue`: pydantic's ``JsonValue`` (any JSON value) with a schema that says so.

pydantic gives ``JsonValue`` the empty schema ``{}``: it accepts anything, but a strict client (the
MCP Inspector's ``--strict``) flags a schema with no validation keyword at all. A ``type`` listing
every JSON type admits exactly the same values and carries one; validation is pydantic's, unchanged.
"""

from __future__ import annotations

from typing import Annotated

import pydantic
from pydantic import WithJsonSchema
from typing_extensions import TypeAliasType

JSON_TYPES = ["array", "boolean", "null", "number", "object", "string"]

# A named alias, so the schema keeps one `$defs/JsonValue` that every use refers to.
JsonValue = TypeAliasType("JsonValue", Annotated[pydantic.JsonValue, WithJsonSchema({"type": JSON_TYPES})])
