"""Engine builders, one per backend, behind one small interface (and a registry).

    builder = get_builder("onnxruntime")
    builder.identity()   # {"device": ..., "backend_version": ...}: part of the cache key
    builder.build(graph_path, out_path, precision, weight_names)

Heavy packages (tensorrt, cuda-python) are imported inside the builder that
needs them; `check()` fails fast with the reason when a backend cannot run here.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import numpy as np

from compiler.errors import CompilerError

PRECISIONS = ("fp32", "fp16")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower()


class OnnxRuntimeBuilder:
    """The engine is the graph as ONNX Runtime optimises it at level EXTENDED
    (constant folding, Conv+activation fusion), saved so loading skips that work,
    with every weight tensor turned into external data that is never written:
    the runtime binds a weight set with `add_external_initializers` and ORT runs
    its hardware-specific passes (NCHWc) on those weights at load time. See
    runtime/backends/onnxruntime.py for why not initializer override."""

    name, suffix, precisions = "onnxruntime", ".onnx", ("fp32",)
    WEIGHTS_LOCATION = "bound-at-load-time"  # the external-data location written into the engine; no such file

    def check(self, precision: str) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise CompilerError(f"--backend onnxruntime needs the onnxruntime package ({exc})") from None
        if precision not in self.precisions:
            raise CompilerError(f"--precision {precision} is not supported by onnxruntime on CPU (expected "
                                f"fp32; its CPU kernels have no fast fp16 path); use --backend tensorrt for fp16")

    def identity(self) -> dict:
        import onnxruntime
        # EXTENDED-level graphs hold no CPU-specific layout, so the architecture is the device.
        return {"device": _slug(f"cpu-{platform.machine()}"), "backend_version": onnxruntime.__version__}

    def graph_precision(self, precision: str) -> str:
        return "fp32"

    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict:
        import onnx
        import onnxruntime as ort
        from onnx.external_data_helper import set_external_data

        from runtime.backends.onnxruntime import session_options
        so = session_options(level="ORT_ENABLE_EXTENDED")
        so.optimized_model_filepath = str(out)
        ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
        model = onnx.load(str(out))
        wanted = set(weight_names)
        found = 0
        for tensor in model.graph.initializer:
            if tensor.name in wanted:
                nbytes = int(np.prod(tensor.dims)) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
                set_external_data(tensor, location=self.WEIGHTS_LOCATION, offset=0, length=nbytes)
                for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data"):
                    tensor.ClearField(field)
                tensor.data_location = onnx.TensorProto.EXTERNAL
                found += 1
        if found != len(wanted):
            kept = {t.name for t in model.graph.initializer}
            raise CompilerError(f"onnxruntime's optimiser renamed or folded weights {sorted(wanted - kept)[:3]}: "
                                f"they could not be bound at load time")
        onnx.save(model, str(out))
        return {"optimization_level": "ORT_ENABLE_EXTENDED", "weights": "external, bound at load time"}


class TensorRTBuilder:
    """Serialized plan built with REFIT (weights bound by name at load time), a
    workspace limit and a timing cache shared by every signature of a device.
    fp16: TensorRT 10.x sets the FP16 builder flag on the fp32 graph; 11.x has
    no such flag (networks are strongly typed), so it gets an fp16 graph."""

    name, suffix, precisions = "tensorrt", ".plan", ("fp32", "fp16")

    def __init__(self, workspace_mb: int = 1024, timing_cache: Path | None = None):
        self.workspace_mb, self.timing_cache = workspace_mb, timing_cache

    def check(self, precision: str) -> None:
        from runtime.backends import available
        ok, reason = available("tensorrt")
        if not ok:
            raise CompilerError(f"--backend tensorrt cannot run on this machine: {reason}. "
                                f"Use --backend onnxruntime (CPU), or build on the target GPU/Jetson.")
        if precision not in self.precisions:
            raise CompilerError(f"--precision must be one of {self.precisions}, found {precision}")

    def _trt(self):
        from runtime.backends.tensorrt import import_tensorrt
        return import_tensorrt()

    def _major(self) -> int:
        return int(self._trt().__version__.split(".")[0])

    def identity(self) -> dict:
        from runtime.backends.tensorrt import _check, import_cudart
        cudart = import_cudart()
        dev = _check(cudart.cudaGetDevice(), "cudaGetDevice")
        prop = _check(cudart.cudaGetDeviceProperties(dev), "cudaGetDeviceProperties")
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return {"device": _slug(f"{name}-sm{prop.major}{prop.minor}"), "gpu": name,
                "compute_capability": f"{prop.major}.{prop.minor}", "backend_version": self._trt().__version__}

    def graph_precision(self, precision: str) -> str:
        return "fp16" if precision == "fp16" and self._major() >= 11 else "fp32"

    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict:
        trt = self._trt()
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        strongly_typed = self.graph_precision(precision) == "fp16"
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(graph.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise CompilerError(f"TensorRT could not parse {graph.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        config.set_flag(trt.BuilderFlag.REFIT)
        if precision == "fp16" and not strongly_typed:
            config.set_flag(trt.BuilderFlag.FP16)
        plan = self._build_with_timing_cache(builder, network, config)
        out.write_bytes(plan)
        return {"strongly_typed": strongly_typed, "workspace_mb": self.workspace_mb}

    def _build_with_timing_cache(self, builder, network, config) -> bytes:
        from filelock import FileLock

        from runtime.fileio import atomic_write
        if self.timing_cache is None:
            plan = builder.build_serialized_network(network, config)
        else:
            self.timing_cache.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.timing_cache) + ".lock"):  # one writer; builds reuse each other's tactics
                blob = self.timing_cache.read_bytes() if self.timing_cache.exists() else b""
                cache = config.create_timing_cache(blob)
                config.set_timing_cache(cache, ignore_mismatch=False)
                plan = builder.build_serialized_network(network, config)
                if plan is not None:
                    blob = bytes(config.get_timing_cache().serialize())
                    atomic_write(self.timing_cache, lambda f: f.write(blob))
        if plan is None:
            raise CompilerError("TensorRT failed to build the engine (see its log above)")
        return bytes(plan)


BUILDERS = {"onnxruntime": OnnxRuntimeBuilder, "tensorrt": TensorRTBuilder}


def get_builder(name: str, **kwargs):
    if name not in BUILDERS:
        raise CompilerError(f"--backend must be one of {sorted(BUILDERS)}, found {name!r}")
    return BUILDERS[name](**kwargs) if name == "tensorrt" else BUILDERS[name]()
