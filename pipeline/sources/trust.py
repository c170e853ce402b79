"""What a Keras model file names, read from its config as JSON before Keras or tf_keras deserializes anything
(deserializing is what runs code), and, untrusted, refused unless every element is on the allowlist.

Three passes, each with its own words: serialized Python (Lambda layers of both Keras, Keras 3 `__lambda__`
functions, tf_keras `func_dump` triples marked by a sibling `<key>_type: "lambda"` such as a ResidualWrapper's
`residual_fn`, and any string that is base64 of a marshalled code object); custom classes (loading them imports
the modules the file names: pipeline.sources.imports); then the allowlist (pipeline.sources.allowlist.keras):
every class, every Keras function, every `TFOpLambda` function, and no file path as a lookup vocabulary. The
same check serves source files and the models earlier stages left in the cache. A leaf: the standard library,
h5py and those two modules; knows nothing of recipes or runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import zipfile
from pathlib import Path
from typing import Any

from pipeline.errors import ModelError
from pipeline.sources.allowlist import keras as allow
from pipeline.sources.imports import IMPORTS_HINT, custom_classes

TRUST_HINT = "set `source.trusted: true` in the recipe or pass --trust-model if you trust this file"
# A transformer's config.json is well under 1 MiB; a bigger one is a bomb, not a model.
MAX_CONFIG_BYTES = 64 << 20
_CONFIG_MEMBERS = ("config.json", "metadata.json")
_CODE_OBJECT_TAGS = (0x63, 0xE3)  # marshal's TYPE_CODE, without and with its FLAG_REF bit
_SHOWN = 5


def check_model_config(path: Path, trusted: bool) -> list[Any]:
    """Read `path`'s config within bounds (trusted or not) and return its documents; untrusted, raise a ModelError
    naming each place that carries Python code, else each custom class and the module it would import."""
    documents = read_model_config(path)
    if trusted:
        return documents
    carriers = [carrier for document in documents for carrier in code_carriers(document)]
    if carriers:
        more = f" and {len(carriers) - _SHOWN} more" if len(carriers) > _SHOWN else ""
        raise ModelError(
            f"{path}: refused: the model runs arbitrary Python code when loaded "
            f"({'; '.join(carriers[:_SHOWN])}{more}); {TRUST_HINT}"
        )
    # tfmot's classes name their own module, yet are on the list: the wrappers our qat stage saves.
    classes = [found for found in custom_classes(documents) if not allow.qualified_class_allowed(found.identity)]
    if classes:
        more = f" and {len(classes) - _SHOWN} more" if len(classes) > _SHOWN else ""
        raise ModelError(
            f"{path}: refused: the model needs custom classes, and loading them imports their modules, which runs "
            f"code: {', '.join(custom.describe() for custom in classes[:_SHOWN])}{more}; {IMPORTS_HINT}"
        )
    outside = list(dict.fromkeys(element for document in documents for element in outside_allowlist(document)))
    if outside:
        more = f"; and {len(outside) - _SHOWN} more" if len(outside) > _SHOWN else ""
        raise ModelError(
            f"{path}: refused: loading the model would run what edgeport's allowlist of pure computation does not "
            f"hold: {'; '.join(outside[:_SHOWN])}{more}; {TRUST_HINT}"
        )
    return documents


def read_model_config(path: Path) -> list[Any]:
    """The JSON documents of a `.keras` zip (config, metadata) or an `.h5` file (model and training config)."""
    if path.suffix.lower() == ".keras":
        return _keras_documents(path)
    return _h5_documents(path)


def _keras_documents(path: Path) -> list[Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            documents = []
            for member in archive.infolist():
                if member.filename not in _CONFIG_MEMBERS:
                    continue
                if member.file_size > MAX_CONFIG_BYTES:
                    raise ModelError(
                        f"{path}: {member.filename} inflates to {member.file_size:,} bytes "
                        f"(from {member.compress_size:,}); a model config is at most {MAX_CONFIG_BYTES:,}"
                    )
                # zipfile stops at the declared size, so a member that lies about it cannot read more.
                documents.append(json.loads(archive.read(member)))
            return documents
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ModelError(f"{path}: cannot load the model: not a readable .keras archive ({error})") from None


def _h5_documents(path: Path) -> list[Any]:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            texts = [handle.attrs.get(name) for name in ("model_config", "training_config")]
    except OSError as error:
        raise ModelError(f"{path}: not a readable HDF5 model ({error})") from None
    if texts[0] is None:
        raise ModelError(f"{path}: HDF5 file without a model config (weights only?); expected a full model")
    documents = []
    for text in texts:
        if text is None:
            continue
        raw = text if isinstance(text, str) else bytes(text).decode("utf-8", "replace")
        if len(raw) > MAX_CONFIG_BYTES:
            raise ModelError(f"{path}: its model config is {len(raw):,} bytes; at most {MAX_CONFIG_BYTES:,}")
        try:
            documents.append(json.loads(raw))
        except ValueError as error:
            raise ModelError(f"{path}: its model config is not JSON ({error})") from None
    return documents


def code_carriers(document: Any) -> list[str]:
    """Where `document` (parsed JSON) carries code: one phrase each, with the layer it sits in."""
    found: list[tuple[str, str]] = []
    _walk(document, "the model", found)
    # One phrase a layer: a Lambda layer's function, and the code string inside it, are that one carrier.
    first: dict[str, str] = {}
    for layer, phrase in sorted(found, key=lambda item: not item[1]):  # named carriers before bare bytecode
        first.setdefault(layer, phrase or f"marshalled bytecode in {layer}")
    return list(first.values())


def _walk(node: Any, layer: str, found: list[tuple[str, str]]) -> None:
    """Every value is visited: a carrier may hide under any key, and the `_type` tags are only hints."""
    if isinstance(node, list):
        for value in node:
            _walk(value, layer, found)
        return
    if not isinstance(node, dict):
        if isinstance(node, str) and _is_bytecode(node):
            found.append((layer, ""))
        return
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    layer = f"layer {name!r}" if isinstance(name, str) else layer
    class_name = node.get("class_name")
    if class_name == "Lambda":
        found.append((layer, f"Lambda layer {name!r}"))
    elif class_name == "__lambda__":
        found.append((layer, f"a lambda function in {layer}"))
    for key, value in node.items():
        if isinstance(key, str) and key.endswith("_type") and value == "lambda":
            found.append((layer, f"a lambda as {key.removesuffix('_type')} of {layer}"))
    for value in node.values():
        _walk(value, layer, found)


def _is_bytecode(text: str) -> bool:
    """Base64 whose first byte is a marshalled code object: what both Keras's function serializers write."""
    if len(text) < 16 or text[:2] not in ("4w", "Yw"):
        return False
    try:
        head = base64.b64decode(text[:16].replace("\n", ""), validate=False)
    except (binascii.Error, ValueError):
        return False
    return bool(head) and head[0] in _CODE_OBJECT_TAGS


def outside_allowlist(document: Any) -> list[str]:
    """Each element of `document` (parsed JSON) the allowlist lacks, as a phrase naming it and the layer it sits
    in. Every dict with a `class_name` is one: both Keras resolve such a dict as a class or function wherever it
    sits (a cell inside an RNN, a layer of a nested model, an initializer, an activation given as an object)."""
    found: list[str] = []
    _check(document, "the model", found)
    return found


def _check(node: Any, layer: str, found: list[str]) -> None:
    if isinstance(node, list):
        for value in node:
            _check(value, layer, found)
        return
    if not isinstance(node, dict):
        return
    config = node.get("config")
    # Every layer's config says whether it is trainable; a dtype policy's or an optimizer's name is no layer's.
    name = config.get("name") if isinstance(config, dict) and "trainable" in config else None
    layer = f"layer {name!r}" if isinstance(name, str) else layer
    if "class_name" in node:
        found.extend(f"{problem} in {layer}" for problem in _problems(node, config))
    for value in node.values():
        _check(value, layer, found)


def _problems(node: dict[str, Any], config: Any) -> list[str]:
    class_name = node["class_name"]
    if not isinstance(class_name, str):
        return [f"a class_name that is no name ({class_name!r})"]
    problem = _function_problem(node) if class_name == "function" else _class_problem(node, class_name)
    problems = [problem] if problem else []
    if isinstance(config, dict):
        if class_name in ("TFOpLambda", "SlicingOpLambda"):
            problems.extend(_tfop_problem(class_name, config.get("function")))
        problems.extend(
            f"a file path as the {key} of {class_name} ({config[key]!r}), which it opens when it loads"
            for key in allow.FILE_ARGUMENTS
            if isinstance(config.get(key), str)
        )
    return problems


def _class_problem(node: dict[str, Any], class_name: str) -> str | None:
    if class_name in allow.DATA_MARKERS:
        return None
    module, registered = node.get("module"), node.get("registered_name")
    if registered not in (None, class_name):
        # Keras 3 looks a registered name up before the module: it could stand for any class some import registered.
        return f"class {class_name!r} under the registered name {registered!r}"
    if isinstance(module, str):
        identity = f"{module}.{class_name}"
        allowed = allow.qualified_class_allowed(identity)
    elif module is None:
        identity, allowed = class_name, allow.bare_class_allowed(class_name)
    else:
        return f"class {class_name!r} with a module that is no name ({module!r})"
    if allowed:
        return None
    why = allow.excluded_why(identity, allow.EXCLUDED_KERAS3) or allow.excluded_why(identity, allow.EXCLUDED_TF_KERAS)
    return f"class {identity} ({why or 'not on the list'})"


def _function_problem(node: dict[str, Any]) -> str | None:
    module, name = node.get("module"), node.get("config")
    if isinstance(module, str) and isinstance(name, str) and allow.function_allowed(module, name):
        return None
    why = allow.excluded_why(f"{module}.{name}", allow.EXCLUDED_KERAS3)
    return f"function {module}.{name} ({why or 'not on the list'})"


def _tfop_problem(class_name: str, function: Any) -> list[str]:
    if isinstance(function, str) and function in allow.TFOP_FUNCTIONS:
        return []
    why = allow.excluded_why(function, allow.EXCLUDED_TFOP) if isinstance(function, str) else None
    return [f"TensorFlow function {function!r} called by a {class_name} ({why or 'not on the list'})"]
