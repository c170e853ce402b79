"""The one exception family of edgeport; the CLI maps each class to an exit code."""

import re


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
    """The line of an error's message that says what went wrong, or its type when it has none.

    Frameworks wrap the cause: Keras opens with "Exception encountered when calling X.call()." and puts the
    reason below; TensorFlow opens with "Graph execution error:" and a stack of frames before the op's own line
    ("indices[2,13] = 997 is not in [0, 977)"). Known causes are looked for first, then the first line that is
    no wrapper and no stack frame; the message's first line is the fallback.
    """
    text = _ANSI.sub("", str(error)).strip()
    if not text:
        return type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if any(pattern.search(line) for pattern in _CAUSES):
            follow = [more for more in lines[index + 1 : index + 3] if more.startswith(("Expected", "Received"))]
            return " ".join([line, *follow])[:limit]
    for line in lines:
        if not any(pattern.match(line) for pattern in _WRAPPERS):
            return line[:limit]
    return lines[0][:limit]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Lines that say what failed: Keras' structure check, TF op errors, converter and ONNX checker errors.
_CAUSES = [
    re.compile(r"structure of `?inputs`? doesn't match"),
    re.compile(r"indices\[[^\]]*\] = -?\d+ is not in \["),
    re.compile(r"No Op registered for"),
    re.compile(r"Incompatible shapes|Matrix size-incompatible|incompatible with the layer"),
    re.compile(r"^\w+(Error|Exception): "),
]
# Lines that only frame the cause.
_WRAPPERS = [
    re.compile(r"Exception encountered when calling"),
    re.compile(r"Graph execution error"),
    re.compile(r"Detected at node"),
    re.compile(r"in user code:"),
    re.compile(r"File \""),
    re.compile(r"Traceback"),
    re.compile(r"Arguments received by"),
    re.compile(r"Node: '"),
    re.compile(r"\[\["),
    re.compile(r"(return|raise|self\.|outputs = |result = )"),
]
