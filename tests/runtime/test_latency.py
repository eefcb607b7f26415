"""Latency tables: versioned, one per measuring machine, validated where they enter."""

import json

import pytest

from runtime.errors import EdgeRuntimeError
from runtime.latency import LATENCY_VERSION, LatencyTable, load_table, machine_id, save_table, table_path

SIGS = {"aaaa", "bbbb"}


def table(machine="amd-epyc-2c", **ms):
    ms = ms or {"aaaa": 1.0, "bbbb": 2.0}
    return LatencyTable(
        "onnxruntime", "cpu-x86_64", machine, {s: {"p50": v, "p90": v * 1.1, "p99": v * 1.2} for s, v in ms.items()}
    )


def test_round_trip_and_one_table_per_machine(tmp_path):
    save_table(tmp_path, table())
    save_table(tmp_path, table("intel-xeon-8c", aaaa=5.0, bbbb=6.0))
    a = load_table(tmp_path, "onnxruntime", "cpu-x86_64", SIGS, machine="amd-epyc-2c")
    b = load_table(tmp_path, "onnxruntime", "cpu-x86_64", SIGS, machine="intel-xeon-8c")
    assert a.stat("p50") == {"aaaa": 1.0, "bbbb": 2.0} and b.stat("p50") == {"aaaa": 5.0, "bbbb": 6.0}
    assert a.version == LATENCY_VERSION and machine_id()


def test_a_table_from_another_machine_is_named_not_used(tmp_path):
    save_table(tmp_path, table("intel-xeon-8c"))
    with pytest.raises(EdgeRuntimeError, match="measured elsewhere: onnxruntime-cpu-x86_64-intel-xeon-8c.json"):
        load_table(tmp_path, "onnxruntime", "cpu-x86_64", SIGS, machine="amd-epyc-2c")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.0, True, "1"])
def test_non_finite_or_non_positive_latencies_are_refused(tmp_path, value):
    data = table().to_dict()
    data["signatures"]["aaaa"]["p90"] = value
    path = table_path(tmp_path, "onnxruntime", "cpu-x86_64", "m")
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    with pytest.raises(EdgeRuntimeError, match=r"signatures.aaaa(.p90: expected a finite positive|: expected p50)"):
        load_table(tmp_path, "onnxruntime", "cpu-x86_64", SIGS, machine="m")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.pop("version"), "expected version 2, found None"),
        (
            lambda d: d["signatures"].update(cccc=d["signatures"]["aaaa"]),
            r"signatures \['cccc'\] are not in this bundle",
        ),
        (lambda d: d["signatures"]["aaaa"].pop("p99"), "expected keys"),
        (lambda d: d.update(signatures=[]), "non-empty 'signatures' object"),
    ],
)
def test_malformed_tables_are_one_clear_error(tmp_path, edit, match):
    data = table().to_dict()
    edit(data)
    path = table_path(tmp_path, "onnxruntime", "cpu-x86_64", "m")
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    with pytest.raises(EdgeRuntimeError, match=match):
        load_table(tmp_path, "onnxruntime", "cpu-x86_64", SIGS, machine="m")
