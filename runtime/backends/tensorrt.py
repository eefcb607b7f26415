"""TensorRT (NVIDIA GPUs, Jetson): its builder (a weight-stripped, refittable
plan) and its runner (plan + refit by weight name).

Engines hold no weights (TensorRT >= 10: STRIP_PLAN with REFIT_INDIVIDUAL, every
graph parameter marked refittable by name): a bundle's engines stay small at
paper scale and every grid point's folded weights are refitted at load. A
weight change on a loaded engine is a refit in place (the runtime's
`rebinds_in_place`), not a second engine.

Written against the TensorRT 10.x/11.x Python API (name-based I/O tensors,
`execute_async_v3`, `Refitter.set_named_weights`) and cuda-python for device
buffers and the stream. Everything is imported lazily: importing this module
on a CPU box costs nothing, `available()` says why it cannot run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecore.fileio import atomic_write
from runtime.backends import base
from runtime.backends.base import check_input, device_slug
from runtime.errors import EdgeRuntimeError


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise EdgeRuntimeError(f"the tensorrt backend needs the tensorrt Python package ({exc})") from None
    return tensorrt


def import_cudart():
    try:  # cuda-python >= 12.6 moved the bindings; older releases expose cuda.cudart
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise EdgeRuntimeError(f"the tensorrt backend needs cuda-python for device buffers ({exc})") from None
    return cudart


def check_cuda(result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EdgeRuntimeError(f"CUDA call {what} failed with error {err}")
    return rest[0] if len(rest) == 1 else rest


def available() -> tuple[bool, str]:
    try:
        trt = import_tensorrt()
        cudart = import_cudart()
        count = check_cuda(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except EdgeRuntimeError as exc:
        return False, str(exc)
    if count < 1:
        return False, "no CUDA device is visible"
    return True, f"tensorrt {trt.__version__} on {count} CUDA device(s)"


class Runner(base.Runner):
    name = "tensorrt"

    def __init__(self, engine_path, weights=None, threads: int = 0):
        super().__init__(engine_path, weights, threads)  # TensorRT has no host thread pool: threads is unused
        self.engine = self.context = self.stream = None
        self._buffers: dict[str, tuple[int, tuple, np.dtype]] = {}

    def _activate(self) -> None:
        trt, cudart = import_tensorrt(), import_cudart()
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise EdgeRuntimeError(
                f"tensorrt: cannot deserialize {self.engine_path} (built by another "
                f"TensorRT version or for another GPU?)"
            )
        if self.weights:
            self._refit(self.weights)
        elif self.engine.refittable:  # our plans are weight-stripped: they need a weight set
            raise EdgeRuntimeError(f"tensorrt: {self.engine_path} is a refittable plan; bind a weight set to run it")
        self.context = self.engine.create_execution_context()
        self.stream = check_cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            ptr = check_cuda(cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.context.set_tensor_address(name, ptr)
            self._buffers[name] = (ptr, shape, dtype)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)

    def _refit(self, weights: dict) -> None:
        trt = self._trt
        refitter = trt.Refitter(self.engine, self._logger)
        refittable = set(refitter.get_all_weights())
        unknown = sorted(set(weights) - refittable)
        if unknown:
            raise EdgeRuntimeError(
                f"tensorrt: engine has no refittable weights named {unknown[:3]} "
                f"(was it built with REFIT from this signature's graph?)"
            )
        keep = []  # host arrays must live until refit_cuda_engine returns
        for name, arr in weights.items():
            dtype = np.float32
            if hasattr(refitter, "get_weights_prototype"):  # 10.x+: the engine's own weight dtype
                dtype = trt.nptype(refitter.get_weights_prototype(name).dtype)
            keep.append(np.ascontiguousarray(arr, dtype=dtype))
            if not refitter.set_named_weights(name, trt.Weights(keep[-1])):
                raise EdgeRuntimeError(f"tensorrt: refit rejected weights {name!r} (shape {arr.shape})")
        missing = refitter.get_missing_weights()
        if missing:
            raise EdgeRuntimeError(f"tensorrt: refit lacks weights {list(missing)[:3]}")
        if not refitter.refit_cuda_engine():
            raise EdgeRuntimeError("tensorrt: refit_cuda_engine failed")

    def _bind(self, weights: dict) -> None:
        # Refit writes the engine's weights in place: runs are serialised by the
        # caller (runners are single-threaded), so no run sees a half-refit engine.
        check_cuda(self._cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self._refit(weights)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        cudart = self._cudart
        ptr, shape, dtype = self._buffers[self.inputs[0]]
        x = check_input(x, shape, dtype, self.name)
        kind_h2d, kind_d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check_cuda(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, kind_h2d, self.stream), "cudaMemcpyAsync")
        if not self.context.execute_async_v3(self.stream):
            raise EdgeRuntimeError("tensorrt: execute_async_v3 failed")
        outs = []
        for name in self.outputs:
            optr, oshape, odtype = self._buffers[name]
            out = np.empty(oshape, odtype)
            check_cuda(
                cudart.cudaMemcpyAsync(out.ctypes.data, optr, out.nbytes, kind_d2h, self.stream), "cudaMemcpyAsync"
            )
            outs.append(out)
        check_cuda(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return outs

    def _close(self) -> None:
        for ptr, _, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        if self.stream is not None:
            self._cudart.cudaStreamDestroy(self.stream)
        self._buffers, self.context, self.engine, self.stream = {}, None, None, None


class Builder(base.EngineBuilder):
    """Weight-stripped plan (STRIP_PLAN + REFIT_INDIVIDUAL: the graph's parameters,
    marked refittable by name, are left out of the file and refitted at load; on
    TensorRT < 10, a plain REFIT plan), a workspace limit and a timing cache
    shared by every signature of a device.
    fp16: TensorRT 10.x sets the FP16 builder flag on the fp32 graph; 11.x has
    no such flag (networks are strongly typed), so it gets an fp16 graph."""

    def _check_environment(self) -> None:
        ok, reason = available()
        if not ok:
            raise EdgeRuntimeError(
                f"--backend tensorrt cannot run on this machine: {reason}. "
                f"Use --backend onnxruntime (CPU), or build on the target GPU/Jetson."
            )

    def _major(self) -> int:
        return int(import_tensorrt().__version__.split(".")[0])

    def identity(self) -> dict:
        cudart = import_cudart()
        dev = check_cuda(cudart.cudaGetDevice(), "cudaGetDevice")
        prop = check_cuda(cudart.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return {
            "device": device_slug(f"{name}-sm{prop.major}{prop.minor}"),
            "gpu": name,
            "compute_capability": f"{prop.major}.{prop.minor}",
            "backend_version": import_tensorrt().__version__,
        }

    def graph_precision(self, precision: str) -> str:
        return "fp16" if precision == "fp16" and self._major() >= 11 else "fp32"

    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict:
        trt = import_tensorrt()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        strongly_typed = self.graph_precision(precision) == "fp16"
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(graph.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EdgeRuntimeError(f"TensorRT could not parse {graph.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.options.workspace_mb << 20)
        stripped = _strip_weights(trt, network, config, weight_names)
        if precision == "fp16" and not strongly_typed:
            config.set_flag(trt.BuilderFlag.FP16)
        out.write_bytes(self._build_with_timing_cache(builder, network, config))
        return {"strongly_typed": strongly_typed, "workspace_mb": self.options.workspace_mb, "stripped": stripped}

    def _build_with_timing_cache(self, builder, network, config) -> bytes:
        from filelock import FileLock

        path = self.options.timing_cache
        if path is None:
            plan = builder.build_serialized_network(network, config)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(path) + ".lock"):  # one writer; builds reuse each other's tactics
                cache = config.create_timing_cache(path.read_bytes() if path.exists() else b"")
                config.set_timing_cache(cache, ignore_mismatch=False)
                plan = builder.build_serialized_network(network, config)
                if plan is not None:
                    blob = bytes(config.get_timing_cache().serialize())
                    atomic_write(path, lambda f: f.write(blob))
        if plan is None:
            raise EdgeRuntimeError("TensorRT failed to build the engine (see its log above)")
        return bytes(plan)


def _strip_weights(trt, network, config, weight_names: tuple[str, ...]) -> bool:
    """Makes the plan weight-stripped where TensorRT can (>= 10.0): exactly the graph's
    parameters refittable (the rest of the network keeps its constants and
    fusions), and their values left out of the plan. Returns whether it did."""
    flags = trt.BuilderFlag
    if not (hasattr(flags, "STRIP_PLAN") and hasattr(flags, "REFIT_INDIVIDUAL")):
        config.set_flag(flags.REFIT)  # TensorRT 8.x: refittable, weights kept in the plan
        return False
    config.set_flag(flags.REFIT_INDIVIDUAL)
    config.set_flag(flags.STRIP_PLAN)
    unmarked = [name for name in weight_names if not network.mark_weights_refittable(name)]
    if unmarked:
        raise EdgeRuntimeError(
            f"TensorRT cannot make weights {unmarked[:3]} refittable: the parser renamed or folded them"
        )
    return True
