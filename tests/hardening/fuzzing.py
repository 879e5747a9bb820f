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

Side inputs are fuzzed too (issue 14): a ``--plan`` JSON (``diff --plan``), an ``--inputs`` npz
(``validate``), a ``--caffe-schema`` descriptor set (``inspect``, in a subprocess: a schema is
chosen once per process), and hostile environment variables (the limits' variables with garbage
or 400 digits, a bad schema path, an ASCII-only ``PYTHONIOENCODING``, in a subprocess) around a
mutated prototxt. Commands that compare (``diff``, ``validate``) may also exit 1.
``benchmarks/fuzz_campaign.py`` runs 10 000 cases over every target and counts the exit codes.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
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
            kept = b"".join(
                data[part.start : part.end]
                for part in iter_fields(data, record.value_start, record.end)
                if part.number != LAYER_BLOBS
            )
            out += len_header(NET_LAYER, len(kept)) + kept
        else:
            out += data[record.start : record.end]
    return bytes(out)


# The export target makes random weights for the whole net: the nets with fewer than ~10 M of them.
EXPORT_SEEDS = ("lenet", "cifar10_quick", "squeezenet_v1_1", "mobilenet_v1", "bvlc_googlenet")


def prototxt_seeds(names=None) -> list[Seed]:
    paths = sorted(p for p in CAFFE_DATA.glob("*.prototxt") if names is None or p.stem in names)
    return [Seed(p.name, p.read_bytes()) for p in paths + [BAD / "good.prototxt"]]


def caffemodel_seeds() -> list[Seed]:
    seeds = [
        Seed(
            "good.caffemodel",
            (BAD / "good.caffemodel").read_bytes(),
            (),
            {"model.prototxt": (BAD / "good.prototxt").read_bytes()},
        )
    ]
    for folder in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for caffemodel in sorted(folder.glob("*.caffemodel")):
            prototxt = caffemodel.with_suffix(".prototxt")
            seeds.append(
                Seed(
                    caffemodel.name,
                    slice_caffemodel(caffemodel.read_bytes()),
                    (),
                    {"model.prototxt": prototxt.read_bytes()},
                )
            )
    return [Seed(s.name, s.data, structural_offsets(s.data), s.companions) for s in seeds]


def onnx_seeds() -> list[Seed]:
    seeds = [Seed(p.name, p.read_bytes()) for p in sorted((SAMPLES / "onnx").glob("*.onnx"))]
    seeds.append(Seed("good.onnx", (BAD / "good.onnx").read_bytes()))
    seeds.append(
        Seed(
            "ox_ext_good.onnx",
            (BAD / "ox_ext_good.onnx").read_bytes(),
            (),
            {"ox_ext_good.bin": (BAD / "ox_ext_good.bin").read_bytes()},
        )
    )
    return [Seed(s.name, s.data, structural_offsets(s.data), s.companions) for s in seeds]


LENET = SAMPLES / "lenet" / "lenet.prototxt"
LENET_ONNX = SAMPLES / "onnx" / "lenet.onnx"


def plan_seeds() -> list[Seed]:
    """Plans written by ``convert --save-plan`` (LeNet, fcn and exact), with the model they are for."""
    from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, plan_caffe_rewrite
    from proto_rewrite.caffe.model import load_caffe

    model = load_caffe(LENET, None)
    companions = {"model.prototxt": LENET.read_bytes()}
    return [
        Seed(
            f"lenet_{mode}.json",
            plan_caffe_rewrite(model, CaffeRewriteOptions(mode=mode)).to_json().encode(),
            (),
            companions,
        )
        for mode in ("fcn", "exact")
    ]


def npz_seeds() -> list[Seed]:
    """``--inputs`` archives for the ONNX LeNet: numpy.savez and savez_compressed of its input."""
    import numpy as np
    import onnx

    name = onnx.load(LENET_ONNX, load_external_data=False).graph.input[0].name
    values = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    seeds = []
    for label, save in (("plain", np.savez), ("compressed", np.savez_compressed)):
        buffer = io.BytesIO()
        save(buffer, **{name: values})
        data = buffer.getvalue()
        seeds.append(Seed(f"{label}.npz", data, _zip_offsets(data)))
    return seeds


def _zip_offsets(data: bytes) -> tuple[int, ...]:
    """The zip headers (local, central, end) and the .npy header: where the structure is."""
    found: list[int] = []
    for magic in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"\x93NUMPY"):
        start = data.find(magic)
        while start >= 0:
            found.extend(range(start, min(start + 64, len(data))))
            start = data.find(magic, start + 1)
    return tuple(found)


def schema_seeds() -> list[Seed]:
    """The bundled Caffe descriptor set, with a prototxt to read through it."""
    from importlib import resources

    data = resources.files("proto_rewrite.caffe").joinpath("caffe_descriptor.pb").read_bytes()
    return [Seed("caffe_descriptor.pb", data, structural_offsets(data), {"model.prototxt": LENET.read_bytes()})]


# Hostile environments: the limits' variables with garbage, a schema path that is no schema, an
# output encoding that cannot show every name.
LIMIT_VARIABLES = ("PROTO_REWRITE_MAX_TENSOR_BYTES", "PROTO_REWRITE_MAX_TEXT_BYTES", "PROTO_REWRITE_MAX_RANDOM_BYTES")
HOSTILE_SIZES = (
    "",
    "0",
    "-1",
    "1",
    "100",
    "1" * 400,
    "1e999",
    "nan",
    "inf",
    "16GiB",
    "abc",
    " 5 M ",
    "0x10",
    "9" * 30 + "TiB",
    "\u00e9",
    "1.5.5",
    "-0",
)
HOSTILE_SCHEMAS = ("/nonexistent/fork.pb", "/", "/dev/null", "{folder}/model.prototxt", "{folder}", "")
ENCODINGS = ("ascii", "latin-1", "utf-8", "ascii:strict", "utf-16")


@st.composite
def hostile_environment(draw) -> dict[str, str]:
    env = {}
    for name in LIMIT_VARIABLES:
        if draw(st.booleans()):
            env[name] = draw(st.sampled_from(HOSTILE_SIZES))
    if draw(st.integers(0, 3)) == 0:
        env["PROTO_REWRITE_CAFFE_SCHEMA"] = draw(st.sampled_from(HOSTILE_SCHEMAS))
    if draw(st.booleans()):
        env["PYTHONIOENCODING"] = draw(st.sampled_from(ENCODINGS))
    if draw(st.booleans()):
        env["LC_ALL"] = env["LANG"] = draw(st.sampled_from(("C", "POSIX", "xx_YY.bogus")))
    return env


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
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(HOSTILE_BYTES), st.binary(min_size=1, max_size=8)))
        elif edit == "duplicate":
            length = draw(st.integers(1, 64))
            data[at:at] = data[at : at + length]
        else:  # a length or value replaced by a large varint
            data[at : at + 1] = draw(st.sampled_from((b"\xff\xff\xff\xff\x07", b"\xff" * 9 + b"\x01", b"\x80\x80\x01")))
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
                value = bytes(data[record.value_start : record.end])
        else:
            value = bytes(data[record.value_start : record.end])
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
    return nodes[:index] + ((number, wire_type, replace_at(value, path[1:], change)),) + nodes[index + 1 :]


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
            tree = replace_at(tree, path, lambda sib, i: sib[:i] + sib[i + 1 :])
        elif edit == "duplicate":
            tree = replace_at(tree, path, lambda sib, i: sib[: i + 1] + sib[i:])
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
                    value = draw(
                        st.one_of(
                            st.sampled_from(leaves or [b""]),
                            st.binary(max_size=12),
                            st.just(b"../../x"),
                            st.just(b"\xff\xfe"),
                        )
                    )
                elif wire_type in (I32, I64):
                    value = draw(st.binary(min_size=len(value), max_size=len(value)))
                return sib[:i] + ((number, wire_type, value),) + sib[i + 1 :]

            tree = replace_at(tree, path, change)
    return seed, serialize_tree(tree)


# Side inputs: a valid JSON plan with a value replaced, a valid npz with odd members.

HOSTILE_JSON = (
    None,
    True,
    0,
    -1,
    2**63,
    1e308,
    float("nan"),
    "",
    "x" * 300,
    "../../etc",
    [],
    {},
    [[[]]],
    {"a": 1},
    "Convolution",
    "fcn",
    [1, 2, 3],
    [-1, 0],
)


def json_paths(value, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths.extend(json_paths(item, prefix + (key,)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths.extend(json_paths(item, prefix + (index,)))
    return paths


@st.composite
def mutated_json(draw, seeds: list[Seed]) -> tuple[Seed, bytes]:
    seed = draw(st.sampled_from(seeds))
    document = json.loads(seed.data)
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(document)
        path = draw(st.sampled_from(paths))
        new = draw(st.one_of(st.sampled_from(HOSTILE_JSON), st.integers(), st.text(max_size=8)))
        if not path:
            document = new
            continue
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(("replace", "replace", "delete", "nest")))
        if action == "delete":
            del parent[path[-1]]
        elif action == "nest":
            parent[path[-1]] = functools.reduce(
                lambda inner, _: [inner], range(draw(st.integers(1, 60))), parent[path[-1]]
            )
        else:
            parent[path[-1]] = new
    return seed, json.dumps(document).encode()


NPZ_DTYPES = ("<f4", "<f8", "<f2", "<i8", "|b1", "<u2", ">f4", "<c8")


@st.composite
def odd_npz(draw, seeds: list[Seed]) -> tuple[Seed, bytes]:
    """A well-formed npz whose members are odd: wrong names, dtypes, shapes, NaN, extra members,
    Fortran order, a forged header."""
    import numpy as np

    seed = draw(st.sampled_from(seeds))
    with np.load(io.BytesIO(seed.data)) as archive:
        name = archive.files[0]
    members = {}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from((name, name, "other", "", "a/b", "x" * 200)))
        shape = draw(
            st.sampled_from(
                ((1, 1, 28, 28), (2, 1, 28, 28), (1, 28, 28), (), (0, 1, 28, 28), (1, 1, 28, 29), (1, 1, 1, 1))
            )
        )
        dtype = np.dtype(draw(st.sampled_from(NPZ_DTYPES)))
        values = np.zeros(shape, dtype)
        if values.size and dtype.kind == "f" and draw(st.booleans()):
            with np.errstate(over="ignore"):  # 1e30 is Inf as float16: that is the point
                values.flat[0] = draw(st.sampled_from((np.nan, np.inf, -np.inf, 1e30)))
        if draw(st.booleans()) and values.ndim > 1:
            values = np.asfortranarray(values)
        members[key] = values
    buffer = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buffer, "w", draw(st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)))) as archive:
        for key, values in members.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, values, allow_pickle=False)
            data = member.getvalue()
            if draw(st.integers(0, 4)) == 0:  # a forged header: another shape, same data
                forged = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    forged,
                    {
                        "descr": values.dtype.str,
                        "fortran_order": False,
                        "shape": draw(st.sampled_from(((2**42,), (1, 1, 280, 28), (-1,)))),
                    },
                )
                header_end = len(data) - values.nbytes
                data = forged.getvalue() + data[header_end:]
            archive.writestr(key + ".npy", data)
    return seed, buffer.getvalue()


TOKEN = re.compile(r'"[^"\n]*"|[\w.+-]+|[{}:<>\[\],]')
HOSTILE_TOKENS = (
    "-1",
    "0",
    "99999999999",
    "4294967296",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "{",
    "}",
    '"',
    "layer",
    "layers",
    "bottom",
    "top",
    "type",
    '"Python"',
    '"data"',
    "dim:",
    "num_output:",
    "\\",
    "#",
    "<",
    "\x00",
    "\u00e9",
)
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
            lines = lines[:index] + [lines[index][: draw(st.integers(0, len(lines[index])))]]
        else:
            tokens = list(TOKEN.finditer(lines[index]))
            new = draw(
                st.one_of(
                    st.sampled_from(HOSTILE_TOKENS),
                    st.sampled_from([m.group(0) for m in TOKEN.finditer(seed.data.decode())][:2000]),
                )
            )
            line = lines[index]
            if edit == "replace_token" and tokens:
                token = draw(st.sampled_from(tokens))
                lines[index] = line[: token.start()] + new + line[token.end() :]
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
    codes: tuple[int, ...] = (0, 2)  # the exit codes a clean run may end with
    subprocess: bool = False  # run in a fresh process (a schema or an environment of its own)
    hostile_env: bool = False  # each example also draws a hostile environment

    def strategy(self):
        if self.name == "plan":
            mutation = st.one_of(mutated_json(list(self.seeds)), mutated_text(list(self.seeds)))
        elif self.name == "npz":
            mutation = st.one_of(odd_npz(list(self.seeds)), mutated_bytes(list(self.seeds)))
        elif self.text:
            mutation = mutated_text(list(self.seeds))
        elif any(seed.tree is not None for seed in self.seeds):
            mutation = st.one_of(mutated_bytes(list(self.seeds)), mutated_tree(list(self.seeds)))
        else:
            mutation = mutated_bytes(list(self.seeds))
        if self.hostile_env:
            return st.tuples(mutation, hostile_environment()).map(lambda pair: (*pair[0], pair[1]))
        return mutation

    def argv(self, folder: Path) -> list[str]:
        out = folder / "out"
        if self.name == "plan":
            return [
                "diff",
                folder / "model.prototxt",
                folder / "model.prototxt",
                "--no-weights",
                "--plan",
                folder / self.file_name,
            ]
        if self.name == "npz":
            return ["validate", LENET_ONNX, LENET_ONNX, "--inputs", folder / self.file_name]
        if self.name == "schema":
            return ["inspect", folder / "model.prototxt", "--no-weights", "--caffe-schema", folder / self.file_name]
        if self.name == "environment":
            return ["convert", folder / self.file_name, "--no-weights", "-o", out / "converted.prototxt"]
        if self.name == "prototxt":
            return ["convert", folder / self.file_name, "--no-weights", "-o", out / "converted.prototxt"]
        if self.name == "export":  # the prototxt through the Caffe -> ONNX exporter, random weights
            return ["export", folder / self.file_name, "-o", out / "exported.onnx"]
        if self.name == "caffemodel":
            return [
                "convert",
                folder / "model.prototxt",
                "--weights",
                folder / self.file_name,
                "-o",
                out / "converted.prototxt",
            ]
        return ["convert", folder / self.file_name, "-o", out / "converted.onnx"]


def targets() -> dict[str, Target]:
    return {
        "prototxt": Target("prototxt", "model.prototxt", tuple(prototxt_seeds()), True),
        "export": Target("export", "model.prototxt", tuple(prototxt_seeds(EXPORT_SEEDS)), True),
        "caffemodel": Target("caffemodel", "weights.caffemodel", tuple(caffemodel_seeds()), False),
        "onnx": Target("onnx", "model.onnx", tuple(onnx_seeds()), False),
        "plan": Target("plan", "plan.json", tuple(plan_seeds()), True, codes=(0, 1, 2)),
        "npz": Target("npz", "inputs.npz", tuple(npz_seeds()), False, codes=(0, 1, 2)),
        "schema": Target("schema", "fork.pb", tuple(schema_seeds()), False, subprocess=True),
        "environment": Target(
            "environment",
            "model.prototxt",
            tuple(prototxt_seeds(("lenet", "cifar10_quick"))),
            True,
            subprocess=True,
            hostile_env=True,
        ),
    }


@dataclass
class Outcome:
    code: int
    error: str | None  # the error class, for exit 2
    message: str | None
    stderr: str
    problem: str | None = None  # why the run is a failure (only with check=False)


class FuzzFailure(AssertionError):
    pass


DRIVER = "import sys; from proto_rewrite.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _run_subprocess(argv: list, env: dict[str, str], folder: Path) -> Run:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PROTO_REWRITE_")}
    environment.update({key: value.format(folder=folder) for key, value in env.items()})
    try:
        result = subprocess.run(
            [sys.executable, "-c", DRIVER, *map(str, argv)],
            capture_output=True,
            timeout=EXAMPLE_SECONDS,
            cwd=ROOT,
            env=environment,
        )
    except subprocess.TimeoutExpired:
        return Run(-1, "", f"the example took longer than {EXAMPLE_SECONDS} s")
    encoding = env.get("PYTHONIOENCODING", "").split(":")[0] or "utf-8"
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "utf-8"
    decode = functools.partial(bytes.decode, encoding=encoding, errors="replace")
    code = result.returncode if result.returncode >= 0 else -3  # killed by a signal
    return Run(code, decode(result.stdout), decode(result.stderr))


def run_example(
    target: Target, seed: Seed, data: bytes, folder: Path | None = None, env: dict | None = None, *, check: bool = True
) -> Outcome:
    """Write the mutated file (and its companions) into a fresh folder, run the target's command,
    check that it ended cleanly; raise :class:`FuzzFailure` otherwise (``check`` False: return
    the outcome with its ``problem`` set instead)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        work = Path(folder or tmp)
        (work / "out").mkdir(parents=True, exist_ok=True)
        for name, companion in seed.companions.items():
            (work / name).write_bytes(companion)
        (work / target.file_name).write_bytes(data)
        argv = target.argv(work) + ["--format", "json"]
        try:
            if target.subprocess:
                run = _run_subprocess(argv, env or {}, work)
            else:
                run = run_cli(argv, seconds=EXAMPLE_SECONDS)
        except ExampleTimeout as err:
            run = Run(-1, "", f"the example {err}")
        except Exception:  # noqa: BLE001 - escaped main(): the worst kind of failure
            run = Run(-2, "", "an exception escaped main():\n" + traceback.format_exc())
        written = sorted(p.name for p in (work / "out").iterdir())
        problem = None
        if run.code < 0:
            problem = "no exit code" if run.code != -3 else "killed by a signal"
        elif run.code not in target.codes:
            problem = f"exit code {run.code}"
        elif "Traceback" in run.stderr:
            problem = "a traceback"
        elif run.code == 2 and written:
            problem = f"an error that left files behind: {written}"
        elif run.code == 2 and not any(line.startswith("error: ") for line in run.stderr.splitlines()):
            problem = "exit 2 without an error line"
        elif run.code == 2 and not _json_error(run.stdout):
            problem = "exit 2 without a JSON error report"
        if problem:
            kept = work
            if folder is None:
                kept = Path(tempfile.mkdtemp(prefix=f"fuzz-failure-{target.name}-"))
                shutil.copytree(work, kept, dirs_exist_ok=True)
            text = f"{target.name} seed {seed.name}: {problem} (files in {kept}; env {env})\n{run.stderr[-4000:]}"
            if check:
                raise FuzzFailure(text)
            return Outcome(run.code, None, None, run.stderr, text)
        error = message = None
        if run.code == 2:
            report = _json_error(run.stdout)
            error, message = report["error"], report["message"]
        return Outcome(run.code, error, message, run.stderr)


def _json_error(stdout: str) -> dict | None:
    """The JSON error object a failed ``--format json`` run prints last on stdout, if any."""
    text = stdout.strip()
    start = text.rfind("\n{\n")
    for candidate in (text, text[start + 1 :] if start >= 0 else None):
        if not candidate:
            continue
        try:
            report = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(report, dict) and "error" in report and "message" in report:
            return report
    return None
