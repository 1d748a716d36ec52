"""Tool arguments as the client sent them, checked by our rules before a tool runs.

The SDK validates arguments with a pydantic model built from the tool function's signature,
but it ignores fields it does not know: a misspelt ``ifVersion`` turned a compare-and-set
into a plain overwrite, and ``ttl_seconds`` silently stored an entry that never expires.
Here every field the client sends must be one the tool knows, under its own name or a
quiet alias (the camelCase spellings claude-flow clients use), at the top level and inside
nested objects (store_batch entries, upload_batch files). Type and range checks stay the
SDK's, from the same signature, but their failures are reworded (`tools.support.wording`) into a
message that starts with ``invalid_argument`` and says what is accepted.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from pydantic import AliasChoices, BaseModel, ValidationError
from pydantic.fields import FieldInfo

from server.errors import InvalidArgument
from tools.support.unicode import lone_surrogate
from tools.support.wording import booleans_for_numbers, explain, shown, summary

# More unknown fields than this are summarised by count.
MOST_UNKNOWN = 3


def aliases(name: str, *others: str) -> AliasChoices:
    """A field's own name (the one its schema shows) and the other spellings accepted quietly.

    Use as ``Field(validation_alias=aliases("if_version", "ifVersion"))``: the schema lists
    only the first name, so aliases cost the model nothing in context."""
    return AliasChoices(name, *others)


# A listing's cursor is a row's sequence number: an SQLite integer, so at most 2**63 - 1 (19 digits).
MAX_SEQ_CURSOR = 2**63 - 1


def seq_cursor(cursor: str) -> int:
    """Where a listing continues: the ``next_cursor`` a previous page gave out (empty: the start)."""
    if not cursor:
        return 0
    # ASCII digits only: str.isdigit also accepts "²" and other digits int() refuses, and the length
    # check comes first so int() never meets a string beyond Python's digit limit.
    if len(cursor) > len(str(MAX_SEQ_CURSOR)) or not (cursor.isascii() and cursor.isdigit()) \
            or int(cursor) > MAX_SEQ_CURSOR:
        raise InvalidArgument(f"cursor must be a next_cursor this tool gave out (ASCII digits, at most "
                              f"{MAX_SEQ_CURSOR}); got {shown(cursor)}; pass next_cursor unchanged, or omit it")
    return int(cursor)


@dataclass(frozen=True)
class FieldShape:
    """One argument: its own name, every spelling accepted, and the object shape inside it, if any."""

    name: str
    spellings: tuple[str, ...]
    nested: ObjectShape | None = None
    # True: the field holds a list of such objects (entries, files); False: one object.
    many: bool = False


@dataclass(frozen=True)
class ObjectShape:
    """The fields an object (the call's arguments, or a nested object) may carry."""

    fields: tuple[FieldShape, ...]

    @classmethod
    def of(cls, model: type[BaseModel]) -> ObjectShape:
        shapes = []
        for field_name, info in model.model_fields.items():
            spellings = _spellings(field_name, info)
            nested, many = _nested_model(info.annotation)
            shapes.append(FieldShape(spellings[0], spellings, None if nested is None else cls.of(nested), many))
        return cls(tuple(shapes))

    def canonical(self, data: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """``data`` with every alias renamed to its field's own name, nested objects included.

        Raises `InvalidArgument` for fields this object does not have (``where`` says which
        object: empty for the call's arguments, ``entries[2].`` for a nested one), and for a
        field given under two spellings with different values."""
        by_spelling = {spelling: field for field in self.fields for spelling in field.spellings}
        unknown = [key for key in data if key not in by_spelling]
        if unknown:
            raise InvalidArgument(self._unknown(unknown, where))
        result: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for key, value in data.items():
            field = by_spelling[key]
            if field.name in given_as:
                if not _same(result[field.name], value):
                    raise InvalidArgument(
                        f"{where}{given_as[field.name]} and {where}{key} are the same argument; give it once "
                        f"(got {shown(result[field.name])} and {shown(value)})"
                    )
                continue
            given_as[field.name] = key
            result[field.name] = self._nested_canonical(field, value, f"{where}{field.name}")
        return result

    @staticmethod
    def _nested_canonical(field: FieldShape, value: Any, path: str) -> Any:
        # A value of the wrong type is left for the type check, which says what is expected.
        if field.nested is None:
            return value
        if not field.many:
            return field.nested.canonical(value, f"{path}.") if isinstance(value, dict) else value
        if not isinstance(value, list):
            return value
        return [
            field.nested.canonical(item, f"{path}[{index}].") if isinstance(item, dict) else item
            for index, item in enumerate(value)
        ]

    def _unknown(self, keys: list[str], where: str) -> str:
        noun = "field" if where else "argument"
        place = f" in {where.rstrip('.')}" if where else ""
        problems, all_suggested = [], True
        for key in keys[:MOST_UNKNOWN]:
            problem = f"unknown {noun} {shown(key)}{place}"
            suggestion = self.closest(key)
            all_suggested = all_suggested and suggestion is not None
            problems.append(problem if suggestion is None else f"{problem}; did you mean {suggestion}?")
        if len(keys) > MOST_UNKNOWN:
            problems.append(f"and {len(keys) - MOST_UNKNOWN} more unknown")
        text = "; ".join(problems)
        # A suggestion says enough; otherwise the full list of what is accepted does.
        return text if all_suggested else f"{text} (accepted: {', '.join(field.name for field in self.fields)})"

    def closest(self, key: str) -> str | None:
        """The field a misspelt or foreign name most likely meant: same letters ignoring case and
        separators (ifversion), a known name it starts with or that starts with it (ttl_seconds), or
        a near spelling (namespce)."""
        wanted = _letters(key)
        by_letters = {_letters(spelling): field.name for field in self.fields for spelling in field.spellings}
        if wanted in by_letters:
            return by_letters[wanted]
        # The longest known name sharing a prefix of at least 3 letters with the key.
        prefixed = [
            letters for letters in by_letters
            if min(len(letters), len(wanted)) >= 3 and (wanted.startswith(letters) or letters.startswith(wanted))
        ]
        if prefixed:
            return by_letters[max(prefixed, key=len)]
        near = difflib.get_close_matches(wanted, list(by_letters), n=1, cutoff=0.75)
        return by_letters[near[0]] if near else None


class ToolArguments:
    """Turns the arguments a client sent into the tool function's keyword arguments, or raises
    `InvalidArgument` saying what is wrong and what is accepted."""

    def __init__(self, metadata: FuncMetadata, input_schema: Mapping[str, Any]) -> None:
        self._metadata = metadata
        self._shape = ObjectShape.of(metadata.arg_model)
        self._schema = input_schema

    def keyword_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        # Checked as sent: memory_usage stores a string value exactly as it came (see its _as_sent).
        broken_text = lone_surrogate(arguments)
        if broken_text is not None:
            raise InvalidArgument(broken_text)
        # The SDK's pre-parsing next: it turns a list or object sent as JSON text (as some clients
        # do) into the list or object, so nested objects are checked in either form.
        parsed = self._metadata.pre_parse_json(dict(arguments))
        canonical = self._shape.canonical(parsed)
        misread = booleans_for_numbers(canonical, self._schema)
        if misread:
            raise InvalidArgument(summary(misread))
        try:
            model = self._metadata.arg_model.model_validate(canonical)
        except ValidationError as error:
            raise InvalidArgument(explain(error, self._schema)) from None
        return model.model_dump_one_level()


def _spellings(field_name: str, info: FieldInfo) -> tuple[str, ...]:
    """What pydantic accepts for the field, its schema name first."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    if isinstance(alias, str):
        return (alias,)
    return (info.alias or field_name,)


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The object model inside ``annotation`` (``Model``, ``Model | None``, ``list[Model] | None``),
    and whether it is a list of them."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _nested_model(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arm in get_args(annotation):
            found = _nested_model(arm)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        (item,) = get_args(annotation)
        inner, _ = _nested_model(item)
        return inner, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _letters(name: str) -> str:
    return "".join(character for character in name.lower() if character.isalnum())


def _same(first: Any, second: Any) -> bool:
    # Aliases name scalar arguments; anything else given twice is ambiguous, never compared deeply.
    scalars = (str, int, float, bool, type(None))
    return isinstance(first, scalars) and type(first) is type(second) and first == second
