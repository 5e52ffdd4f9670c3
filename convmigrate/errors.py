"""Typed errors, written to be shown to the user as one line.

Library code raises these and never prints. The CLI maps each type to an exit code in one place
(`cli/_errors.py`): 2 for bad usage or an unreadable input, 1 for a result that failed a check.
Every message says what is wrong and, where it can, what to do next.
"""

from __future__ import annotations

from pathlib import Path


class ConvmigrateError(Exception):
    """Base of every error the tool reports without a traceback."""

    exit_code = 2

    def in_context(self, context: str) -> ConvmigrateError:
        """The same error, its message led by `context` (e.g. which shard and tensor failed)."""
        self.args = (f"{context}: {self}",)
        return self

    def __reduce__(self) -> tuple:
        # Pickled as message + attributes, whatever __init__ takes: errors cross from the
        # processes that write shards (convmigrate/sharded.py) to the one that reports.
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(cls: type[ConvmigrateError], args: tuple, state: dict) -> ConvmigrateError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class UsageError(ConvmigrateError):
    """The command was asked for something it cannot do (bad option, bad output path...)."""


class MissingExtraError(UsageError):
    """A feature needs an optional dependency that is not installed (exit 2).

    Example: MissingExtraError("torch", "--trust-pickle") says `pip install 'convmigrate[torch]'`.
    """

    def __init__(self, extra: str, feature: str, problem: str = "which is not installed") -> None:
        self.extra, self.feature = extra, feature
        super().__init__(f"{feature} needs {extra}, {problem}: pip install 'convmigrate[{extra}]'")


class UnreadableCheckpointError(ConvmigrateError):
    """A file is not a checkpoint we can read, or it is damaged."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputExistsError(UsageError):
    """The output path exists and --force was not given."""


class WriteError(ConvmigrateError):
    """Writing the output failed; the previous file at the output path is left intact."""


class CheckFailedError(ConvmigrateError):
    """The result failed a check (verification, --strict). Exit code 1.

    Raised by the Python API with the failing result attached (`error.result`, whose `to_json()`
    is the report), so that a pipeline can still show what failed.
    """

    exit_code = 1
    result: object | None = None
