"""The modules a model's custom classes come from, and importing them: importing runs a module's code, so only for
a trusted source.

Two ways in: modules a recipe names (`source.imports`, `--import` on compare and inspect), looked up beside the
recipe first, then on sys.path; and, for a trusted model, the modules its own config names (`"module":
"keras_hub.src.models.bert.bert_backbone"`, a user's `mylayers` beside a registered `my>Scale`), where importing
them registers the classes Keras then deserializes. Knows nothing of recipes; of the pipeline, errors and
frameworks (TensorFlow is imported first, with edgeport's settings, before a module that imports Keras does).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.errors import ModelError, first_line
from pipeline.frameworks import import_tensorflow

# Classes from these come with Keras (both flavours) and need no import of the user's.
_FRAMEWORK_MODULES = ("keras", "tf_keras", "builtins")
# Where a class defined in a training script says it lives (Keras 3 records no module for it at all).
_SCRIPT_MODULES = ("__main__", "__mp_main__")
IMPORTS_HINT = (
    "set `source.trusted: true` (or pass --trust-model) to import the modules a trusted model names, and "
    "`source.imports: [MODULE]` (--import MODULE) for a module that registers them under another name"
)


@dataclass(frozen=True)
class CustomClass:
    """A class a model config names outside Keras: its registered (or plain) name and its module, if recorded."""

    name: str
    module: str | None

    @property
    def identity(self) -> str:
        """`module.name`, as an allowlist knows a class by its module."""
        return f"{self.module}.{self.name}"

    def describe(self) -> str:
        return f"{self.name} ({self.module or 'no module recorded: a training script'})"


def custom_classes(documents: Iterable[Any]) -> list[CustomClass]:
    """Each class the configs name with a module that is not Keras's own, or registered without one (a class a
    training script defined), once, in order of appearance."""
    found: dict[CustomClass, None] = {}
    for document in documents:
        for node in _dicts(document):
            module, registered = node.get("module"), node.get("registered_name")
            name = registered or node.get("class_name")
            if not isinstance(name, str) or "class_name" not in node:
                continue
            if isinstance(module, str) and not _is_framework(module):
                found.setdefault(CustomClass(name, module))
            elif module is None and isinstance(registered, str):
                found.setdefault(CustomClass(name, None))
    return list(found)


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            yield current
            pending.extend(reversed(list(current.values())))
        elif isinstance(current, list):
            pending.extend(reversed(current))


def _is_framework(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in _FRAMEWORK_MODULES)


def import_modules(modules: Iterable[str], base_dir: Path, what: str) -> None:
    """Import each module (dotted), with `base_dir` first on sys.path while doing so; a failure is a ModelError
    naming `what` asked for it, the module and why."""
    for module in modules:
        failure = _import(module, base_dir)
        if failure is not None:
            raise ModelError(f"{what}: cannot import {module} ({failure})")


def import_named_modules(classes: Iterable[CustomClass], base_dir: Path) -> list[str]:
    """Import the modules a trusted model's config names; what cannot be imported (a class defined in a script,
    a module elsewhere) is returned as `module (why)`, for the load error to show if Keras then misses a class."""
    failures = []
    for module in dict.fromkeys(custom.module for custom in classes):
        if module is None or module in _SCRIPT_MODULES:
            failures.append(f"{module or 'the module of a class'} (a training script's own class has none to import)")
            continue
        failure = _import(module, base_dir)
        if failure is not None:
            failures.append(f"{module} ({failure})")
    return failures


def _import(module: str, base_dir: Path) -> str | None:
    """None when `module` imported, else why not."""
    try:
        import_from(module, base_dir)
    except Exception as error:  # ImportError, or anything the module runs at import time
        return import_failure(error)
    return None


def import_from(module: str, base_dir: Path) -> ModuleType:
    """`module`, imported with `base_dir` first on sys.path (and TensorFlow first, quiet and with edgeport's
    settings, whatever the module imports). Raises what the import raises."""
    import_tensorflow()
    with _beside(base_dir), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def import_failure(error: BaseException) -> str:
    """Why an import failed, in one line: ImportError's own words, else the exception the module raised."""
    return str(error) if isinstance(error, ImportError) else f"{type(error).__name__}: {first_line(error, 300)}"


@contextlib.contextmanager
def _beside(base_dir: Path) -> Iterator[None]:
    """`base_dir` first on sys.path for the import alone: what it adds stays imported, the path is left as found."""
    entry = str(base_dir)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
