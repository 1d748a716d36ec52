"""`CheckedTool`: the SDK's tool, with our argument checks and our error answers.

The SDK's `Tool.run` validates arguments itself (ignoring unknown fields, answering in
pydantic's words with a documentation URL) and prefixes every failure with
``Error executing tool <name>``; an unexpected exception answers that and nothing else.
A `CheckedTool` keeps the SDK's schema, context injection and output validation, but:

- arguments go through `tools.support.arguments.ToolArguments` (unknown fields refused, aliases
  accepted, errors that say what is accepted);
- a `SwitchboardError` answers its own text, which starts with its code;
- anything else is logged with its traceback and answers ``internal: ...``;
- its schemas carry no ``title`` pydantic derives from each field's name ("If Version" for
  ``if_version``): clients show the model every tool's input schema in each session, and those
  titles were an eighth of it while saying nothing the name does not;
- an optional argument's input schema is its type alone, not ``anyOf [type, null]`` with
  ``default: null``: leaving it out says the same (null is still accepted as "not given"), for a
  ninth of what the model is shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any, Self

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from server.errors import SwitchboardError
from server.metrics import ServerMetrics
from tools.support.arguments import ToolArguments
from tools.support.errors import INTERNAL, error_result, internal_error_result

logger = logging.getLogger(__name__)


class CheckedTool(Tool):
    """A tool whose every answer is a result or a tool error starting with a stable code."""

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Self:
        tool = super().from_function(fn, *args, **kwargs)
        assert isinstance(tool, cls)
        _drop_titles(tool.parameters)
        _compact_optionals(tool.parameters)
        if tool.fn_metadata.output_schema is not None:
            _drop_titles(tool.fn_metadata.output_schema)
        return tool

    @cached_property
    def arguments(self) -> ToolArguments:
        return ToolArguments(self.fn_metadata, self.parameters)

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        began, outcome = time.perf_counter(), "ok"
        try:
            keyword_arguments = self.arguments.keyword_arguments(arguments)
            injected = {self.context_kwarg: context} if self.context_kwarg is not None else {}
            result = await self.fn_metadata.call_fn(self.fn, self.is_async, keyword_arguments, injected)
            if isinstance(result, CallToolResult) and result.is_error:
                outcome = "error"
            return self.fn_metadata.convert_result(result) if convert_result else result
        except MCPError:
            outcome = "protocol_error"
            raise  # a protocol-level error (JSON-RPC), not a tool failure: the SDK answers it as such
        except SwitchboardError as error:
            outcome = error.code
            logger.info("Tool %r refused: %r", self.name, str(error))
            return error_result(str(error))
        except Exception as error:
            outcome = INTERNAL
            logger.exception("Tool %r raised an unexpected exception", self.name)
            return internal_error_result(self.name, error)
        finally:
            self._count(context, outcome, time.perf_counter() - began)

    def _count(self, context: Context[Any, Any], outcome: str, seconds: float) -> None:
        try:
            services = context.request_context.lifespan_context
        except ValueError:  # called outside a request (the SDK's own tests do): nothing to count into
            return
        metrics = getattr(services, "metrics", None)
        if isinstance(metrics, ServerMetrics):
            metrics.record_tool_call(self.name, outcome, seconds)


def _drop_titles(schema: Any) -> None:
    """Removes the ``title`` keyword from a JSON schema and the schemas inside it (never a
    property that happens to be called ``title``)."""
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("title"), str):
        del schema["title"]
    for keyword in ("properties", "$defs", "patternProperties"):
        for inner in (schema.get(keyword) or {}).values():
            _drop_titles(inner)
    for keyword in ("items", "additionalProperties", "not"):
        _drop_titles(schema.get(keyword))
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for inner in schema.get(keyword) or []:
            _drop_titles(inner)


def _compact_optionals(schema: Any) -> None:
    """Rewrites every ``{"anyOf": [X, {"type": "null"}], "default": null, ...}`` inside ``schema``
    as ``{...X, ...}``: an optional argument, shown by its type."""
    if isinstance(schema, list):
        for inner in schema:
            _compact_optionals(inner)
        return
    if not isinstance(schema, dict):
        return
    arms = schema.get("anyOf")
    if isinstance(arms, list) and len(arms) == 2 and {"type": "null"} in arms:
        (kept,) = [arm for arm in arms if arm != {"type": "null"}]
        del schema["anyOf"]
        if "default" in schema and schema["default"] is None:
            del schema["default"]
        for name, value in kept.items():
            schema.setdefault(name, value)
    for name, inner in schema.items():
        if name in ("properties", "$defs", "patternProperties"):
            for nested in inner.values():
                _compact_optionals(nested)
        elif name in ("items", "additionalProperties", "not", "anyOf", "oneOf", "allOf", "prefixItems"):
            _compact_optionals(inner)
