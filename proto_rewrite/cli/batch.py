"""Batch conversion: several models (files, folders, globs) into an output folder, in parallel
processes, one bad model never stopping the others; the exit code is the worst of all."""

from __future__ import annotations

import glob
import io
import json
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing import connection
from pathlib import Path

from proto_rewrite.cli.options import FLAG_SPELLING
from proto_rewrite.errors import EXIT_INTERNAL, ProtoRewriteError, UsageError
from proto_rewrite.formats import is_onnx_path

MODEL_SUFFIXES = (".prototxt", ".onnx")


@dataclass
class BatchRecord:
    """What happened to one model of a batch (one JSON line with --format json)."""

    model: str
    status: str  # "converted", "unchanged", "failed" or "error"
    exit_code: int
    outputs: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # name, reason, message
    error: dict | None = None


def expand_models(patterns: list[str]) -> list[str]:
    """Files as given; folders searched (recursively) for .prototxt and .onnx; globs expanded."""
    models: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(str(p) for p in Path(pattern).rglob("*") if p.suffix.lower() in MODEL_SUFFIXES)
        elif os.path.exists(pattern) or not glob.has_magic(pattern):
            found = [pattern]
        else:
            found = sorted(glob.glob(pattern, recursive=True))
            if not found:
                raise UsageError(f"'{pattern}' matches no file")
        models += [model for model in found if model not in models]
    if not models:
        raise UsageError(f"no .prototxt or .onnx model in {', '.join(patterns)}")
    return models


def is_batch(args, models: list[str]) -> bool:
    return len(models) > 1 or os.path.isdir(args.model[0]) or (args.output is not None and os.path.isdir(args.output))


def _output_for(model: str, roots: list[str], out_dir: str) -> str:
    """Where a model of the batch goes: its path below the folder it was found in, or its name."""
    path = Path(model).resolve()
    for root in roots:
        root_path = Path(root).resolve()
        if root_path.is_dir() and root_path in path.parents:
            return str(Path(out_dir) / path.relative_to(root_path))
    return str(Path(out_dir) / path.name)


def run_batch(args, models: list[str], console, convert) -> int:
    """``convert``: ``convert_cmd.convert_one`` (given, so that this module does not import the
    command that calls it), run for each model with (args, model, output, console)."""
    if args.output is None and not args.dry_run:
        raise UsageError("a batch needs -o OUTDIR")
    if args.save_plan or args.output_weights or args.weights:
        raise UsageError(
            "--save-plan, --weights and --output-weights name one file: they do not apply to a batch",
            hint="put each caffemodel beside its prototxt with the same stem",
        )
    if args.output is not None:
        if os.path.exists(args.output) and not os.path.isdir(args.output):
            raise UsageError(f"-o {args.output} must be a folder for a batch of {len(models)} models")
        os.makedirs(args.output, exist_ok=True)
    jobs = [
        (args, model, None if args.output is None else _output_for(model, args.model, args.output), convert)
        for model in models
    ]
    targets = [output for _, _, output, _ in jobs if output is not None]
    clashes = sorted({t for t in targets if targets.count(t) > 1})
    if clashes:
        raise UsageError(
            f"several models would be written to the same file: {', '.join(clashes)}",
            hint="convert them in separate runs, or give their folders instead of a glob",
        )
    records = []
    progress = console.stderr.isatty() if hasattr(console.stderr, "isatty") else False
    if args.jobs > 1:
        for done, record in enumerate(run_in_processes(jobs, args.jobs), start=1):
            records.append(_report(record, done, len(jobs), args, console, progress))
    else:
        for done, job in enumerate(jobs, start=1):
            records.append(_report(_convert_job(job), done, len(jobs), args, console, progress))
    if progress:
        console.stderr.write("\r\033[K")
    if args.format != "json":
        console.out(summary_table(records))
    return max(record.exit_code for record in records)


def _report(record: BatchRecord, done: int, total: int, args, console, progress: bool) -> BatchRecord:
    if progress:
        from proto_rewrite.cli.console import printable  # a file name may hold terminal escapes too

        console.stderr.write(f"\r\033[K[{done}/{total}] {printable(str(record.model))}: {record.status}")
        console.stderr.flush()
    if args.format == "json":
        console.out(json.dumps(asdict(record)) + "\n")
    if record.error and not progress:
        console.error(f"error: {record.error['text']}")
    return record


def run_in_processes(jobs: list, workers: int) -> Iterator[BatchRecord]:
    """The records of ``jobs``, in their order, each converted in a process of its own, at most
    ``workers`` at a time. A process that dies (the out-of-memory killer, a signal, a crash in
    native code) fails its model with a record saying so; the others go on. When the batch is
    interrupted (SIGINT, SIGTERM), the running processes are stopped and their temporaries removed."""
    context = multiprocessing.get_context()
    waiting = list(enumerate(jobs))
    running: dict = {}  # receiving end -> (index, process, job)
    done: dict[int, BatchRecord] = {}
    next_index = 0
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                index, job = waiting.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(job, send), daemon=True)
                process.start()
                send.close()  # the child holds the only sending end: its death reads as end of file
                running[receive] = (index, process, job)
            for receive in connection.wait(list(running)):
                index, process, job = running.pop(receive)
                try:
                    record = receive.recv()
                except (EOFError, OSError):
                    record = None
                receive.close()
                process.join()
                done[index] = record if record is not None else _died(job, process)
            while next_index in done:
                yield done.pop(next_index)
                next_index += 1
    finally:
        _stop(list(running.values()))


def _worker(job, send) -> None:
    """A batch process: convert one model, send its record; an interrupt ends it quietly."""
    from proto_rewrite.cli.console import Terminated, terminate_as_interrupt

    try:
        with terminate_as_interrupt():
            record = _convert_job(job)
    except Terminated:  # temporaries removed on the way out
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    send.send(record)
    send.close()


def _stop(running: list) -> None:
    """Stop the processes of an interrupted batch: SIGTERM (they remove their temporaries), then SIGKILL."""
    for _, process, _ in running:
        if process.is_alive():
            process.terminate()
    for _, process, job in running:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
        _remove_temporaries(job, process.pid)


def _remove_temporaries(job, pid: int) -> None:
    from proto_rewrite.fileio import remove_stale_partials

    _, _, output, _ = job
    if output is not None and pid is not None:
        remove_stale_partials(os.path.dirname(output) or ".", pids={pid})


def _died(job, process) -> BatchRecord:
    """The record of a model whose process ended without one."""
    _, model, _, _ = job
    _remove_temporaries(job, process.pid)
    code = process.exitcode
    if code is not None and code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        how = f"was killed by {name}"
        if number == signal.SIGKILL:
            how += " (the out-of-memory killer sends it when memory runs out)"
    else:
        how = f"ended with exit status {code} and no result"
    error = WorkerDied(
        f"the process converting this model {how}; nothing was written for it",
        path=model,
        hint="convert it alone (--jobs 1) or on a machine with more memory; --max-tensor-bytes "
        "bounds what a model may ask for",
    )
    return BatchRecord(model, "error", error.exit_code, error={**error.to_dict(), "text": str(error)})


class WorkerDied(ProtoRewriteError):
    """The process converting one model of a batch died without a result."""


def _convert_job(job) -> BatchRecord:
    """Convert one model of a batch; never raises."""
    from proto_rewrite import output_guard
    from proto_rewrite.cli.console import Console

    args, model, output, convert_one = job
    quiet = type(args)(**{**vars(args), "format": "json", "save_plan": None})
    stdout, stderr = io.StringIO(), io.StringIO()
    console = Console(stdout, stderr, verbose=0, quiet=True)
    try:
        from proto_rewrite.input_guard import watch_inputs

        with watch_inputs(), output_guard.guarding([(model, "the model")] + _weights_beside(args, model)):
            if output is not None:
                os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
            code = convert_one(quiet, model, output, console)
    except ProtoRewriteError as err:
        err = err.with_flags(FLAG_SPELLING)  # the library names options by their Python names
        return BatchRecord(model, "error", err.exit_code, error={**err.to_dict(), "text": str(err)})
    except Exception:  # noqa: BLE001 - a bug, reported in the record, the batch goes on
        text = traceback.format_exc()
        return BatchRecord(model, "error", EXIT_INTERNAL, error={"error": "InternalError", "text": text})
    report = json.loads(stdout.getvalue())
    plan = report["plan"]
    status = "failed" if code else ("converted" if plan["rewrites"] or plan["edits"] else "unchanged")
    return BatchRecord(
        model,
        status,
        code,
        report["written"],
        [r["name"] for r in plan["rewrites"]],
        [{"name": s["name"], "reason": s["reason"], "message": s["message"]} for s in plan["skips"]],
    )


def _weights_beside(args, model: str) -> list:
    if getattr(args, "no_weights", False) or is_onnx_path(model):
        return []
    return [(str(Path(model).with_suffix(".caffemodel")), "the weights beside the model")]


def summary_table(records: list[BatchRecord]) -> str:
    from proto_rewrite.cli.console import printable

    rows = [("model", "status", "exit", "rewritten", "skipped (reason)")]
    for record in records:
        skipped = ", ".join(f"{s['name']} ({s['reason']})" for s in record.skipped)
        if record.error:
            skipped = record.error.get("message") or record.error["error"]
        rows.append(
            tuple(
                printable(cell)
                for cell in (
                    record.model,
                    record.status,
                    str(record.exit_code),
                    ", ".join(record.rewritten) or "-",
                    skipped or "-",
                )
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    counts = {
        status: sum(r.status == status for r in records) for status in ("converted", "unchanged", "failed", "error")
    }
    lines.append(", ".join(f"{count} {status}" for status, count in counts.items() if count) + f" of {len(records)}")
    return "\n".join(lines) + "\n"
