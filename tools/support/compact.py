"""`CompactModel`: tool answers that carry only the fields an action actually set."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SerializationInfo, SerializerFunctionWrapHandler, model_serializer


class CompactModel(BaseModel):
    """Leaves out optional fields that were never set, so each action's answer carries only what it
    means: a value stored as null comes back as null, a value that was not loaded is absent."""

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        data = handler(self)
        return {name: item for name, item in data.items() if item is not None or name in self.model_fields_set}
