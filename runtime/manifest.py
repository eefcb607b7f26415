"""The bundle manifest (`BUNDLE_DIR/manifest.json`): schema, version, validation.

The compiler writes it (`Manifest.to_dict`), the runtime reads it
(`load_manifest`); both sides use these dataclasses, so the format is defined
once, next to its reader. Paths inside are relative to the bundle directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecore.errors import EdgeError
from edgecore.family import DEFAULT_FAMILY, Family, get_family
from edgecore.fileio import loads_untrusted
from edgecore.paths import check_id, check_relative
from runtime.errors import EdgeRuntimeError
from runtime.prefs import validate_preference

FORMAT = "edgemtl.bundle"
FORMAT_VERSION = 3  # bump on any incompatible change; readers refuse other versions
# 2 (compiler 0.2.0): the anchor's weights stored once, per grid point only its adaptation
# 3 (compiler 0.3.0): array files (anchor, deltas, samples) are safetensors,
#   OpenVINO engines take weights as graph inputs
FIRST_COMPILER = {1: "0.1.0", 2: "0.2.0", 3: "0.3.0"}  # the compiler release that first wrote each version
# build["auto"]["rule"]: how the build ordered its backends for the runtime's `auto`
MEASURED_RULE = (
    "fastest median engine latency over the bundle's signatures, measured at build time on the build machine"
)
PRIORITY_RULE = "registry priority (one backend)"
MAX_MANIFEST_BYTES = 64 << 20  # a 10^5-point grid is ~50 MB; anything larger is not ours
MAX_SIDE = 16384  # input channels / pixels per side


@dataclass(frozen=True)
class InputSpec:
    """One frame as the engine expects it: (C, H, W) float32 after
    `(pixel * scale - mean) / std` per channel, pixels in `colour_order`."""

    shape: tuple[int, int, int]
    colour_order: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str  # segmentation | depth | normals | edges | saliency ...
    channels: int


@dataclass(frozen=True)
class EngineRef:
    """A built engine of one signature for one backend/precision/device."""

    backend: str
    precision: str
    device: str
    key: str
    path: str
    sha256: str


@dataclass(frozen=True)
class SignatureInfo:
    signature: str
    tree: tuple[tuple[int, ...], ...]  # the family's sub-network spec (dymu-tree: the canonical tree)
    nodes_per_layer: tuple[int, ...]  # the family's units_per_layer of the spec
    params: int
    flops: float
    graph: str
    input_name: str
    output_names: tuple[str, ...]
    weight_names: tuple[str, ...]
    engines: tuple[EngineRef, ...] = ()


@dataclass(frozen=True)
class GridEntry:
    name: str
    r: tuple[float, ...]
    c: float
    signature: str
    adaptation: str  # adaptation id: deltas/<id>.safetensors, folded into the anchor at load
    parity: dict = field(default_factory=dict)  # task -> {"max_abs", "rel"}


@dataclass(frozen=True)
class Manifest:
    model: dict  # identity (content hash), checkpoint path, config
    tasks: tuple[TaskInfo, ...]
    input: InputSpec
    full_net: dict  # params, flops of the anchor net with every stream computed
    signatures: dict[str, SignatureInfo]
    grid: tuple[GridEntry, ...]
    anchor: dict  # {"id": anchor/<id>.safetensors, "plan": the family's fold plan}
    hypernets: dict | None = None  # {"graph", "plan"} paths, for exact mode
    build: dict = field(default_factory=dict)
    family: str = DEFAULT_FAMILY  # edgecore.family name: how to read the specs
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        """JSON-ready dict (lists, not tuples): what manifest.json holds."""
        d = asdict(self)
        d["signatures"] = {k: asdict(v) for k, v in self.signatures.items()}
        return json.loads(json.dumps(d))

    def entry(self, name: str) -> GridEntry:
        for e in self.grid:
            if e.name == name:
                return e
        raise EdgeRuntimeError(f"no grid point named {name!r} in this bundle")


def _get(obj: Any, key: str, kind: type | tuple, where: str) -> Any:
    if not isinstance(obj, dict):
        raise EdgeRuntimeError(f"manifest: {where} must be an object, found {type(obj).__name__}")
    if key not in obj:
        raise EdgeRuntimeError(f"manifest: {where or 'the top level'} lacks {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise EdgeRuntimeError(
            f"manifest: {where + '.' if where else ''}{key} must be {names}, found {type(value).__name__}"
        )
    return value


def _num(obj: dict, key: str, where: str) -> float:
    value = float(_get(obj, key, (int, float), where))
    if not math.isfinite(value):
        raise EdgeRuntimeError(f"manifest: {where + '.' if where else ''}{key} must be finite, found {value}")
    return value


def _engine(d: dict, where: str) -> EngineRef:
    v = {k: _get(d, k, str, where) for k in ("backend", "precision", "device", "key", "path", "sha256")}
    for k in ("backend", "precision", "device"):
        check_id(v[k], "name", f"manifest: {where}.{k}", EdgeRuntimeError)
    check_id(v["key"], "hex24", f"manifest: {where}.key", EdgeRuntimeError)
    check_id(v["sha256"], "sha256", f"manifest: {where}.sha256", EdgeRuntimeError)
    check_relative(v["path"], f"manifest: {where}.path", EdgeRuntimeError)
    return EngineRef(**v)


def _signature(d: dict, where: str, family: Family) -> SignatureInfo:
    sig = check_id(_get(d, "signature", str, where), "hex16", f"manifest: {where}.signature", EdgeRuntimeError)
    try:
        tree = family.canonical(_get(d, "tree", list, where))
    except (ValueError, TypeError) as exc:
        raise EdgeRuntimeError(f"manifest: {where}.tree is not a {family.name} spec: {exc}") from None
    if family.signature(tree) != sig:
        raise EdgeRuntimeError(f"manifest: {where}.tree has signature {family.signature(tree)}, not {sig!r}")
    return SignatureInfo(
        signature=sig,
        tree=tree,
        nodes_per_layer=tuple(_get(d, "nodes_per_layer", list, where)),
        params=int(_num(d, "params", where)),
        flops=_num(d, "flops", where),
        graph=check_relative(_get(d, "graph", str, where), f"manifest: {where}.graph", EdgeRuntimeError),
        input_name=_get(d, "input_name", str, where),
        output_names=tuple(_get(d, "output_names", list, where)),
        weight_names=tuple(_get(d, "weight_names", list, where)),
        engines=tuple(_engine(e, f"{where}.engines[{i}]") for i, e in enumerate(_get(d, "engines", list, where))),
    )


def _entry(d: dict, where: str, n_tasks: int, signatures: dict) -> GridEntry:
    pref = validate_preference(_get(d, "r", list, where), _num(d, "c", where), n_tasks, where=f"manifest: {where}")
    sig = _get(d, "signature", str, where)
    if sig not in signatures:
        raise EdgeRuntimeError(f"manifest: {where}.signature {sig!r} is not among the bundle's signatures")
    return GridEntry(
        _get(d, "name", str, where),
        pref.r,
        pref.c,
        sig,
        check_id(_get(d, "adaptation", str, where), "hex16", f"manifest: {where}.adaptation", EdgeRuntimeError),
        _get(d, "parity", dict, where),
    )


def manifest_from_dict(d: Any) -> Manifest:
    """Validates a parsed manifest; EdgeRuntimeError names the first problem."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise EdgeRuntimeError(f"not a bundle manifest: expected format {FORMAT!r}, found {found!r}")
    version = d.get("format_version")
    if version != FORMAT_VERSION:
        older = isinstance(version, int) and version < FORMAT_VERSION
        raise EdgeRuntimeError(
            f"bundle format version {version!r} is not supported: this runtime reads version "
            f"{FORMAT_VERSION}; "
            + (
                f"rebuild the bundle with compiler >= {FIRST_COMPILER[FORMAT_VERSION]} (`compiler build`)"
                if older
                else "update the runtime to the compiler's release that built it"
            )
        )
    tasks = tuple(
        TaskInfo(
            _get(t, "name", str, f"tasks[{i}]"),
            _get(t, "kind", str, f"tasks[{i}]"),
            int(_num(t, "channels", f"tasks[{i}]")),
        )
        for i, t in enumerate(_get(d, "tasks", list, ""))
    )
    spec = _input_spec(_get(d, "input", dict, ""))
    family = _family(d.get("family", DEFAULT_FAMILY))
    sigs = {k: _signature(v, f"signatures.{k}", family) for k, v in _get(d, "signatures", dict, "").items()}
    misfiled = [k for k, v in sigs.items() if v.signature != k]
    if misfiled:
        raise EdgeRuntimeError(f"manifest: signatures.{misfiled[0]} holds signature {sigs[misfiled[0]].signature!r}")
    grid = tuple(_entry(e, f"grid[{i}]", len(tasks), sigs) for i, e in enumerate(_get(d, "grid", list, "")))
    if not grid:
        raise EdgeRuntimeError("manifest: the grid is empty")
    return Manifest(
        model=_get(d, "model", dict, ""),
        tasks=tasks,
        input=spec,
        full_net=_get(d, "full_net", dict, ""),
        signatures=sigs,
        grid=grid,
        anchor=_anchor(_get(d, "anchor", dict, "")),
        hypernets=_hypernets(d.get("hypernets")),
        build=d.get("build", {}),
        family=family.name,
    )


def _family(name) -> Family:
    try:
        return get_family(name) if isinstance(name, str) else get_family(repr(name))
    except EdgeError as exc:
        raise EdgeRuntimeError(f"manifest: {exc}") from None


def _input_spec(inp: dict) -> InputSpec:
    """The input spec, checked so that preprocessing cannot fail later on a frame."""
    raw_shape = _get(inp, "shape", list, "input")
    if len(raw_shape) != 3 or not all(type(v) is int and 0 < v <= MAX_SIDE for v in raw_shape):
        raise EdgeRuntimeError(
            f"manifest: input.shape must be [C, H, W] of positive integers <= {MAX_SIDE}, found {raw_shape!r}"
        )
    order = _get(inp, "colour_order", str, "input")
    if order.upper() not in ("RGB", "BGR"):
        raise EdgeRuntimeError(f"manifest: input.colour_order must be RGB or BGR, found {order!r}")
    scale = _num(inp, "scale", "input")
    mean, std = _get(inp, "mean", list, "input"), _get(inp, "std", list, "input")
    for name, values in (("mean", mean), ("std", std)):
        ok = len(values) == raw_shape[0] and all(
            type(v) in (int, float) and math.isfinite(v) and (name == "mean" or v > 0) for v in values
        )
        if not ok:
            raise EdgeRuntimeError(
                f"manifest: input.{name} must be {raw_shape[0]} finite numbers{' > 0' * (name == 'std')}, "
                f"found {values!r}"
            )
    if not scale > 0:
        raise EdgeRuntimeError(f"manifest: input.scale must be > 0, found {scale}")
    return InputSpec(tuple(raw_shape), order, scale, tuple(mean), tuple(std))


def _anchor(a: dict) -> dict:
    check_id(_get(a, "id", str, "anchor"), "hex16", "manifest: anchor.id", EdgeRuntimeError)
    _get(a, "plan", dict, "anchor")  # the family checks its content when it folds
    return a


def _hypernets(h) -> dict | None:
    if h is None:
        return None
    for key in ("graph", "plan"):
        check_relative(_get(h, key, str, "hypernets"), f"manifest: hypernets.{key}", EdgeRuntimeError)
    return h


def recorded_auto(build: Any) -> dict:
    """The build's backend order for the runtime's `auto` (`build["auto"]`), validated:
    {"order": [names], "ms": {name: ms}, "rule": str, "machine": str}, each part
    present only when well-formed (a bundle from an older compiler has none)."""
    auto = build.get("auto") if isinstance(build, dict) else None
    if not isinstance(auto, dict):
        return {}
    out = {}
    order = auto.get("order")
    if isinstance(order, list) and all(isinstance(n, str) for n in order):
        out["order"] = list(dict.fromkeys(order))
    ms = auto.get("ms")
    if isinstance(ms, dict):
        ok = {k: float(v) for k, v in ms.items() if type(v) in (int, float) and math.isfinite(v) and v > 0}
        out["ms"] = ok
    for key in ("rule", "machine"):
        if isinstance(auto.get(key), str):
            out[key] = auto[key]
    return out


def load_manifest(bundle_dir: str | Path) -> Manifest:
    """Reads and validates BUNDLE_DIR/manifest.json."""
    path = Path(bundle_dir) / "manifest.json"
    if not path.is_file():
        raise EdgeRuntimeError(f"{bundle_dir} is not a bundle: {path.name} is missing")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise EdgeRuntimeError(f"{path} is {size:,} bytes; a manifest is at most {MAX_MANIFEST_BYTES:,}")
    try:
        raw = loads_untrusted(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeRuntimeError(f"{path} is not valid JSON ({exc})") from None
    except ValueError as exc:  # too deep
        raise EdgeRuntimeError(f"{path} is {exc}") from None
    return manifest_from_dict(raw)
