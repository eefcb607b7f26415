"""ONNX export of a derived tree module: static input shape, one named output
per task, initializer names equal to the module's parameter names.

We use torch's TorchScript exporter (`dynamo=False`): it exports our small
conv nets in about a second and keeps parameter names. Its default pass
deduplicates initializers with identical values (e.g. two zero biases), which
would bind one weight to several parameters and break override-by-name; we
export with initializers as inputs (which skips that pass), then drop them
from the graph inputs so ONNX Runtime may optimise them as constants, and
check that every parameter came out as its own initializer.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from compiler.errors import CompilerError

OPSET = 17
INPUT_NAME = "image"


@dataclass(frozen=True)
class GraphInfo:
    input_name: str
    output_names: tuple[str, ...]
    weight_names: tuple[str, ...]


class _HalfIO(nn.Module):
    """fp16 body, fp32 I/O: a strongly typed fp16 graph for TensorRT >= 11."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.m = copy.deepcopy(module).half()

    def forward(self, x):
        return tuple(o.float() for o in self.m(x.half()))


def export_graph(
    module: nn.Module, input_shape: tuple[int, ...], output_names: list[str], path: str | Path, precision: str = "fp32"
) -> GraphInfo:
    """Writes `path` atomically; returns its I/O and initializer names."""
    path = Path(path)
    names = [k for k, _ in module.named_parameters()]
    wrapped = _HalfIO(module) if precision == "fp16" else module
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                wrapped.eval(),
                (torch.zeros(1, *input_shape),),
                tmp,
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                keep_initializers_as_inputs=True,
                do_constant_folding=False,
            )
        model = onnx.load(tmp)
        _constants_not_inputs(model, strip_prefix="m." if precision == "fp16" else "")
        _check_names(model, names)
        onnx.checker.check_model(model)
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return GraphInfo(INPUT_NAME, tuple(output_names), tuple(names))


def _constants_not_inputs(model: onnx.ModelProto, strip_prefix: str) -> None:
    inits = model.graph.initializer
    if strip_prefix:
        renames = {i.name: i.name.removeprefix(strip_prefix) for i in inits}
        for init in inits:
            init.name = renames[init.name]
        for node in model.graph.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
    init_names = {i.name for i in inits}
    keep = [
        i for i in model.graph.input if i.name not in init_names and i.name.removeprefix(strip_prefix) not in init_names
    ]
    del model.graph.input[:]
    model.graph.input.extend(keep)


def _check_names(model: onnx.ModelProto, names: list[str]) -> None:
    found = [i.name for i in model.graph.initializer]
    missing = sorted(set(names) - set(found))
    if missing or len(found) != len(set(found)):
        raise CompilerError(
            f"ONNX export lost parameter names {missing[:3]} (found {len(found)} initializers for "
            f"{len(names)} parameters): weights could not be bound by name"
        )
