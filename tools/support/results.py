"""How a tool answers: the structured result, and the same JSON, compact, as the text content.

The SDK's default text is the result pretty-printed; clients put that text in the model's
context on every call, so the indentation is paid for in tokens. Compact JSON says the same.
"""

from __future__ import annotations

import json

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel


def structured(result: BaseModel) -> CallToolResult:
    data = result.model_dump(mode="json", by_alias=True)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)
