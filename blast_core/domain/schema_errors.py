"""What JSON Schema finds wrong in a request, said as one error per field, in words a user
reads: the field, and why (the allowed fields, the range, the choices, the type). Pure logic;
the rules between fields are the caller's to explain (`job_request.py`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import jsonschema

from blast_core.domain.client_input import FieldError


def field_errors(errors: Iterable[jsonschema.ValidationError],
                 rule_error: Callable[[jsonschema.ValidationError], FieldError | None],
                 ) -> list[FieldError]:
    """One error per field, sorted by field. `rule_error` explains the errors of rules
    between fields (None for any other); such an error says more than the field's own, so
    it is the one kept."""
    found: dict[str, FieldError] = {}
    for error in errors:
        field_error = rule_error(error)
        if field_error is not None:
            found[field_error.field] = field_error
            continue
        field_error = schema_error(error)
        found.setdefault(field_error.field, field_error)
    return sorted(found.values(), key=lambda e: e.field)


def schema_error(error: jsonschema.ValidationError) -> FieldError:
    if error.validator == "oneOf":
        return _one_of_error(error)
    if error.validator == "additionalProperties":
        allowed = set(error.schema["properties"])
        unknown = sorted(set(error.instance) - allowed)
        return FieldError(unknown[0] if unknown else "body",
                          f"unknown field; allowed fields are {', '.join(sorted(allowed))}")
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return FieldError(missing, "is required")
    path = list(error.absolute_path)
    if not path:
        return FieldError("body", _reason(error))
    item = f"item {path[1] + 1} " if len(path) > 1 and isinstance(path[1], int) else ""
    return FieldError(str(path[0]), item + _reason(error))


def _one_of_error(error: jsonschema.ValidationError) -> FieldError:
    """A value of a one-of field (a name or a list of names): the error of the alternative
    its type chose, or what the alternatives are."""
    chosen = [e for e in error.context if e.validator != "type" or e.relative_path]
    if chosen:
        return schema_error(chosen[0])
    kinds = " or ".join(_TYPE_NAMES.get(option.get("type"), str(option.get("type")))
                        for option in error.schema["oneOf"])
    return FieldError(str(error.absolute_path[0]), f"must be {kinds}, not {_json(error.instance)}")


_TYPE_NAMES = {"number": "a number", "integer": "a whole number", "string": "a string",
               "array": "a list"}


def _reason(error: jsonschema.ValidationError) -> str:
    schema = error.schema
    kind = error.validator
    if kind == "type":
        kind_name = _TYPE_NAMES.get(schema["type"], schema["type"])
        if isinstance(error.instance, float) and not math.isfinite(error.instance):
            kind_name = "a finite number"  # NaN, Infinity, or a literal beyond a double's range
        if isinstance(error.instance, str) and schema["type"] == "string":
            return r"must be text, without a lone surrogate (\ud800 to \udfff)"
        return f"must be {kind_name}, not {_json(error.instance)}"
    if kind == "enum":
        return f"{_json(error.instance)} is not one of {', '.join(map(str, schema['enum']))}"
    if kind in ("minimum", "maximum", "exclusiveMinimum"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        low_text = f"at least {low}" if "minimum" in schema else f"above {low}"
        return f"must be {low_text} and at most {schema['maximum']}, not {error.instance}"
    if kind == "pattern":
        return ("must be a plain name (letters, digits, '.', '_', '-'; no paths), "
                f"not {_json(error.instance)}")
    if kind in ("minLength", "minItems"):
        return "must not be empty"
    if kind == "maxItems":
        return f"must have at most {schema['maxItems']} items, not {len(error.instance)}"
    if kind == "uniqueItems":
        return "must not name a database twice"
    return error.message


def _json(value: Any) -> str:
    return cut(json.dumps(value))


def cut(text: str) -> str:
    """A value shown in a message: its start, if it is long (a request may be megabytes)."""
    return text if len(text) <= 60 else text[:57] + "..."
