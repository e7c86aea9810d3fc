"""Errors and exit codes (as pySHACL documents them).

0 conforms / success, 1 violations found, 2 bad input or content (the message names the file,
the record and the field, or the rule) or an output file that cannot be written, 3 internal error
(a worker process lost, or a record the engine failed on), 130 interrupted (Ctrl-C; as a shell
reports a process ended by SIGINT).
"""
EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class CptkgError(Exception):
    """An error a user can act on. Carries where it happened."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message, *, file=None, record=None, field=None, line=None):
        self.message = message
        self.file = file
        self.record = record
        self.field = field
        self.line = line
        super().__init__(self.__str__())

    def where(self):
        parts = []
        if self.file:
            parts.append(str(self.file) + (f":{self.line}" if self.line else ""))
        if self.record is not None:
            parts.append(f"record {self.record}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def __str__(self):
        where = self.where()
        return f"{where}: {self.message}" if where else self.message

    def as_record(self):
        return {"error": self.message, "file": str(self.file) if self.file else None,
                "record": self.record, "field": self.field, "line": self.line}


class InputError(CptkgError):
    """Bad input data (an encounter or claim file)."""


class ContentError(CptkgError):
    """Bad content (ontology, query or shape file)."""


class WorkerLost(CptkgError):
    """A worker process of a batch ended without its result (killed, out of memory, crashed)."""

    exit_code = EXIT_INTERNAL


class RecordFailed(CptkgError):
    """The engine failed on one record of a batch (a defect): that record gets this error and the
    others of its chunk are processed. Its error record says so ("internal": true), and the
    command ends with exit 3."""

    exit_code = EXIT_INTERNAL

    def as_record(self):
        return {**super().as_record(), "internal": True}
