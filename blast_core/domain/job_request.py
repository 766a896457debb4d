"""What a user may ask for: the request's JSON Schema (one definition validates requests and
documents the API), its validation naming every bad field, and the validated request, whose
every value is safe on a BLAST command line. Pure logic: database lookups are passed in."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from blast_core.domain import fasta, schema_errors
from blast_core.domain.client_input import (
    FieldError,
    InvalidRequest,
    is_number,
    is_text,
    is_whole_number,
)
from blast_core.domain.database import DatabaseInfo
from blast_core.domain.jobs import JOB_ID_PATTERN, database_names

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


QUERY_FIELD = {"type": "string", "minLength": 1, "format": "fasta",
               "description": "FASTA text with one or more sequences (a bare sequence is one "
                              "query). Give `query` or `query_upload`, not both."}


QUERY_UPLOAD_FIELD = {"type": "string", "pattern": JOB_ID_PATTERN,
                      "description": "The id of an upload (POST /api/uploads) holding the FASTA "
                                     "of the queries, for a query set of any size: a worker "
                                     "checks and splits it (the job is `validating` "
                                     "meanwhile), and the job takes this id."}


SUBJECT_FIELD = {"type": "string", "minLength": 1, "format": "fasta",
                 "description": "FASTA text of the sequences to align the queries with, instead "
                                "of a database (`blastn -subject`, NCBI's \"Align two or more "
                                "sequences\"): of the molecule the program searches, each "
                                "subject scored on its own."}


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
        "oneOf": [{"required": ["database"]}, {"required": ["subject"]}],
        "properties": {
            "query": QUERY_FIELD,
            "query_upload": QUERY_UPLOAD_FIELD,
            "database": {
                **_database_schema(None if databases is None else names["nucleotide"]
                                   + names["protein"]),
                "description": "Name of a database listed by GET /api/databases, or a list of "
                               f"up to {MAX_DATABASES} such names of the same molecule type, "
                               "searched together as one database (e-values against their "
                               "combined size). Give `database` or `subject`, not both."},
            "subject": SUBJECT_FIELD,
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
        "allOf": [{"oneOf": [{"required": ["query"]}, {"required": ["query_upload"]}]},
                  *rules],
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


_RequestValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
        "number": lambda _, value: is_number(value),
        "integer": lambda _, value: is_whole_number(value),
        "string": lambda _, value: is_text(value)}))


@dataclass(frozen=True)
class JobRequest:
    """A validated request: every value here is safe to put on a BLAST command line."""

    sequences: tuple[fasta.Sequence, ...]  # parsed once, headerless ones named
    database: str  # "" when searching `subject` sequences
    program: str
    task: str
    evalue: float
    max_target_seqs: int
    word_size: int | None = None
    filter: str | None = None
    subject: tuple[fasta.Sequence, ...] = ()
    query_upload: str = ""  # the upload holding the queries, when `sequences` is empty

    @property
    def queries(self) -> int:
        return len(self.sequences)

    @property
    def query_letters(self) -> int:
        return sum(len(sequence.residues) for sequence in self.sequences)

    @property
    def subject_letters(self) -> int:
        return sum(len(sequence.residues) for sequence in self.subject)


def parse_request(payload: Any, limits: fasta.QueryLimits,
                  find_database: Callable[[str], DatabaseInfo | None],
                  subject_limits: fasta.QueryLimits | None = None) -> JobRequest:
    """Validate a submitted job; raises InvalidRequest naming every bad field. Subject
    sequences have limits of their own (default: the query's)."""
    if not isinstance(payload, Mapping):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    errors = _schema_errors(payload)
    if errors:
        raise InvalidRequest(errors)
    program = payload.get("program", DEFAULT_PROGRAM)
    _, default_task, query_molecule, db_molecule = PROGRAMS[program]
    task = payload.get("task", default_task)
    try:
        sequences = fasta.validate(payload["query"], query_molecule, limits) \
            if "query" in payload else []
        if query_molecule == "protein":
            _refuse_nucleotides(sequences, program)
    except fasta.FastaError as error:
        errors.append(FieldError("query", str(error)))
        sequences = []
    names = database_names(payload.get("database", []))
    errors.extend(_database_errors(names, [find_database(name) for name in names], program,
                                   db_molecule))
    subject = _subject(payload, db_molecule, program, subject_limits or limits, errors)
    if errors:
        raise InvalidRequest(errors)
    return JobRequest(
        sequences=tuple(fasta.named(sequences)),
        subject=tuple(fasta.named(subject)),
        database=" ".join(names),
        program=program,
        task=task,
        evalue=float(payload.get("evalue", 10)),
        max_target_seqs=int(payload.get("max_target_seqs", 100)),
        word_size=int(payload["word_size"]) if "word_size" in payload else None,
        filter=payload.get("filter"),
        query_upload=payload.get("query_upload", ""),
    )


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


def _subject(payload: Mapping[str, Any], molecule: str, program: str,
             limits: fasta.QueryLimits, errors: list[FieldError]) -> list[fasta.Sequence]:
    """The subject sequences, validated as queries are, for the molecule the program
    searches; a fault goes on `errors`."""
    if "subject" not in payload:
        return []
    try:
        subject = fasta.validate(payload["subject"], molecule, limits)
        if molecule == "protein":
            _refuse_nucleotides(subject, program, "subject")
        return subject
    except fasta.FastaError as error:
        errors.append(FieldError("subject", str(error)))
        return []


def _refuse_nucleotides(sequences: list[fasta.Sequence], program: str,
                        role: str = "query") -> None:
    for index, sequence in enumerate(sequences, start=1):
        refuse_nucleotides(index, sequence, program, role)


def refuse_nucleotides(index: int, sequence: fasta.Sequence, program: str,
                       role: str = "query") -> None:
    """FastaError when a sequence a protein program is given looks like DNA."""
    if fasta.looks_like_nucleotides(sequence.residues):
        raise fasta.FastaError(f"{fasta.describe(index, sequence)} looks like a nucleotide "
                               f"sequence; {program} needs a protein {role}")


def _schema_errors(payload: Mapping[str, Any]) -> list[FieldError]:
    """What the request schema finds, one error per field: a rule between fields (the tasks
    of the program asked for, the word sizes of its task, a database or subject sequences)
    says more than the field's own range or choices, so its error is the one kept."""
    return schema_errors.field_errors(_RequestValidator(JOB_REQUEST_SCHEMA).iter_errors(payload),
                                      lambda error: _rule_error(error, payload))


# The fields of which a request gives one: what is said when it gives both, and neither.
_ONE_OF_TWO = {
    "database": ("give subject sequences or a database, not both",
                 "is required, or subject sequences instead"),
    "query": ("give the query in the request or as an upload, not both",
              "is required, or query_upload (an upload's id: POST /api/uploads) instead"),
}


def _rule_error(error: jsonschema.ValidationError,
                payload: Mapping[str, Any]) -> FieldError | None:
    """An error of a rule between fields, told with what the rule depends on; None for an
    error of a field's own."""
    if error.validator == "oneOf" and not error.absolute_path:  # one field of two
        first, second = (option["required"][0] for option in error.schema["oneOf"])
        both, neither = _ONE_OF_TWO[first]
        return FieldError(second, both) if first in error.instance else FieldError(first, neither)
    if "then" not in error.absolute_schema_path:
        return None
    program = payload.get("program", DEFAULT_PROGRAM)
    if error.absolute_path[0] == "task":
        return FieldError("task", f"{schema_errors.cut(repr(error.instance))} is not a task of "
                                  f"{program}; choose one of {', '.join(error.schema['enum'])}")
    # A task's rule, or (no task named) the rule of the program's default task.
    task = payload["task"] if "task" in payload else PROGRAMS[program][1]
    low, high = WORD_SIZES[task]
    return FieldError("word_size", f"must be from {low} to {high} for task {task}, not "
                                   f"{error.instance}")
