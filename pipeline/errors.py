"""The one exception family of edgeport; the CLI maps each class to an exit code."""


class EdgeportError(Exception):
    """Base of every error edgeport reports to a user (never shown as a traceback)."""

    exit_code = 2


class RecipeError(EdgeportError):
    """The recipe file is unreadable, violates the schema, or describes an impossible chain."""


class ModelError(EdgeportError):
    """The source model is missing, corrupt, untrusted or does not have what the recipe names."""


class DataError(EdgeportError):
    """A data section names a missing file or key, or its arrays do not fit the model."""


class StageError(EdgeportError):
    """A stage could not produce its artifact; the run goes on with the other outputs."""

    exit_code = 3


def first_line(error: BaseException, limit: int = 500) -> str:
    """The first line of an error's message (libraries attach pages), or its type when it has none."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
