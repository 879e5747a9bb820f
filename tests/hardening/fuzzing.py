"""Fuzzing the three readers through the CLI: real files, mutated by hypothesis.

Seeds are real models: the corpus prototxts (tests/data/caffe) and the samples' caffemodels and
ONNX models (samples/), plus the small good models of tests/data/bad. The caffemodels are
*sliced*: layers whose weights exceed 64 KB lose their blobs (the net keeps them; proto-rewrite
warns that they have no weights), so an example reads and writes kilobytes, not megabytes.

A mutation is a few edits. Binary files get either byte edits (bit flips, byte changes,
truncations, deletions, insertions, duplicated ranges), aimed mostly at the bytes that carry
structure (tags, lengths, small fields; :func:`structural_offsets`) rather than inside weight
payloads, or record edits: the file as a tree of protobuf records (:func:`parse_tree`), a record
deleted, duplicated, swapped with a sibling, or its value replaced (extreme varints, another
name from the file, random bytes), serialized again with every length right, so that the damage
gets past the wire format into the readers' checks. Text gets lines deleted, duplicated or
swapped and tokens replaced by others or by hostile ones (-1, 99999999999, nan, braces, quotes).

Each example runs one command of the CLI in process (``convert``, which reads, plans, rewrites
and writes; for the ``export`` target, ``export`` of a mutated prototxt) and must end with exit 0
or with a typed error (exit 2): never a traceback, never more than :data:`EXAMPLE_SECONDS`. Used by ``tests/hardening/test_fuzz.py`` (a few dozen
examples per reader) and ``benchmarks/fuzz.py`` (long runs).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from cli_run import ExampleTimeout, Run, run_cli
from hypothesis import strategies as st

from proto_rewrite.wire import (
    I32,
    I64,
    LEN,
    VARINT,
    WireFormatError,
    encode_varint,
    iter_fields,
    len_header,
    read_varint,
)

ROOT = Path(__file__).resolve().parents[2]
CAFFE_DATA = ROOT / "tests" / "data" / "caffe"
BAD = ROOT / "tests" / "data" / "bad"
SAMPLES = ROOT / "samples"
EXAMPLE_SECONDS = 20  # the per-example guard; an example normally takes well under a second
SLICE_BYTES = 64 * 1024
MAX_OFFSETS = 20000

NET_LAYER, LAYER_BLOBS = 100, 7


@dataclass(frozen=True, repr=False, eq=False)
class Seed:
    """A file to mutate, with the files that go beside it unchanged (a caffemodel's prototxt, an
    ONNX model's external data)."""

    name: str
    data: bytes
    offsets: tuple[int, ...] = ()
    companions: dict[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Seed({self.name!r}, {len(self.data)} bytes)"

    @functools.cached_property
    def tree(self):
        return parse_tree(self.data)

    @functools.cached_property
    def leaves(self) -> list[bytes]:
        return sorted(set(leaf_payloads(self.tree or ())))


def structural_offsets(data: bytes) -> tuple[int, ...]:
    """Offsets of the bytes that carry structure: every tag and length, small values, the first
    bytes of large payloads. Nested messages are found by trying to parse every length-delimited
    payload as one."""
    found: list[int] = []

    def walk(start: int, end: int, depth: int) -> bool:
        try:
            records = list(iter_fields(data, start, end))
        except WireFormatError:
            return False
        if not records:
            return False
        for record in records:
            found.extend(range(record.start, record.value_start))
            if record.wire_type == LEN:
                if depth < 12 and record.end > record.value_start and walk(record.value_start, record.end, depth + 1):
                    continue
                found.extend(range(record.value_start, min(record.end, record.value_start + 8)))
            else:
                found.extend(range(record.value_start, record.end))
        return True

    walk(0, len(data), 0)
    if len(found) > MAX_OFFSETS:
        step = len(found) / MAX_OFFSETS
        found = [found[int(i * step)] for i in range(MAX_OFFSETS)]
    return tuple(found)


def slice_caffemodel(data: bytes) -> bytes:
    """The caffemodel without the blobs of any layer whose blobs exceed SLICE_BYTES."""
    out = bytearray()
    for record in iter_fields(data):
        if record.number == NET_LAYER and record.wire_type == LEN and record.end - record.value_start > SLICE_BYTES:
            kept = b"".join(data[part.start:part.end] for part in iter_fields(data, record.value_start, record.end)
                            if part.number != LAYER_BLOBS)
            out += len_header(NET_LAYER, len(kept)) + kept
        else:
            out += data[record.start:record.end]
    return bytes(out)


# The export target makes random weights for the whole net: the nets with fewer than ~10 M of them.
EXPORT_SEEDS = ("lenet", "cifar10_quick", "squeezenet_v1_1", "mobilenet_v1", "bvlc_googlenet")


def prototxt_seeds(names=None) -> list[Seed]:
    paths = sorted(p for p in CAFFE_DATA.glob("*.prototxt") if names is None or p.stem in names)
    return [Seed(p.name, p.read_bytes()) for p in paths + [BAD / "good.prototxt"]]


def caffemodel_seeds() -> list[Seed]:
    seeds = [Seed("good.caffemodel", (BAD / "good.caffemodel").read_bytes(), (),
                  {"model.prototxt": (BAD / "good.prototxt").read_bytes()})]
    for folder in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for caffemodel in sorted(folder.glob("*.caffemodel")):
            prototxt = caffemodel.with_suffix(".prototxt")
            seeds.append(Seed(caffemodel.name, slice_caffemodel(caffemodel.read_bytes()), (),
                              {"model.prototxt": prototxt.read_bytes()}))
    return [Seed(s.name, s.data, structural_offsets(s.data), s.companions) for s in seeds]


def onnx_seeds() -> list[Seed]:
    seeds = [Seed(p.name, p.read_bytes()) for p in sorted((SAMPLES / "onnx").glob("*.onnx"))]
    seeds.append(Seed("good.onnx", (BAD / "good.onnx").read_bytes()))
    seeds.append(Seed("ox_ext_good.onnx", (BAD / "ox_ext_good.onnx").read_bytes(), (),
                      {"ox_ext_good.bin": (BAD / "ox_ext_good.bin").read_bytes()}))
    return [Seed(s.name, s.data, structural_offsets(s.data), s.companions) for s in seeds]


# ---------------------------------------------------------------------------------------------
# Mutations

BYTE_EDITS = ("flip", "byte", "truncate", "delete", "insert", "duplicate", "varint")
HOSTILE_BYTES = (b"\x00", b"\xff", b"\x80" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x1a\x00", b"\x0b", b"\x7f")


@st.composite
def mutated_bytes(draw, seeds: list[Seed]) -> tuple[Seed, bytes]:
    seed = draw(st.sampled_from(seeds))
    data = bytearray(seed.data)
    positions = st.integers(0, max(len(data) - 1, 0))
    if seed.offsets:
        positions = st.one_of(st.sampled_from(seed.offsets), positions)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        edit = draw(st.sampled_from(BYTE_EDITS))
        at = min(draw(positions), len(data) - 1)
        if edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "byte":
            data[at] = draw(st.integers(0, 255))
        elif edit == "truncate":
            del data[at:]
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif edit == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(HOSTILE_BYTES), st.binary(min_size=1, max_size=8)))
        elif edit == "duplicate":
            length = draw(st.integers(1, 64))
            data[at:at] = data[at:at + length]
        else:  # a length or value replaced by a large varint
            data[at:at + 1] = draw(st.sampled_from((b"\xff\xff\xff\xff\x07", b"\xff" * 9 + b"\x01", b"\x80\x80\x01")))
    return seed, bytes(data)


# Record edits: a length-delimited payload that parses as a message is a subtree.

INTERESTING_VARINTS = (0, 1, 2, 3, 7, 127, 128, 255, 2**31 - 1, 2**31, 2**32, 2**53, 2**63 - 1, 2**64 - 1)
TREE_EDITS = ("delete", "duplicate", "swap", "value", "value", "payload")


def parse_tree(data: bytes, start: int = 0, end: int | None = None, depth: int = 0):
    """A tuple of (number, wire type, value) records, value an int (varint), bytes, or a tuple
    (a payload that parses as a message); None when ``data[start:end]`` is not a message."""
    end = len(data) if end is None else end
    try:
        records = list(iter_fields(data, start, end))
    except WireFormatError:
        return None
    if not records:
        return None
    nodes = []
    for record in records:
        if record.wire_type == VARINT:
            value = read_varint(data, record.value_start, record.end)[0]
        elif record.wire_type == LEN:
            value = None
            if depth < 12 and record.end > record.value_start:
                value = parse_tree(data, record.value_start, record.end, depth + 1)
            if value is None:
                value = bytes(data[record.value_start:record.end])
        else:
            value = bytes(data[record.value_start:record.end])
        nodes.append((record.number, record.wire_type, value))
    return tuple(nodes)


def serialize_tree(nodes) -> bytes:
    out = bytearray()
    for number, wire_type, value in nodes:
        out += encode_varint(number << 3 | wire_type)
        if wire_type == VARINT:
            out += encode_varint(value)
        elif wire_type == LEN:
            payload = serialize_tree(value) if isinstance(value, tuple) else value
            out += encode_varint(len(payload)) + payload
        else:
            out += value
    return bytes(out)


def tree_paths(nodes, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for index, (_, _, value) in enumerate(nodes):
        paths.append(prefix + (index,))
        if isinstance(value, tuple):
            paths.extend(tree_paths(value, prefix + (index,)))
    return paths


def replace_at(nodes, path: tuple, change):
    """``nodes`` with the record at ``path`` replaced by the records ``change(siblings, index)`` returns
    (the whole sibling tuple is given, so an edit can delete, duplicate or swap)."""
    index = path[0]
    if len(path) == 1:
        return change(nodes, index)
    number, wire_type, value = nodes[index]
    return nodes[:index] + ((number, wire_type, replace_at(value, path[1:], change)),) + nodes[index + 1:]


def leaf_payloads(nodes, found=None) -> list[bytes]:
    """Every short byte payload (names, strings) of the tree: material for swaps."""
    found = [] if found is None else found
    for _, wire_type, value in nodes:
        if isinstance(value, tuple):
            leaf_payloads(value, found)
        elif wire_type == LEN and len(value) <= 64:
            found.append(value)
    return found


@st.composite
def mutated_tree(draw, seeds: list[Seed]) -> tuple[Seed, bytes]:
    seed = draw(st.sampled_from([s for s in seeds if s.tree is not None]))
    tree = seed.tree
    for _ in range(draw(st.integers(1, 3))):
        paths = tree_paths(tree)
        if not paths:
            break
        path = paths[draw(st.integers(0, len(paths) - 1))]
        edit = draw(st.sampled_from(TREE_EDITS))
        if edit == "delete":
            tree = replace_at(tree, path, lambda sib, i: sib[:i] + sib[i + 1:])
        elif edit == "duplicate":
            tree = replace_at(tree, path, lambda sib, i: sib[:i + 1] + sib[i:])
        elif edit == "swap":
            other = draw(st.integers(0, 1000))

            def swap(sib, i, other=other):
                j = other % len(sib)
                items = list(sib)
                items[i], items[j] = items[j], items[i]
                return tuple(items)

            tree = replace_at(tree, path, swap)
        else:
            leaves = seed.leaves

            def change(sib, i, edit=edit, leaves=leaves):
                number, wire_type, value = sib[i]
                if wire_type == VARINT:
                    value = draw(st.one_of(st.sampled_from(INTERESTING_VARINTS), st.integers(0, 2**64 - 1)))
                elif wire_type == LEN and (edit == "payload" or not isinstance(value, tuple)):
                    value = draw(st.one_of(st.sampled_from(leaves or [b""]), st.binary(max_size=12),
                                           st.just(b"../../x"), st.just(b"\xff\xfe")))
                elif wire_type in (I32, I64):
                    value = draw(st.binary(min_size=len(value), max_size=len(value)))
                return sib[:i] + ((number, wire_type, value),) + sib[i + 1:]

            tree = replace_at(tree, path, change)
    return seed, serialize_tree(tree)


TOKEN = re.compile(r'"[^"\n]*"|[\w.+-]+|[{}:<>\[\],]')
HOSTILE_TOKENS = ("-1", "0", "99999999999", "4294967296", "nan", "inf", "-inf", "1e400", "{", "}", '"', "layer",
                  "layers", "bottom", "top", "type", '"Python"', '"data"', "dim:", "num_output:", "\\", "#", "<",
                  "\x00", "\u00e9")
TEXT_EDITS = ("delete_line", "duplicate_line", "swap_lines", "replace_token", "insert_token", "truncate")


@st.composite
def mutated_text(draw, seeds: list[Seed]) -> tuple[Seed, bytes]:
    seed = draw(st.sampled_from(seeds))
    lines = seed.data.decode().splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        edit = draw(st.sampled_from(TEXT_EDITS))
        index = draw(st.integers(0, len(lines) - 1))
        if edit == "delete_line":
            del lines[index]
        elif edit == "duplicate_line":
            lines.insert(draw(st.integers(0, len(lines))), lines[index])
        elif edit == "swap_lines":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif edit == "truncate":
            lines = lines[:index] + [lines[index][:draw(st.integers(0, len(lines[index])))]]
        else:
            tokens = list(TOKEN.finditer(lines[index]))
            new = draw(st.one_of(st.sampled_from(HOSTILE_TOKENS),
                                 st.sampled_from([m.group(0) for m in TOKEN.finditer(seed.data.decode())][:2000])))
            line = lines[index]
            if edit == "replace_token" and tokens:
                token = draw(st.sampled_from(tokens))
                lines[index] = line[:token.start()] + new + line[token.end():]
            else:
                at = draw(st.integers(0, len(line)))
                lines[index] = line[:at] + " " + new + " " + line[at:]
    return seed, "".join(lines).encode()


# ---------------------------------------------------------------------------------------------
# Targets: one command line per reader


@dataclass(frozen=True)
class Target:
    name: str
    file_name: str  # what the mutated file is called
    seeds: tuple[Seed, ...]
    text: bool

    def strategy(self):
        if self.text:
            return mutated_text(list(self.seeds))
        return st.one_of(mutated_bytes(list(self.seeds)), mutated_tree(list(self.seeds)))

    def argv(self, folder: Path) -> list[str]:
        out = folder / "out"
        if self.name == "prototxt":
            return ["convert", folder / self.file_name, "--no-weights", "-o", out / "converted.prototxt"]
        if self.name == "export":  # the prototxt through the Caffe -> ONNX exporter, random weights
            return ["export", folder / self.file_name, "-o", out / "exported.onnx"]
        if self.name == "caffemodel":
            return ["convert", folder / "model.prototxt", "--weights", folder / self.file_name,
                    "-o", out / "converted.prototxt"]
        return ["convert", folder / self.file_name, "-o", out / "converted.onnx"]


def targets() -> dict[str, Target]:
    return {
        "prototxt": Target("prototxt", "model.prototxt", tuple(prototxt_seeds()), True),
        "export": Target("export", "model.prototxt", tuple(prototxt_seeds(EXPORT_SEEDS)), True),
        "caffemodel": Target("caffemodel", "weights.caffemodel", tuple(caffemodel_seeds()), False),
        "onnx": Target("onnx", "model.onnx", tuple(onnx_seeds()), False),
    }


@dataclass
class Outcome:
    code: int
    error: str | None  # the error class, for exit 2
    message: str | None
    stderr: str


class FuzzFailure(AssertionError):
    pass


def run_example(target: Target, seed: Seed, data: bytes, folder: Path | None = None) -> Outcome:
    """Write the mutated file (and its companions) into a fresh folder, run the target's command,
    check that it ended cleanly; raise :class:`FuzzFailure` otherwise."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        work = Path(folder or tmp)
        (work / "out").mkdir(parents=True, exist_ok=True)
        for name, companion in seed.companions.items():
            (work / name).write_bytes(companion)
        (work / target.file_name).write_bytes(data)
        try:
            run = run_cli(target.argv(work) + ["--format", "json"], seconds=EXAMPLE_SECONDS)
        except ExampleTimeout as err:
            run = Run(-1, "", f"the example {err}")
        except Exception:  # noqa: BLE001 - escaped main(): the worst kind of failure
            run = Run(-2, "", "an exception escaped main():\n" + traceback.format_exc())
        written = sorted(p.name for p in (work / "out").iterdir())
        problem = None
        if run.code < 0:
            problem = "no exit code"
        elif run.code not in (0, 2):
            problem = f"exit code {run.code}"
        elif "Traceback" in run.stderr:
            problem = "a traceback"
        elif run.code == 2 and written:
            problem = f"an error that left files behind: {written}"
        elif run.code == 2 and not any(line.startswith("error: ") for line in run.stderr.splitlines()):
            problem = "exit 2 without an error line"
        if problem:
            kept = work
            if folder is None:
                kept = Path(tempfile.mkdtemp(prefix=f"fuzz-failure-{target.name}-"))
                shutil.copytree(work, kept, dirs_exist_ok=True)
            raise FuzzFailure(f"{target.name} seed {seed.name}: {problem} (files in {kept})\n{run.stderr[-4000:]}")
        error = message = None
        if run.code == 2:
            report = json.loads(run.stdout)
            error, message = report["error"], report["message"]
        return Outcome(run.code, error, message, run.stderr)
