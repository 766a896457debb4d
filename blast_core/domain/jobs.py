"""The job: what a user may ask for, how it is validated, and the record kept of it.

Pure logic, no I/O: database lookups are passed in.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, NamedTuple

import jsonschema

from blast_core.blast.databases import DatabaseInfo
from blast_core.domain import fasta
from blast_core.domain.limits import MESSAGE_TTL, RunLimits, duration

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "failed", "cancelled")
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})
BATCH_PENDING, BATCH_RUNNING, BATCH_DONE, BATCH_FAILED = ".", "R", "D", "F"
UNFINISHED_BATCH_STATES = frozenset({BATCH_PENDING, BATCH_RUNNING})
# A result format's state on the record: asked for (its message is queued), made, or failed.
FORMAT_QUEUED, FORMAT_READY, FORMAT_FAILED = "queued", "ready", "failed"

# program -> (tasks, default task, query molecule, database molecule), as in BLAST+ 2.12;
# tblastx has no -task option, so its one "task" is the program itself (the runner omits -task).
PROGRAMS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "blastn": (("megablast", "dc-megablast", "blastn", "blastn-short"), "megablast",
               "nucleotide", "nucleotide"),
    "blastp": (("blastp", "blastp-fast", "blastp-short"), "blastp", "protein", "protein"),
    "blastx": (("blastx", "blastx-fast"), "blastx", "nucleotide", "protein"),
    "tblastn": (("tblastn", "tblastn-fast"), "tblastn", "protein", "nucleotide"),
    "tblastx": (("tblastx",), "tblastx", "nucleotide", "nucleotide"),
}

# task -> the -word_size range BLAST+ 2.12 accepts for it (dc-megablast: 11 or 12; protein
# words below 8, tblastx below 6); 1000 is this service's own ceiling for blastn.
MAX_WORD_SIZE = 1000
WORD_SIZES: dict[str, tuple[int, int]] = {
    "megablast": (4, MAX_WORD_SIZE), "dc-megablast": (11, 12), "blastn": (4, MAX_WORD_SIZE),
    "blastn-short": (4, MAX_WORD_SIZE), "blastp": (2, 7), "blastp-fast": (2, 7),
    "blastp-short": (2, 7), "blastx": (2, 7), "blastx-fast": (2, 7), "tblastn": (2, 7),
    "tblastn-fast": (2, 7), "tblastx": (2, 5),
}

DATABASE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
MAX_DATABASES = 10  # names in one search; BLAST+ searches them as one database
DEFAULT_PROGRAM = "blastn"


def request_schema(databases: Sequence[DatabaseInfo] | None = None) -> dict[str, Any]:
    """The JSON Schema of a job request: what validates requests (JOB_REQUEST_SCHEMA) and what
    the OpenAPI document shows. Rules between fields are `if`/`then` pairs: a program's tasks;
    the word size range of a task, and of a program's default task when none is named.

    With `databases` (the catalog, when the document is served) a database name is one of
    theirs, and one of the molecule each program searches. Validation checks these itself,
    against the catalog of the moment, to say which name is wrong and why."""
    names = {molecule: [d.name for d in databases or ()
                        if d.molecule == molecule and is_database_name(d.name)]
             for molecule in ("nucleotide", "protein")}
    rules: list[dict[str, Any]] = []
    for program, (tasks, default_task, _, db_molecule) in PROGRAMS.items():
        of_program = _condition("program", program, absent=program == DEFAULT_PROGRAM)
        then: dict[str, Any] = {"properties": {"task": {"enum": list(tasks)}}}
        if databases is not None:
            then["properties"]["database"] = _database_schema(names[db_molecule])
        rules.append({"if": of_program, "then": then})
        rules.append({"if": {**of_program, "not": {"required": ["task"]}},
                      "then": _word_size_range(default_task)})
    rules.extend({"if": _condition("task", task), "then": _word_size_range(task)}
                 for task in WORD_SIZES)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["query", "database"],
        "properties": {
            "query": {"type": "string", "minLength": 1, "format": "fasta",
                      "description": "FASTA text with one or more sequences (a bare sequence is "
                                     "one query)."},
            "database": {
                **_database_schema(None if databases is None else names["nucleotide"]
                                   + names["protein"]),
                "description": "Name of a database listed by GET /api/databases, or a list of "
                               f"up to {MAX_DATABASES} such names of the same molecule type, "
                               "searched together as one database (e-values against their "
                               "combined size)."},
            "program": {"type": "string", "enum": sorted(PROGRAMS), "default": DEFAULT_PROGRAM},
            "task": {"type": "string",
                     "enum": sorted({t for p in PROGRAMS.values() for t in p[0]}),
                     "description": "BLAST+ -task, one of the program's; default: the "
                                    "program's usual task (megablast for blastn)."},
            "evalue": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000, "default": 10},
            "max_target_seqs": {"type": "integer", "minimum": 1, "maximum": 5000,
                                "default": 100},
            "word_size": {"type": "integer", "minimum": 2, "maximum": MAX_WORD_SIZE,
                          "description": "BLAST+ -word_size; the range depends on the task "
                                         "(dc-megablast: 11 or 12; protein tasks: 2 to 7; "
                                         "tblastx: 2 to 5; other blastn tasks: at least 4). "
                                         "Default: the task's."},
            "filter": {"type": "string", "enum": ["yes", "no"],
                       "description": "Low-complexity filter of the query: DUST for blastn, "
                                      "SEG for the other programs. Default: the program's (on, "
                                      "but off for blastp)."},
        },
        "allOf": rules,
    }


def is_database_name(name: str) -> bool:
    """A name a request may give: a plain name, never a path."""
    return bool(re.match(DATABASE_NAME, name))


def _condition(field: str, value: str, absent: bool = False) -> dict[str, Any]:
    """`field` is `value`; with `absent`, a request without the field too (its default)."""
    condition: dict[str, Any] = {"properties": {field: {"const": value}}}
    return condition if absent else {**condition, "required": [field]}


def _word_size_range(task: str) -> dict[str, Any]:
    low, high = WORD_SIZES[task]
    return {"properties": {"word_size": {"minimum": low, "maximum": high}}}


def _database_schema(names: list[str] | None) -> dict[str, Any]:
    """One database name or a list of them; with `names`, only those (none: no value)."""
    if names == []:
        return {"not": {}}
    name = {"type": "string", "pattern": DATABASE_NAME, **({"enum": names} if names else {})}
    return {"oneOf": [name, {"type": "array", "items": name, "minItems": 1,
                             "maxItems": MAX_DATABASES, "uniqueItems": True}]}


JOB_REQUEST_SCHEMA: dict[str, Any] = request_schema()
NUMERIC_FIELDS = ("evalue", "max_target_seqs", "word_size")

JOB_ID_PATTERN = r"^[0-9a-f]{19}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)
_INVERTED_EPOCH_MS = 0xFFFFFFFFFFF  # 11 hex digits: room until the year 2527


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class InvalidRequest(ValueError):
    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors


# Numbers, text and JSON: what every entrance (a JSON body, the query string of a FASTA body,
# the NCBI API's parameters, GET /api/jobs?limit=) takes for a number, decided here only.

MAX_INTEGER_DIGITS = 20  # a longer integer literal is read as a float (see `_integer`)
MAX_JSON_DEPTH = 20  # a job request nests two levels: the object and a list of databases
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# A JSON string (its escapes skipped), or an unterminated one running to the end of the text;
# it always matches at a quote, so the scan never backtracks.
_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*(?:"|\\?\Z)', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


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


# JSON Schema with this service's numbers and strings: `number` and `integer` refuse NaN and
# infinities, `string` lone surrogates.
_RequestValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
        "number": lambda _, value: is_number(value),
        "integer": lambda _, value: is_whole_number(value),
        "string": lambda _, value: is_text(value)}))


def number_from_text(text: str) -> int | float | str:
    """The number that a text parameter spells, or the text itself, for validation to refuse
    by name. Only ASCII decimal notation is a number: Python's float() also reads `nan`,
    `inf`, `infinity` and `1_000`, and int() reads non-ASCII digits; `1e999` is too big."""
    candidate = text.strip()
    if not _DECIMAL.fullmatch(candidate):
        return text
    value = _integer(candidate) if _INTEGER.fullmatch(candidate) else float(candidate)
    return value if is_number(value) else text


def _integer(literal: str) -> int | float:
    """An integer literal; a long one as a float, far outside every field's range all the
    same: Python refuses to read an int of more than 4,300 digits (ValueError), and reading a
    long one takes time quadratic in its length."""
    return int(literal) if len(literal.lstrip("+-")) <= MAX_INTEGER_DIGITS else float(literal)


def read_json(text: str) -> Any:
    """A JSON request body, its nesting bounded before it is parsed: json.loads recurses once
    per level, and a body nested 100,000 levels deep would exhaust Python's stack. Numbers
    are read by `_integer` and float(); NaN and the infinities that json.loads lets through
    are refused by the request schema, by field."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest([FieldError("body", f"nests {depth} levels deep; the limit is "
                                                 f"{MAX_JSON_DEPTH}")])
    try:
        return json.loads(text, parse_int=_integer)
    except ValueError as error:
        raise InvalidRequest([FieldError("body", f"is not valid JSON: {error}")]) from None


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text, by a linear scan without recursion:
    strings are skipped (brackets in them do not count), and what remains of the text is
    reduced to its brackets. In invalid JSON the count may err only past the first fault,
    where json.loads stops anyway."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets), initial=0))


def new_job_id(now_ms: int | None = None) -> str:
    """Inverted milliseconds then randomness: ids sort newest first in Table storage."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{_INVERTED_EPOCH_MS - now_ms:011x}{secrets.token_hex(4)}"


def ids_since(since_ms: int) -> str:
    """The row key bound of jobs submitted at or after `since_ms`: their ids sort below it."""
    return f"{_INVERTED_EPOCH_MS - since_ms + 1:011x}"


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.match(text))


def submitted_ms(job_id: str) -> int:
    """When a job was submitted (milliseconds since the epoch), read from its id."""
    return _INVERTED_EPOCH_MS - int(job_id[:11], 16)


def expires_at(job_id: str, retention_days: float) -> datetime | None:
    """When a job expires: `retention_days` after its submission; None to keep it forever."""
    if retention_days <= 0:
        return None
    return (datetime.fromtimestamp(submitted_ms(job_id) / 1000, UTC)
            + timedelta(days=retention_days))


def expired_ids_bound(now_ms: int, retention_days: float) -> str:
    """The row key from which on (`ge`) every job has expired at `now_ms`: the jobs
    submitted before `now_ms` minus the retention, which sort last."""
    return ids_since(now_ms - round(retention_days * 86_400_000))


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    return format_time(datetime.now(UTC))


@dataclass(frozen=True)
class JobRequest:
    """A validated request: every value here is safe to put on a BLAST command line."""

    query: str
    database: str
    program: str
    task: str
    evalue: float
    max_target_seqs: int
    queries: int
    query_letters: int
    word_size: int | None = None
    filter: str | None = None


_NUCLEOTIDE_CODES = "ACGTUN"
_MIN_LETTERS_TO_JUDGE = 20  # shorter peptides of only these letters are plausible proteins


def parse_request(payload: Any, limits: fasta.QueryLimits,
                  find_database: Callable[[str], DatabaseInfo | None]) -> JobRequest:
    """Validate a submitted job; raises InvalidRequest naming every bad field."""
    if not isinstance(payload, Mapping):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    errors = _schema_errors(payload)
    if errors:
        raise InvalidRequest(errors)
    program = payload.get("program", DEFAULT_PROGRAM)
    _, default_task, query_molecule, db_molecule = PROGRAMS[program]
    task = payload.get("task", default_task)
    try:
        sequences = fasta.validate(payload["query"], query_molecule, limits)
        if query_molecule == "protein":
            _refuse_nucleotides(sequences, program)
    except fasta.FastaError as error:
        errors.append(FieldError("query", str(error)))
        sequences = []
    names = database_names(payload["database"])
    errors.extend(_database_errors(names, [find_database(name) for name in names], program,
                                   db_molecule))
    if errors:
        raise InvalidRequest(errors)
    return JobRequest(
        query=fasta.format_fasta(sequences),
        database=" ".join(names),
        program=program,
        task=task,
        evalue=float(payload.get("evalue", 10)),
        max_target_seqs=int(payload.get("max_target_seqs", 100)),
        queries=len(sequences),
        query_letters=sum(len(s.residues) for s in sequences),
        word_size=int(payload["word_size"]) if "word_size" in payload else None,
        filter=payload.get("filter"),
    )


def database_names(database: str | list[str]) -> list[str]:
    """The names a request's `database` (one name, or a list) or a job's (names joined by
    spaces, as BLAST's `-db` takes them) stands for."""
    return list(database) if isinstance(database, list) else database.split()


def _database_errors(names: list[str], found: list[DatabaseInfo | None], program: str,
                     db_molecule: str) -> list[FieldError]:
    """Every name must be a database, of the molecule the program searches; several are
    searched as one, so they cannot mix molecules."""
    errors = [FieldError("database", f"no database named {name!r}; GET /api/databases lists "
                                     "them")
              for name, info in zip(names, found, strict=True) if info is None]
    known = [info for info in found if info is not None]
    molecules = {info.molecule for info in known}
    if len(molecules) > 1:
        listed = "; ".join(f"{info.name!r} is {info.molecule}" for info in known)
        errors.append(FieldError("database", "databases searched together must be of one "
                                             f"molecule type: {listed}"))
    else:
        errors.extend(FieldError("database", f"{info.name!r} is a {info.molecule} database; "
                                             f"{program} needs {db_molecule}")
                      for info in known if info.molecule != db_molecule)
    return errors


def _refuse_nucleotides(sequences: list[fasta.Sequence], program: str) -> None:
    """A DNA query passes the protein alphabet, and blastp or tblastn would search it as
    protein without a word of warning: refuse what is (nearly) all A, C, G, T, U and N."""
    for index, sequence in enumerate(sequences, start=1):
        residues = sequence.residues
        nucleotides = sum(residues.count(letter) for letter in _NUCLEOTIDE_CODES)
        if len(residues) >= _MIN_LETTERS_TO_JUDGE and nucleotides >= 0.9 * len(residues):
            raise fasta.FastaError(f"{fasta.describe(index, sequence)} looks like a nucleotide "
                                   f"sequence; {program} needs a protein query")


def _schema_errors(payload: Mapping[str, Any]) -> list[FieldError]:
    """What the request schema finds, one error per field: a rule between fields (the tasks
    of the program asked for, the word sizes of its task) says more than the field's own
    range or choices, so its error is the one kept."""
    found: dict[str, FieldError] = {}
    for error in _RequestValidator(JOB_REQUEST_SCHEMA).iter_errors(payload):
        from_rule = "then" in error.absolute_schema_path
        field_error = _rule_error(error, payload) if from_rule else _schema_error(error)
        if from_rule or field_error.field not in found:
            found[field_error.field] = field_error
    return sorted(found.values(), key=lambda e: e.field)


def _rule_error(error: jsonschema.ValidationError, payload: Mapping[str, Any]) -> FieldError:
    """An error of an `if`/`then` rule, told with what the rule depends on."""
    program = payload.get("program", DEFAULT_PROGRAM)
    if error.absolute_path[0] == "task":
        return FieldError("task", f"{_cut(repr(error.instance))} is not a task of {program}; "
                                  f"choose one of {', '.join(error.schema['enum'])}")
    # A task's rule, or (no task named) the rule of the program's default task.
    task = payload["task"] if "task" in payload else PROGRAMS[program][1]
    low, high = WORD_SIZES[task]
    return FieldError("word_size", f"must be from {low} to {high} for task {task}, not "
                                   f"{error.instance}")


def _schema_error(error: jsonschema.ValidationError) -> FieldError:
    if error.validator == "oneOf":
        return _one_of_error(error)
    if error.validator == "additionalProperties":
        allowed = set(JOB_REQUEST_SCHEMA["properties"])
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
        return _schema_error(chosen[0])
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
    return _cut(json.dumps(value))


def _cut(text: str) -> str:
    """A value shown in a message: its start, if it is long (a request may be megabytes)."""
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Job:
    """The record of one job, as stored (without the query text, which is in Blob storage).

    A job is searched in `batches` batches; `batch_states` holds one letter per batch
    (`.` pending, `R` running, `D` done, `F` failed), so a batch's outcome and the job's
    counters change together in one ETag-conditional update of this record. `formats` holds
    the state of each result format asked for (JSON: name -> [state, since, error])."""

    id: str
    status: str
    database: str
    program: str
    task: str
    evalue: float
    max_target_seqs: int
    queries: int
    query_letters: int
    submitted_at: str
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    hits: int | None = None
    error: str | None = None
    word_size: int | None = None
    filter: str | None = None
    batches: int = 1
    batch_states: str = ""
    queries_done: int = 0
    seconds_queued: float = 0.0
    seconds_staging: float = 0.0
    seconds_blast: float = 0.0
    seconds_transfer: float = 0.0
    seconds_format: float = 0.0
    cpu_seconds_blast: float = 0.0
    traceparent: str = ""  # the submit's trace, which formatting later continues
    formats: str = ""

    @classmethod
    def submitted(cls, job_id: str, request: JobRequest, batches: int = 1,
                  traceparent: str = "") -> Job:
        return cls(id=job_id, status=QUEUED, database=request.database,
                   program=request.program, task=request.task, evalue=request.evalue,
                   max_target_seqs=request.max_target_seqs, queries=request.queries,
                   query_letters=request.query_letters, submitted_at=utc_now(),
                   word_size=request.word_size, filter=request.filter, batches=batches,
                   batch_states=BATCH_PENDING * batches, traceparent=traceparent)

    @property
    def databases(self) -> list[str]:
        return database_names(self.database)

    def cancel(self) -> Job:
        """Cancelled by its owner: final, so no pending batch will run."""
        return replace(self, status=CANCELLED, finished_at=utc_now())

    def batch_state(self, batch: int) -> str:
        return self.batch_states[batch]

    @property
    def batches_done(self) -> int:
        return self.batch_states.count(BATCH_DONE)

    @property
    def batches_failed(self) -> int:
        return self.batch_states.count(BATCH_FAILED)

    def batch_started(self, batch: int) -> Job:
        """A delivery of one batch begins; `attempts` counts deliveries over all batches."""
        return replace(self, status=RUNNING, started_at=self.started_at or utc_now(),
                       attempts=self.attempts + 1,
                       batch_states=self._with_state(batch, BATCH_RUNNING))

    def batch_unfinished(self, batch: int) -> bool:
        return self.status not in FINAL_STATUSES and \
            self.batch_states[batch] in UNFINISHED_BATCH_STATES

    def batch_finished(self, batch: int, queries: int, hits: int, timings: BatchTimings) -> Job:
        """Batch done, its times added to the job's; the job succeeds with the last one."""
        job = replace(self.timed(timings), batch_states=self._with_state(batch, BATCH_DONE),
                      queries_done=self.queries_done + queries, hits=(self.hits or 0) + hits)
        if job.batches_done == job.batches:
            job = replace(job, status=SUCCEEDED, finished_at=utc_now(), error=None)
        return job

    def timed(self, timings: BatchTimings) -> Job:
        """A batch's times added to the job's: also those of a batch stopped by a cancel,
        whose CPU time was spent all the same."""
        return replace(self, seconds_queued=self.seconds_queued + timings.queued,
                       seconds_staging=self.seconds_staging + timings.staging,
                       seconds_blast=self.seconds_blast + timings.blast,
                       seconds_transfer=self.seconds_transfer + timings.transfer,
                       cpu_seconds_blast=self.cpu_seconds_blast + timings.blast_cpu)

    def batch_failed(self, batch: int, reason: str) -> Job:
        """A batch failed for good, and with it the job."""
        where = f"batch {batch + 1} of {self.batches}: " if self.batches > 1 else ""
        return replace(self, status=FAILED, finished_at=utc_now(), error=where + reason,
                       batch_states=self._with_state(batch, BATCH_FAILED))

    def requeued(self) -> Job:
        """Back to the queue after a give-up: failed and running batches become pending
        again; `attempts` keeps counting."""
        states = self.batch_states.replace(BATCH_FAILED, BATCH_PENDING)
        return replace(self, status=QUEUED, finished_at=None, error=None,
                       batch_states=states.replace(BATCH_RUNNING, BATCH_PENDING))

    def unfinished_batches(self) -> list[int]:
        return [n for n, state in enumerate(self.batch_states) if state != BATCH_DONE]

    def _with_state(self, batch: int, state: str) -> str:
        states = self.batch_states
        return states[:batch] + state + states[batch + 1:]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_state(self, name: str) -> FormatState:
        """Where a result format stands (state None: never asked for)."""
        found = json.loads(self.formats).get(name) if self.formats else None
        return FormatState(**found) if found else FormatState()

    def _with_format(self, name: str, state: FormatState) -> str:
        states = json.loads(self.formats) if self.formats else {}
        states[name] = {k: v for k, v in state._asdict().items() if v is not None}
        return json.dumps(states, sort_keys=True)

    def format_queued(self, name: str) -> Job:
        return replace(self, formats=self._with_format(name, FormatState(FORMAT_QUEUED,
                                                                         utc_now())))

    def format_ready(self, name: str, seconds: float, size: int) -> Job:
        return replace(self, formats=self._with_format(name, FormatState(
            FORMAT_READY, utc_now(), size=size)), seconds_format=self.seconds_format + seconds)

    def format_failed(self, name: str, reason: str) -> Job:
        return replace(self, formats=self._with_format(name, FormatState(
            FORMAT_FAILED, utc_now(), error=reason)))

    def view(self, database_letters: int | None = None, price_per_core_second: float = 0.0,
             retention_days: float = 0.0) -> dict[str, Any]:
        """What the API shows: the record with the databases searched, batch progress instead
        of the raw states, where the time went (summed over batches; `total` is submission to
        end), the run summary, and when the job expires (null: never)."""
        data = self.to_dict()
        data["databases"] = self.databases
        expiry = expires_at(self.id, retention_days)
        data["expires_at"] = format_time(expiry) if expiry else None
        data.pop("batch_states")
        data.pop("cpu_seconds_blast")
        data.pop("traceparent")
        data["formats"] = {name: state["state"] for name, state in
                           (json.loads(self.formats) if self.formats else {}).items()}
        data["summary"] = self.summary(database_letters, price_per_core_second)
        data.update(batches_done=self.batches_done, batches_failed=self.batches_failed)
        timings = {name: round(data.pop(f"seconds_{name}"), 3) for name in TIMED_PHASES}
        timings["total"] = (round(_seconds_between(self.submitted_at, self.finished_at), 3)
                            if self.finished_at else None)
        data["timings"] = timings
        return data


    def summary(self, database_letters: int | None, price_per_core_second: float) -> dict[str, Any]:
        """The run summary, as ElasticBLAST's run-summary: the work (query and database
        letters), the CPU time BLAST used on it (user + system, summed over batches), the
        throughput (query letters per CPU second, once the job has succeeded), the deliveries
        it took, and what that CPU time costs at `price_per_core_second`."""
        cpu = self.cpu_seconds_blast
        return {
            "query_letters": self.query_letters,
            "database_letters": database_letters,
            "cpu_seconds": round(cpu, 3),
            "letters_per_cpu_second": (round(self.query_letters / cpu, 1)
                                       if self.status == SUCCEEDED and cpu > 0 else None),
            "attempts": self.attempts,
            "price_per_core_second": price_per_core_second,
            "estimated_cost": round(cpu * price_per_core_second, 6),
        }


TIMED_PHASES = ("queued", "staging", "blast", "transfer", "format")


class FormatState(NamedTuple):
    """A result format of a job: `state` (queued, ready, failed) since `at`; `size` in bytes
    once ready; `error` once failed."""

    state: str | None = None
    at: str | None = None
    error: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class BatchTimings:
    """Seconds one batch spent waiting in the queue, staging its database, in BLAST, and moving
    its query and archive to and from Blob storage; `blast_cpu`: CPU seconds BLAST used."""

    queued: float
    staging: float
    blast: float
    transfer: float
    blast_cpu: float = 0.0


def _seconds_between(start: str, end: str) -> float:
    return (parse_time(end) - parse_time(start)).total_seconds()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stranded_reason(job: Job, unchanged_seconds: float, limits: RunLimits) -> str | None:
    """Why an open job whose record has not changed for `unchanged_seconds` can no longer end
    by itself, or None while a message for it may still arrive (`limits` says how long one
    can take)."""
    unfinished = [n for n in range(job.batches) if job.batch_unfinished(n)]
    if not unfinished:
        return None
    quiet = duration(unchanged_seconds)
    where = f"batch {unfinished[0] + 1} of {job.batches}" if job.batches > 1 else "its search"
    if all(job.batch_states[n] == BATCH_RUNNING for n in unfinished) \
            and unchanged_seconds > limits.running_stale_after:
        return (f"stranded: {where} was running and nothing has happened for {quiet}; its "
                "worker stopped (an instance lost, or restarted past its function timeout) "
                "and no new delivery followed")
    if unchanged_seconds > limits.queued_stale_after:
        return (f"stranded: no queue message can still deliver {where} (nothing has happened "
                f"for {quiet}, and a message expires after {duration(MESSAGE_TTL)})")
    return None

