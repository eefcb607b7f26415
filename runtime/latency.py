"""The calibrated latency table: a versioned record per (backend, device, machine),
next to its reader and writer.

    <bundle>/latency/<backend>-<device>-<machine>.json

`device` is the engine's target (e.g. cpu-x86_64, nvidia-orin-sm87); `machine`
names the kind of box that measured it (CPU model and core count), so two
machines of the same architecture calibrating one shared bundle keep a table
each instead of overwriting one file. Values are validated where they enter: finite, positive,
percentiles in order, and only signatures of this bundle.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecore.fileio import atomic_write_text, loads_untrusted
from edgecore.paths import check_id, confine
from runtime.backends.base import device_slug
from runtime.errors import EdgeRuntimeError

LATENCY_VERSION = 2  # 1: unversioned, keyed by (backend, device) only
STATS = ("p50", "p90", "p99")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_id() -> str:
    """The measuring machine as a file-name component: CPU model and core count
    (not the host name, which changes with every container run)."""
    return device_slug(f"{cpu_model()}-{os.cpu_count()}c")


@dataclass(frozen=True)
class LatencyTable:
    backend: str
    device: str
    machine: str
    signatures: dict[str, dict[str, float]]  # signature -> {"p50": ms, "p90": ms, "p99": ms}
    repeats: int = 0
    threads: int = 0
    fps: float | None = None
    created: str = ""
    measures: str = "preprocess + engine run per frame"
    version: int = field(default=LATENCY_VERSION)

    def stat(self, name: str) -> dict[str, float]:
        """{signature: ms} of one statistic (p50, p90 or p99)."""
        if name not in STATS:
            raise EdgeRuntimeError(f"latency statistic must be one of {list(STATS)}, found {name!r}")
        return {sig: v[name] for sig, v in self.signatures.items()}

    def to_dict(self) -> dict:
        return asdict(self)


def table_path(bundle: str | Path, backend: str, device: str, machine: str) -> Path:
    """The table's file, checked to stay in the bundle: the device comes from the manifest,
    which may have been written anywhere, and `latency/` may be a link."""
    for field_, value in (("backend", backend), ("device", device), ("machine", machine)):
        check_id(value, "name", f"latency table {field_}", EdgeRuntimeError)
    return confine(bundle, f"latency/{backend}-{device}-{machine}.json", "latency table", EdgeRuntimeError)


def save_table(bundle: str | Path, table: LatencyTable) -> Path:
    return atomic_write_text(
        table_path(bundle, table.backend, table.device, table.machine), json.dumps(table.to_dict(), indent=1)
    )


def load_table(bundle: str | Path, backend: str, device: str, signatures, machine: str | None = None) -> LatencyTable:
    """This machine's table for (backend, device), checked against the bundle's `signatures`."""
    machine = machine or machine_id()
    path = table_path(bundle, backend, device, machine)
    if not path.is_file():
        others = sorted(p.name for p in (Path(bundle) / "latency").glob(f"{backend}-{device}-*.json"))
        elsewhere = f" (tables measured elsewhere: {', '.join(others)})" if others else ""
        raise EdgeRuntimeError(
            f"no latency table for {backend} on {device} measured on this machine ({path})"
            f"{elsewhere}: run `runtime calibrate {bundle}` here first"
        )
    return read_table(path, set(signatures))


def read_table(path: Path, signatures: set[str]) -> LatencyTable:
    """A latency table file (already confined to its bundle), parsed and checked."""
    try:
        data = loads_untrusted(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeRuntimeError(f"latency table {path} is unreadable ({exc}): rerun `runtime calibrate`") from None
    return parse_table(data, str(path), signatures)


def parse_table(data, where: str, signatures: set[str]) -> LatencyTable:
    """A LatencyTable from JSON data, or one EdgeRuntimeError naming the bad field."""
    if not isinstance(data, dict) or data.get("version") != LATENCY_VERSION:
        found = data.get("version") if isinstance(data, dict) else type(data).__name__
        raise EdgeRuntimeError(
            f"latency table {where}: expected version {LATENCY_VERSION}, found {found!r}: rerun `runtime calibrate`"
        )
    sigs = data.get("signatures")
    if not isinstance(sigs, dict) or not sigs:
        raise EdgeRuntimeError(f"latency table {where}: expected a non-empty 'signatures' object")
    unknown = sorted(set(sigs) - signatures)
    if unknown:
        raise EdgeRuntimeError(
            f"latency table {where}: signatures {unknown[:3]} are not in this bundle "
            f"(a table of another bundle?): rerun `runtime calibrate`"
        )
    for sig, v in sigs.items():
        _check_stats(v, f"latency table {where}: signatures.{sig}")
    try:
        return LatencyTable(**{k: data[k] for k in LatencyTable.__dataclass_fields__ if k in data})
    except TypeError as exc:
        raise EdgeRuntimeError(f"latency table {where}: {exc}") from None


def _check_stats(v, where: str) -> None:
    if not isinstance(v, dict) or set(v) != set(STATS):
        raise EdgeRuntimeError(f"{where}: expected keys {list(STATS)}, found {v!r}")
    for k in STATS:
        x = v[k]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
            raise EdgeRuntimeError(f"{where}.{k}: expected a finite positive number of ms, found {x!r}")
    if not v["p50"] <= v["p90"] <= v["p99"]:
        raise EdgeRuntimeError(f"{where}: expected p50 <= p90 <= p99, found {v!r}")
