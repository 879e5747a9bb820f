"""The rewrite plan: what a conversion will change, decided before anything changes.

A plan is pure data, the same for Caffe and ONNX: one :class:`FcRewrite` per FC layer that
becomes a convolution, one :class:`Skip` (with a reason code) per FC layer that does not, the
layers removed or inserted around them (:class:`GraphEdit`), and the names that change. The dry
run prints it, ``apply`` executes it and nothing else, and diff and reports read it (it
serialises to JSON and back).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import Enum

from proto_rewrite.errors import UsageError
from proto_rewrite.shape_text import tuple_text as _shape

PLAN_VERSION = 1

FCN = "fcn"  # the net accepts any input size; FC outputs become score maps
EXACT = "exact"  # every net output keeps its original shape
MODES = (FCN, EXACT)

# --pool-scores: pool the fcn score map back to (N, K), before a final Softmax (avg, max) or
# after it (probs-avg: the mean of the per-cell probabilities, as multi-crop testing averages).
POOL_SCORES = ("avg", "max", "probs-avg")


class Reason(str, Enum):
    """Why an FC layer is not rewritten."""

    NOT_SELECTED = "not-selected"
    INPUT_SHAPE_UNKNOWN = "input-shape-unknown"
    UNSUPPORTED_AXIS = "unsupported-axis"
    UNSUPPORTED_INPUT_RANK = "unsupported-input-rank"
    NO_WEIGHTS = "no-weights"
    SHARED_WEIGHTS = "shared-weights"
    ELEMENT_COUNT_MISMATCH = "element-count-mismatch"
    TRANS_A = "trans-a"
    WEIGHT_NOT_CONSTANT = "weight-not-constant"
    BATCHED_BIAS = "batched-bias"
    MATMUL_ND = "matmul-nd"
    QUANTIZED = "quantized"
    UNSUPPORTED_FLATTEN = "unsupported-flatten"
    UNSUPPORTED_LAYOUT = "unsupported-layout"
    UNSUPPORTED_DTYPE = "unsupported-dtype"


REASON_TEXT = {
    Reason.NOT_SELECTED: "left out by --only / --match / --exclude",
    Reason.INPUT_SHAPE_UNKNOWN: "the shape of its input is unknown",
    Reason.UNSUPPORTED_AXIS: "it flattens from an axis other than 1",
    Reason.UNSUPPORTED_INPUT_RANK: "its input is neither (N, C, H, W) nor (N, K)",
    Reason.NO_WEIGHTS: "its weights are missing",
    Reason.SHARED_WEIGHTS: "its weights are shared with another layer",
    Reason.ELEMENT_COUNT_MISMATCH: "its weight does not match the input's C*H*W",
    Reason.TRANS_A: "it transposes its input (transA=1)",
    Reason.WEIGHT_NOT_CONSTANT: "its weight is not a constant",
    Reason.BATCHED_BIAS: "its bias differs per batch row",
    Reason.MATMUL_ND: "it is a batched (N-D) MatMul",
    Reason.QUANTIZED: "it is quantized",
    Reason.UNSUPPORTED_FLATTEN: "the reshape feeding it does not flatten (N, C, H, W) to (N, C*H*W)",
    Reason.UNSUPPORTED_LAYOUT: "its input layout cannot be matched by permuting the weights",
    Reason.UNSUPPORTED_DTYPE: "its weights are not floating point (or weight and bias types differ)",
}


@dataclass(frozen=True)
class WeightChange:
    name: str  # e.g. "fc6 blob 0" or an initializer name
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    transform: str  # fc_math.RESHAPE / TRANSPOSE / PERMUTE, or "unchanged"


@dataclass(frozen=True)
class FcRewrite:
    name: str  # the FC layer (node) as it was
    new_name: str
    op_before: str  # "InnerProduct", "Gemm", "MatMul+Add"...
    op_after: str  # "Convolution", "Conv"
    input: str  # the blob (tensor) the convolution reads
    input_shape: tuple[int, ...]  # (N, C, H, W) at the planning input size
    kernel: tuple[int, int]
    in_channels: int
    out_channels: int
    weights: tuple[WeightChange, ...] = ()


@dataclass(frozen=True)
class Skip:
    name: str
    op: str
    reason: Reason
    detail: str = ""

    @property
    def message(self) -> str:
        text = f"{self.name} ({self.op}) is not rewritten: {REASON_TEXT[self.reason]}"
        return text + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class GraphEdit:
    """A layer (node) removed or inserted around the rewritten FCs, or an input resized."""

    action: str  # "remove", "insert", "rename" (a blob / tensor) or "resize-input"
    name: str
    op: str
    why: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    after: str | None = None  # insert: the layer it follows (None: first)
    shape: tuple[int, ...] | None = None  # insert Reshape: its target; resize-input: the new shape
    layers: tuple[str, ...] = ()  # rename: the layers (nodes) whose references change
    serves: str | None = None  # the FC whose conversion needs this edit first; None: after all conversions
    method: str | None = None  # insert pooling: "avg" or "max"


@dataclass(frozen=True)
class AxisGeometry:
    """How one spatial axis of a score map follows the input: ``cells = (size - min_size) // stride + 1``.

    ``min_size`` is the smallest input extent that gives one cell (the planning size rounds down to
    it); ``receptive_field`` is how many input pixels one cell sees (padding included).
    """

    stride: int
    min_size: int
    receptive_field: int

    def cells(self, size: int) -> int:
        return 0 if size < self.min_size else (size - self.min_size) // self.stride + 1

    def aligned_sizes(self, near: int, count: int = 3) -> list[int]:
        """Input sizes at or above ``near`` whose cells tile the input exactly."""
        first = max(self.min_size, near)
        first += (-(first - self.min_size)) % self.stride
        return [first + i * self.stride for i in range(count)]


@dataclass(frozen=True)
class ScoreMap:
    """A model output that is a map of scores in fcn mode, and how its size follows the input."""

    output: str
    input: str
    height: AxisGeometry
    width: AxisGeometry

    def size_at(self, height: int, width: int) -> tuple[int, int]:
        return self.height.cells(height), self.width.cells(width)


@dataclass(frozen=True)
class Blocker:
    """A node (layer) that keeps the rewritten net at its planning input size, and why."""

    name: str
    op: str
    why: str


@dataclass
class FcnReport:
    """What fcn mode proved about the rewritten net: it runs at other input sizes, or what blocks it.

    ``proof`` says how it was shown: "onnxruntime" (a run at each of ``checked_sizes``, output
    shapes compared with the predicted score-map sizes), "shape-inference" (shapes inferred at
    those sizes, no run: for models above the run's weight limit) or "caffe-shapes"; None when
    nothing could be shown. ``fully_convolutional`` is never true without a proof.
    """

    fully_convolutional: bool
    proof: str | None = None
    checked_sizes: list[dict[str, tuple[int, ...]]] = field(default_factory=list)
    score_maps: list[ScoreMap] = field(default_factory=list)
    blockers: list[Blocker] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> FcnReport:
        maps = [
            ScoreMap(m["output"], m["input"], AxisGeometry(**m["height"]), AxisGeometry(**m["width"]))
            for m in data.get("score_maps", [])
        ]
        return cls(
            bool(data["fully_convolutional"]),
            data.get("proof"),
            [{k: tuple(v) for k, v in sizes.items()} for sizes in data.get("checked_sizes", [])],
            maps,
            [Blocker(**b) for b in data.get("blockers", [])],
            data.get("note", ""),
        )

    def render_lines(self) -> list[str]:
        lines = []
        if self.fully_convolutional:
            sizes = "; ".join(
                ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in s.items()) for s in self.checked_sizes
            )
            lines.append(f"  fully convolutional: yes (proof: {self.proof}, at {sizes})")
        else:
            lines.append("  fully convolutional: no" + (f" ({self.note})" if self.note else ""))
        for blocker in self.blockers:
            lines.append(f"      blocked by {blocker.name} ({blocker.op}): {blocker.why}")
        for score in self.score_maps:
            h, w = score.height, score.width
            lines.append(
                f"  score map {score.output}: stride {h.stride}x{w.stride}, receptive field "
                f"{h.receptive_field}x{w.receptive_field}; from input {score.input} of H x W: "
                f"h = (H - {h.min_size}) // {h.stride} + 1, w = (W - {w.min_size}) // {w.stride} + 1"
            )
        if self.note and self.fully_convolutional:
            lines.append(f"  note: {self.note}")
        return lines


@dataclass
class RewritePlan:
    model_format: str  # "caffe" or "onnx"
    model_path: str
    mode: str
    input_shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    rewrites: list[FcRewrite] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    edits: list[GraphEdit] = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)  # old name -> new (layers and blobs)
    fcn: FcnReport | None = None  # fcn mode: what was proved about other input sizes (None: not checked)
    options: dict = field(default_factory=dict)  # the settings that shaped the plan (apply re-derives with them)
    notes: list[str] = field(default_factory=list)  # what a reader should know (what moved, what changed nothing)
    fingerprint: str = ""  # of the model the plan was made from (proto_rewrite.fingerprint)

    @property
    def changes_anything(self) -> bool:
        return bool(self.rewrites or self.edits)

    def to_dict(self) -> dict:
        return {
            "plan_version": PLAN_VERSION,
            "model_format": self.model_format,
            "model_path": self.model_path,
            "mode": self.mode,
            "input_shapes": {k: None if v is None else list(v) for k, v in self.input_shapes.items()},
            "rewrites": [_plain(asdict(r)) for r in self.rewrites],
            "skips": [{**asdict(s), "reason": s.reason.value, "message": s.message} for s in self.skips],
            "edits": [_plain(asdict(e)) for e in self.edits],
            "renames": dict(self.renames),
            "fcn": None if self.fcn is None else self.fcn.to_dict(),
            "options": dict(self.options),
            "notes": list(self.notes),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RewritePlan:
        if data.get("plan_version") != PLAN_VERSION:
            raise UsageError(
                f"unsupported plan version {data.get('plan_version')!r}",
                hint=f"this proto-rewrite reads plan version {PLAN_VERSION}",
            )
        rewrites = []
        for item in [*data["rewrites"], *data["skips"]]:  # names are looked up by: they must be text
            if not all(isinstance(item.get(key, ""), str) for key in ("name", "new_name", "op", "input")):
                raise ValueError("a rewrite or skip whose name is not text")
        for item in data["rewrites"]:
            weights = tuple(
                WeightChange(w["name"], tuple(w["shape_before"]), tuple(w["shape_after"]), w["transform"])
                for w in item["weights"]
            )
            rewrites.append(
                FcRewrite(
                    **{
                        **item,
                        "input_shape": tuple(item["input_shape"]),
                        "kernel": tuple(item["kernel"]),
                        "weights": weights,
                    }
                )
            )
        return cls(
            model_format=data["model_format"],
            model_path=data["model_path"],
            mode=data["mode"],
            input_shapes={k: None if v is None else tuple(v) for k, v in data["input_shapes"].items()},
            rewrites=rewrites,
            skips=[Skip(s["name"], s["op"], Reason(s["reason"]), s["detail"]) for s in data["skips"]],
            edits=[
                GraphEdit(
                    **{
                        **e,
                        "inputs": tuple(e["inputs"]),
                        "outputs": tuple(e["outputs"]),
                        "layers": tuple(e["layers"]),
                        "shape": None if e["shape"] is None else tuple(e["shape"]),
                    }
                )
                for e in data["edits"]
            ],
            renames=_names_map(data["renames"]),
            fcn=None if data.get("fcn") is None else FcnReport.from_dict(data["fcn"]),
            options=dict(data.get("options") or {}),
            notes=list(data.get("notes") or []),
            fingerprint=str(data.get("fingerprint") or ""),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def render_text(self) -> str:
        lines = [f"plan for {self.model_path} ({self.model_format}, mode {self.mode})"]
        for name, shape in self.input_shapes.items():
            lines.append(f"  input {name}: {'?' if shape is None else 'x'.join(map(str, shape))}")
        for rewrite in self.rewrites:
            rename = f" -> {rewrite.new_name}" if rewrite.new_name != rewrite.name else ""
            lines.append(
                f"  rewrite {rewrite.name}{rename}: {rewrite.op_before} -> {rewrite.op_after} "
                f"{rewrite.kernel[0]}x{rewrite.kernel[1]} kernel, {rewrite.in_channels} -> "
                f"{rewrite.out_channels} channels, input {rewrite.input} "
                f"{'x'.join(map(str, rewrite.input_shape))}"
            )
            for weight in rewrite.weights:
                lines.append(
                    f"      {weight.name}: {_shape(weight.shape_before)} -> {_shape(weight.shape_after)} "
                    f"({weight.transform})"
                )
        for edit in self.edits:
            lines.append(f"  {edit.action} {edit.name} ({edit.op}): {edit.why}")
        for skip in self.skips:
            lines.append(f"  skip {skip.message} [{skip.reason.value}]")
        if self.fcn is not None:
            lines.extend(self.fcn.render_lines())
        for note in self.notes:
            lines.append(f"  note: {note}")
        if not self.changes_anything:
            lines.append("  nothing to rewrite")
        return "\n".join(lines) + "\n"


def first_difference(planned: RewritePlan, derived: RewritePlan, *, edits: bool = True) -> str | None:
    """Where ``planned`` (a plan as given) departs from ``derived`` (made again from the model with
    the plan's own options), in words; None when they agree. ``edits`` False: rewrites only."""
    if planned.mode != derived.mode:
        return f"mode {planned.mode} in the plan, {derived.mode} now"
    mine = {r.name: r for r in planned.rewrites}
    theirs = {r.name: r for r in derived.rewrites}
    for name in mine:
        if name not in theirs:
            return f"rewrite '{name}': the model has no such rewritable FC"
        ours, model = asdict(mine[name]), asdict(theirs[name])
        for key in ours:
            if ours[key] != model[key]:
                return f"rewrite '{name}': {key} {_plain(ours[key])} in the plan, {_plain(model[key])} from the model"
    extra = [name for name in theirs if name not in mine]
    if extra:
        return f"the model also rewrites {', '.join(extra)}, which the plan does not list"
    if not edits:
        return None
    for position, (ours, model) in enumerate(zip(planned.edits, derived.edits)):
        if asdict(ours) != asdict(model):
            return f"edit {position + 1} ({ours.action} {ours.name}) in the plan is {model.action} {model.name} now"
    if len(planned.edits) != len(derived.edits):
        return f"the plan has {len(planned.edits)} edits, the model gives {len(derived.edits)}"
    if planned.renames != derived.renames:
        return "the renames differ"
    return None


def _plain(value):
    """Tuples to lists, recursively, for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Selection:
    """Which FC layers the user wants rewritten: --only, --match, --exclude."""

    only: frozenset[str] | None = None
    match: re.Pattern | None = None
    exclude: frozenset[str] = frozenset()

    @classmethod
    def from_options(cls, only: str | None = None, match: str | None = None, exclude: str | None = None) -> Selection:
        pattern = None
        if match:
            try:
                pattern = re.compile(match)
            except re.error as err:
                raise UsageError(
                    f"match '{match}' is not a valid regular expression: {err}", options=("match",)
                ) from err
        return cls(_names(only), pattern, _names(exclude) or frozenset())

    def selects(self, name: str) -> bool:
        if name in self.exclude:
            return False
        if self.only is not None and name not in self.only:
            return False
        return self.match is None or self.match.search(name) is not None

    def to_dict(self) -> dict:
        return {
            "only": None if self.only is None else sorted(self.only),
            "match": None if self.match is None else self.match.pattern,
            "exclude": sorted(self.exclude),
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> Selection:
        data = data or {}
        only = data.get("only")
        return cls(
            None if only is None else frozenset(only),
            re.compile(data["match"]) if data.get("match") else None,
            frozenset(data.get("exclude") or ()),
        )

    def is_explicit(self, name: str) -> bool:
        """Named in --only: a layer the user asked for, whose skip is an error."""
        return self.only is not None and name in self.only

    def check_names(self, fc_names: list[str]) -> None:
        known = set(fc_names)
        for option, names in (("only", self.only or ()), ("exclude", self.exclude)):
            missing = sorted(set(names) - known)
            if missing:
                raise UsageError(
                    f"{option} names layers that are not FC layers of this model: {', '.join(missing)}",
                    options=(option,),
                    hint=f"the FC layers are: {', '.join(fc_names) or 'none'}",
                )


def _names(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _names_map(value) -> dict[str, str]:
    """A plan's renames: names to names (a hand-edited plan may hold anything)."""
    renames = dict(value)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in renames.items()):
        raise ValueError("renames must map names to names")
    return renames


def read_plan(source) -> RewritePlan:
    """A plan object as it is, or the plan in a JSON file written by ``convert --save-plan`` /
    ``RewritePlan.to_json`` (a regular file within the text limit); :class:`InputFileError`
    naming the file when it is not one."""
    if isinstance(source, RewritePlan):
        return source
    from proto_rewrite.errors import InputFileError
    from proto_rewrite.fileio import read_text

    hint = "write one with proto-rewrite convert MODEL --dry-run --save-plan PLAN.json"
    text = read_text(source, "the plan")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: nested deeper than Python's stack
        detail = "it is nested too deeply to read" if isinstance(err, RecursionError) else err
        raise InputFileError(
            f"not a proto-rewrite plan: the plan is not JSON ({detail})", path=source, hint=hint
        ) from err
    try:
        if not isinstance(data, dict):
            raise TypeError(f"it holds a JSON {type(data).__name__}, not an object")
        return RewritePlan.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as err:
        raise InputFileError(f"not a proto-rewrite plan (bad or missing field: {err})", path=source, hint=hint) from err


def plan_renames(plan: RewritePlan | None, model_format: str) -> dict[str, str] | None:
    """The old -> new layer names of ``plan`` for matching two models of ``model_format``; a plan
    made for the other format is a :class:`UsageError`."""
    if plan is None:
        return None
    if plan.model_format != model_format:
        raise UsageError(
            f"plan was made for {plan.model_format} models; these are {model_format} models",
            options=("plan",),
            hint="give the one saved when B was converted from A",
        )
    return plan.renames
