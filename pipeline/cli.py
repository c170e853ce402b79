"""The `edgeport` command line: parses arguments, calls the library, maps errors to exit codes.

Thin on purpose; heavy modules are imported inside the commands that need them, so `validate`,
`schema` and `--help` never import TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.core.heap import keep_heap_steady
from pipeline.core.text import PrintableStream
from pipeline.errors import EdgeportError, first_line

if TYPE_CHECKING:
    from pipeline.run import RunOptions

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, `kill`), raised where the run is so that it unwinds as from Ctrl-C: every
    finally block runs, and the conversion worker is stopped with the run instead of outliving it."""


def _terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the unwinding short (SIGKILL still can)
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr  # names from a model or a report reach the terminal escaped (core.text)
    sys.stdout, sys.stderr = PrintableStream(sys.stdout), PrintableStream(sys.stderr)
    try:
        return _main(argv)
    finally:  # a caller that runs main() in its own process gets its streams back
        sys.stdout, sys.stderr = streams


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The process is confined (pipeline.core.sandbox) before a command loads a model, for good: only where it is the
    # command's own (`edgeport`, `python -m pipeline`: argv from sys.argv), never a caller's that passes its own
    # argv (a test, a notebook), whose process must go on unconfined. The conversion worker is confined either way.
    args.sandbox = argv is None
    keep_heap_steady()  # before any batch is allocated: memory then stays flat in the number of samples
    try:
        previous: Any = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # main() called from a thread other than the main one: SIGTERM left as it is
        return _command(args)
    try:
        return _command(args)
    finally:  # a caller that runs main() in its own process gets its handler back
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _command(args: argparse.Namespace) -> int:
    """The command's exit code; every error is one line on stderr, never a traceback."""
    try:
        return int(args.command(args) or 0)
    except EdgeportError as error:
        print(f"edgeport: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        how = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
        print(f"edgeport: {how}; outputs not finished were left out, no report was written", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
    except Exception as error:  # a bug: one line and exit 3 (could not produce), never a traceback and exit 1
        print(f"edgeport: internal error: {type(error).__name__}: {first_line(error, 300)}", file=sys.stderr)
        return 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeport",
        description="Take a Keras or SavedModel through a recipe to TFLite and ONNX, and gate it on parity.",
        epilog="exit codes of run: 0 all gates passed, 1 a gate failed, 2 bad input (nothing ran), "
        "3 a stage could not produce its artifact (report still written) or the reports could not be written (none "
        "was), 130 Ctrl-C, 143 SIGTERM; of verify: 0 the file is an output the report passed, 1 it is not, 2 bad input",
    )
    parser.add_argument("--version", action="version", version=f"edgeport {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a recipe: build artifacts, check parity, write reports")
    run.add_argument("recipe", type=Path, nargs="+", help="recipe files, or directories of them")
    run.add_argument(
        "--out", type=Path, help="output directory (default: artifacts/<recipe name>/; several: artifacts/batch/)"
    )
    run.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run this many recipes at once (processes, dask workers); with one recipe, this many of its outputs",
    )
    run.add_argument(
        "--executor",
        choices=["local", "dask"],
        default="local",
        help="where recipes run: local (this machine) or dask (one task per recipe; needs edgeport[cluster])",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --executor dask: the scheduler (tcp://host:8786); default: a LocalCluster of --jobs workers",
    )
    run.add_argument("--only", nargs="+", metavar="NAME", help="run only these outputs")
    run.add_argument(
        "--trust-model",
        action="store_true",
        help="allow a source model whose loading runs arbitrary code (Lambda layers)",
    )
    run.add_argument("--batch-size", type=int, default=64, help="evaluation batch size (default 64)")
    run.add_argument("--cache-dir", type=Path, help="stage cache (default: $EDGEPORT_CACHE_DIR or ~/.cache/edgeport)")
    run.add_argument("--no-cache", action="store_true", help="build every stage afresh; read and write no cache")
    run.add_argument(
        "--no-isolation",
        action="store_true",
        help="convert in this process instead of a worker (saves ~2 s; a converter crash then ends the run)",
    )
    run.add_argument(
        "--verify-reproducible",
        action="store_true",
        help="build every output a second time with the cache bypassed and record whether the files are identical",
    )
    run.add_argument(
        "--stage-timeout",
        type=float,
        metavar="SECONDS",
        help="kill a conversion that runs longer and report its output as error (default: the recipe's "
        "stage_timeout, else 1800)",
    )
    run.add_argument(
        "--baseline", type=Path, metavar="REPORT", help="an earlier report.json: a metric that regressed fails (exit 1)"
    )
    run.set_defaults(command=_run)

    validate = commands.add_parser("validate", help="check a recipe (schema, chains, files) without running it")
    validate.add_argument("recipe", type=Path)
    validate.set_defaults(command=_validate)

    inspect = commands.add_parser("inspect", help="describe a model: format, signatures, inputs and outputs")
    inspect.add_argument("model", type=Path)
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    _trust_options(inspect)
    inspect.set_defaults(command=_inspect)

    _verify_parser(commands)

    compare = commands.add_parser(
        "compare",
        help="parity of any two artifacts (keras, savedmodel, tflite, onnx)",
        description="Run A and B on the same inputs and compare B with A; exit 1 when a --gate fails.",
    )
    compare.add_argument("reference", type=Path, metavar="A", help="the reference model")
    compare.add_argument("candidate", type=Path, metavar="B", help="the model compared with A")
    compare.add_argument("--data", type=Path, help="an .npz or .npy of inputs (default: random inputs)")
    compare.add_argument(
        "--inputs", nargs="+", metavar="KEY", help="npz key of the inputs, or NAME=KEY per model input"
    )
    compare.add_argument("--labels", help="npz key of integer labels (adds accuracy)")
    compare.add_argument(
        "--labels-output", metavar="NAME", help="A's output the labels are classes of (where several could be)"
    )
    compare.add_argument("--limit", type=int, help="use at most this many samples")
    compare.add_argument(
        "--cast", action="store_true", help="accept a cast of the data to A's input dtype that changes values"
    )
    compare.add_argument("--samples", type=int, default=64, help="random samples when no --data (default 64)")
    compare.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    compare.add_argument("--gate", action="append", default=[], metavar="METRIC=VALUE", help="e.g. max_abs=1e-4")
    for flag, pairs in (
        ("--map", "pair A's output REF with B's CAND where names, :N indices and shapes cannot"),
        ("--input-map", "feed A's input REF to B's input CAND where names and shapes cannot pair them"),
    ):
        compare.add_argument(flag, action="append", default=[], metavar="REF=CAND", help=f"{pairs} (repeatable)")
    compare.add_argument("--out", type=Path, help="also write report.json/md/html and junit.xml here")
    compare.add_argument("--signature", default="serving_default", help="SavedModel signature")
    compare.add_argument("--delegate", choices=["xnnpack", "none"], default="xnnpack", help="LiteRT delegate")
    _trust_options(compare)
    compare.add_argument("--batch-size", type=int, default=64)
    compare.set_defaults(command=_compare)

    _init_parser(commands)

    schema = commands.add_parser("schema", help="print the recipe JSON Schema")
    schema.set_defaults(command=_schema)
    return parser


def _init_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init",
        help="write a commented starter recipe for a model, which `edgeport run` takes to a verdict as written",
        description="Inspect MODEL (.keras, .h5, SavedModel directory or TF1 frozen .pb) and write a recipe: its "
        "inputs mapped to keys of --data (else seeded random data), fp32 / float16 / int8 TFLite, ONNX and static "
        "int8 ONNX outputs with their default gates, and labels when the npz has them.",
    )
    init.add_argument("model", type=Path, help="the model file or SavedModel directory")
    init.add_argument("--data", type=Path, help="an .npz of inputs (and labels); default: seeded random data")
    init.add_argument("--out", type=Path, default=Path("recipe.yaml"), help="the recipe to write (recipe.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    init.add_argument("--signature", default="serving_default", help="SavedModel signature")
    init.add_argument(
        "--graph-outputs",
        nargs="+",
        default=[],
        metavar="NAME",
        help="TF1 frozen graph: the tensors to fetch, where the graph has several likely outputs",
    )
    _trust_options(init)
    init.set_defaults(command=_init)


def _verify_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify",
        help="is FILE an output a report passed? exit 0 yes, 1 no, 2 bad input",
        description="Find FILE (a .tflite or .onnx) among the outputs of REPORT by its sha256 and check the provenance "
        "stamped in it against the report: exit 0 when it is an output the report passed, 1 when it is not (another "
        "or a changed file, or an output that failed), 2 on bad input.",
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="the .tflite or .onnx file to check")
    verify.add_argument(
        "--report", type=Path, required=True, metavar="REPORT", help="the report.json of the run that gated it"
    )
    verify.set_defaults(command=_verify)


def _run(args: argparse.Namespace) -> int:
    from pipeline.run.batch import recipe_paths

    if args.batch_size < 1 or args.jobs < 1:
        raise EdgeportError(f"--batch-size and --jobs must be at least 1 (got {args.batch_size}, {args.jobs})")
    if args.stage_timeout is not None and not args.stage_timeout > 0:
        raise EdgeportError(f"--stage-timeout must be a positive number of seconds (got {args.stage_timeout})")
    if args.scheduler is not None and args.executor != "dask":
        raise EdgeportError("--scheduler names a dask scheduler: it needs --executor dask")
    paths = recipe_paths(args.recipe)
    if len(paths) == 1 and not args.recipe[0].is_dir() and args.executor == "local":
        return _run_one(args, paths[0])
    from pipeline.run.batch import run_batch

    out_dir = args.out or Path("artifacts") / "batch"
    options, log = _run_options(args, out_dir), lambda line: print(line, file=sys.stderr, flush=True)
    summary = run_batch(paths, options, args.jobs, log, args.executor, args.scheduler)
    from pipeline.run.batch import summary_markdown

    print(summary_markdown(summary))
    print(f"summary: {out_dir / 'summary.md'}  {out_dir / 'summary.json'}  {out_dir / 'junit.xml'}")
    return int(summary["exit_code"])


def _run_one(args: argparse.Namespace, path: Path) -> int:
    from pipeline.recipe import load_recipe

    recipe = load_recipe(path)
    from pipeline.report import REPORT_FILES
    from pipeline.report.text import summary
    from pipeline.run import run_recipe

    out_dir = args.out or Path("artifacts") / recipe.spec.name
    options = _run_options(args, out_dir, args.jobs)
    options.confine = args.sandbox  # this process ends with the run: where it loads the model itself, confined
    report = run_recipe(recipe, options)
    print(summary(report))
    print("reports: " + "  ".join(str(out_dir / filename) for filename in REPORT_FILES))
    return int(report["exit_code"])


def _run_options(args: argparse.Namespace, out_dir: Path, jobs: int = 1) -> RunOptions:
    """`jobs`: outputs of the one recipe at once (a batch runs recipes at once instead)."""
    from pipeline.run import RunOptions

    return RunOptions(
        out_dir=out_dir,
        jobs=jobs,
        only=args.only,
        trust_model=args.trust_model,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        isolate=not args.no_isolation,
        baseline=args.baseline,
        verify_reproducible=args.verify_reproducible,
        stage_timeout=args.stage_timeout,
    )


def _trust_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--trust-model", action="store_true", help="allow models that run code when loaded")
    command.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (it registers the model's custom classes; from the current folder, then "
        "sys.path); needs --trust-model (repeatable)",
    )


def _import_modules(args: argparse.Namespace) -> None:
    """`--import` runs code, so it goes with --trust-model; modules resolve from the current folder first."""
    if args.imports and not args.trust_model:
        raise EdgeportError("--import runs the module's code: pass --trust-model too")
    from pipeline.sources.imports import import_modules

    import_modules(args.imports, Path.cwd(), "--import")


def _compare(args: argparse.Namespace) -> int:
    from pipeline.commands.compare import compare_artifacts, parse_gates, parse_map

    _import_modules(args)

    gates, tensor_map = parse_gates(args.gate), parse_map(args.map)
    input_map = parse_map(args.input_map, "--input-map")
    data = _compare_data(args)
    reads = [args.reference, args.candidate, *([args.data] if args.data else [])]
    _confine(args, reads, [args.out] if args.out else [])
    from pipeline.report import write_reports
    from pipeline.report.text import summary

    report = compare_artifacts(
        args.reference,
        args.candidate,
        data,
        gates,
        args.trust_model,
        args.signature,
        args.batch_size,
        args.delegate,
        tensor_map,
        input_map,
    )
    print(summary(report))
    if args.out:
        write_reports(report, args.out)
        print(f"reports: {args.out}")
    return int(report["exit_code"])


def _compare_data(args: argparse.Namespace) -> object:
    from pydantic import ValidationError

    from pipeline.recipe import DataSpec

    if args.data is None:
        document: dict[str, object] = {"random": {"samples": args.samples, "seed": args.seed}}
    elif args.data.suffix == ".npy":
        document = {"npy": str(args.data), "limit": args.limit, "cast": args.cast}
    else:
        keys = args.inputs or []
        inputs: object = dict(k.split("=", 1) for k in keys) if any("=" in k for k in keys) else (keys or [None])[0]
        if args.labels_output and not args.labels:
            raise EdgeportError("--labels-output names the output of --labels KEY: give --labels too")
        labels = {"key": args.labels, "output": args.labels_output} if args.labels_output else args.labels
        document = {"npz": str(args.data), "inputs": inputs, "labels": labels, "limit": args.limit, "cast": args.cast}
    try:
        return DataSpec.model_validate(document)
    except ValidationError as error:
        raise EdgeportError(f"--data: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def _validate(args: argparse.Namespace) -> int:
    from pipeline.recipe import load_recipe, stage_of
    from pipeline.sources.section import tf1_origin
    from pipeline.sources.tf1 import training_switch_warnings

    recipe = load_recipe(args.recipe)
    print(f"{args.recipe}: valid recipe {recipe.spec.name!r} ({recipe.source_label()} source)")
    for name, output in recipe.spec.outputs.items():
        chain = " → ".join(stage_of(entry)[0] for entry in output.stages)
        print(f"  {name}: {chain}")
    origin = tf1_origin(recipe.spec.source, recipe.base_dir)
    for warning in training_switch_warnings(origin) if origin is not None else []:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _init(args: argparse.Namespace) -> int:
    import shlex

    from pipeline.commands.init import InitRequest, init_recipe

    _import_modules(args)
    request = InitRequest(
        model=args.model,
        out=args.out,
        data=args.data,
        force=args.force,
        trusted=args.trust_model,
        imports=tuple(args.imports),
        signature=args.signature,
        graph_outputs=tuple(args.graph_outputs),
    )
    _confine(args, [args.model, *([args.data] if args.data else [])], [args.out.resolve().parent])
    written = init_recipe(request)
    print(f"wrote {written.path}: recipe {written.name!r}, {written.label}")
    print(f"  outputs: {', '.join(written.outputs)} (default gates written out)")
    for line in written.data:
        print(f"  {line}")
    for note in written.notes:
        print(f"  {note}")
    print(f"next: edgeport run {shlex.quote(str(written.path))}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from pipeline.recipe import recipe_schema

    print(json.dumps(recipe_schema(), indent=2))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from pipeline.commands.inspect import describe_model, format_description

    _import_modules(args)
    _confine(args, [args.model], [], needs_tensorflow=args.model.suffix.lower() not in {".tflite", ".onnx"})
    description = describe_model(args.model, trusted=args.trust_model)
    print(json.dumps(description, indent=2) if args.json else format_description(description))
    return 0


def _confine(args: argparse.Namespace, reads: list[Path], writes: list[Path], *, needs_tensorflow: bool = True) -> None:
    """Confine this process before it loads a model (pipeline.core.sandbox), trusted or not: it may read `reads`
    (and, trusted, their folders, where the classes a model names are imported from) and write `writes` (made
    first) and a temporary folder of its own. TensorFlow and tf_keras are imported first: Keras reads ~/.keras."""
    import atexit
    import os
    import shutil
    import tempfile
    from contextlib import suppress

    from pipeline.core.leftovers import make_work_dir
    from pipeline.core.sandbox import confine, existing_root
    from pipeline.frameworks import import_frameworks

    if not args.sandbox:
        return
    trusted = args.trust_model
    work = make_work_dir("confined-")
    atexit.register(shutil.rmtree, work, True)
    tempfile.tempdir = os.environ["TMPDIR"] = str(work)
    for folder in writes:
        with suppress(OSError):  # one that cannot be made fails where the command writes, with its own message
            folder.mkdir(parents=True, exist_ok=True)
    if needs_tensorflow:
        import_frameworks()
    # A TF1 meta graph is read with the checkpoint beside it: its folder.
    roots = [existing_root(path.resolve()) if path.suffix != ".meta" else path.resolve().parent for path in reads]
    confine([*roots, *(root.parent for root in roots if trusted)], writes, own=work)


def _verify(args: argparse.Namespace) -> int:
    from pipeline.commands.verify import verify_file

    verdict = verify_file(args.file, args.report)
    print(verdict.message)
    return verdict.exit_code
