"""Reading what a client sent: numbers that are finite and in plain ASCII decimals, text that
is text, and JSON whose nesting is bounded before it is parsed; and the error that names each
bad field. Pure logic."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

MAX_INTEGER_DIGITS = 20  # a longer integer literal is read as a float (see `integer`)


_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def is_number(value: object) -> bool:
    """A number as this service takes it: an int or a finite float. Never a bool (JSON's
    `true` is no number), NaN or an infinity: JSON has no literal for these, but Python's json
    module reads `NaN`, `Infinity` and `-Infinity`, and turns `1e400` into inf."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value))


def is_text(value: object) -> bool:
    """A string that is text: JSON's escapes can make a lone UTF-16 surrogate (\\ud800 to
    \\udfff), which is no character, and which no encoding writes (UnicodeEncodeError)."""
    return isinstance(value, str) and not _SURROGATE.search(value)


def is_whole_number(value: object) -> bool:
    """A number without a fraction; 5.0 counts, as JSON Schema's `integer` says."""
    return is_number(value) and (isinstance(value, int) or float(value).is_integer())


def number_from_text(text: str) -> int | float | str:
    """The number that a text parameter spells, or the text itself, for validation to refuse
    by name. Only ASCII decimal notation is a number: Python's float() also reads `nan`,
    `inf`, `infinity` and `1_000`, and int() reads non-ASCII digits; `1e999` is too big."""
    candidate = text.strip()
    if not _DECIMAL.fullmatch(candidate):
        return text
    value = integer(candidate) if _INTEGER.fullmatch(candidate) else float(candidate)
    return value if is_number(value) else text


def integer(literal: str) -> int | float:
    """An integer literal; a long one as a float, far outside every field's range all the
    same: Python refuses to read an int of more than 4,300 digits (ValueError), and reading a
    long one takes time quadratic in its length."""
    return int(literal) if len(literal.lstrip("+-")) <= MAX_INTEGER_DIGITS else float(literal)


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class InvalidRequest(ValueError):
    """A request refused for what its fields say; `status` is the HTTP status that says so."""

    status = 400
    summary = "the job request is invalid"

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors


class RequestConflict(InvalidRequest):
    """A well-formed request that what exists already rules out."""

    status = 409
    summary = "the job request conflicts with what exists"


class UnknownReference(InvalidRequest):
    """A field names something that does not exist."""

    status = 404
    summary = "the job request names what does not exist"


class ExpiredReference(InvalidRequest):
    """A field names something past its time."""

    status = 410
    summary = "the job request names what has expired"


# JSON Schema with this service's numbers and strings: `number` and `integer` refuse NaN and
# infinities, `string` lone surrogates.


MAX_JSON_DEPTH = 20  # a job request nests two levels: the object and a list of databases
# A JSON string (its escapes skipped), or an unterminated one running to the end of the text;
# it always matches at a quote, so the scan never backtracks.
_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*(?:"|\\?\Z)', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def read_json(text: str) -> Any:
    """A JSON request body, its nesting bounded before it is parsed: json.loads recurses once
    per level, and a body nested 100,000 levels deep would exhaust Python's stack. Numbers
    are read by `values.integer` and float(); NaN and the infinities that json.loads lets through
    are refused by the request schema, by field."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest([FieldError("body", f"nests {depth} levels deep; the limit is "
                                                 f"{MAX_JSON_DEPTH}")])
    try:
        return json.loads(text, parse_int=integer)
    except ValueError as error:
        raise InvalidRequest([FieldError("body", f"is not valid JSON: {error}")]) from None


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text, by a linear scan without recursion:
    strings are skipped (brackets in them do not count), and what remains of the text is
    reduced to its brackets. In invalid JSON the count may err only past the first fault,
    where json.loads stops anyway."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets), initial=0))
