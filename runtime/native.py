"""The native runtime (`libedgemtl`, built by the top-level CMakeLists.txt) called from
Python through its C API (`native/include/edgemtl/edgemtl.h`) with ctypes: the same
bundle, the same selections, OpenVINO run from C++. The parity tests and
`python -m benchmarks native` compare it with the Python runtime through this class;
it is also the shortest way to drive the C++ runtime from a Python tool.

    with NativeRuntime("bundles/scenes3") as rt:      # backend "auto": openvino on a CPU
        rt.set_preference([0.6, 0.2, 0.2], 0.5)
        outs = rt.run(x)                              # {"semseg": (C, H, W), ...}
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import numpy as np

from runtime.errors import EdgeRuntimeError

LIB_ENV = "EDGEMTL_NATIVE_LIB"  # path of libedgemtl.so, when not in <repo>/build
BUILD_HINT = "build it with `cmake -S . -B build -G Ninja && cmake --build build` (README, native runtime)"


def find_library() -> Path | None:
    """$EDGEMTL_NATIVE_LIB, else the repository's build/libedgemtl.so, else None."""
    if os.environ.get(LIB_ENV):
        return Path(os.environ[LIB_ENV])
    path = Path(__file__).resolve().parents[1] / "build" / "libedgemtl.so"
    return path if path.is_file() else None


class _Options(ctypes.Structure):
    _fields_ = [("backend", ctypes.c_char_p), ("threads", ctypes.c_int), ("pool_mb", ctypes.c_double)]


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    p, i, d, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_size_t
    floats = ctypes.POINTER(ctypes.c_float)
    signatures = {
        "edgemtl_last_error": ([], ctypes.c_char_p),
        "edgemtl_open": ([ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(p)], i),
        "edgemtl_close": ([p], None),
        "edgemtl_backend": ([p], ctypes.c_char_p),
        "edgemtl_num_tasks": ([p], i),
        "edgemtl_task_name": ([p, i], ctypes.c_char_p),
        "edgemtl_input_shape": ([p, ctypes.POINTER(ctypes.c_int64)], i),
        "edgemtl_output_shape": ([p, i, ctypes.POINTER(ctypes.c_int64), i], i),
        "edgemtl_set_preference": ([p, ctypes.POINTER(d), sz, d, i], i),
        "edgemtl_set_budget": ([p, d, i], i),
        "edgemtl_wait": ([p], i),
        "edgemtl_run": ([p, floats, ctypes.POINTER(floats)], i),
        "edgemtl_run_frame": ([p, ctypes.POINTER(ctypes.c_uint8), i, i, ctypes.c_char_p, ctypes.POINTER(floats)], i),
        "edgemtl_current": ([p, ctypes.c_char_p, sz, ctypes.c_char_p], i),
        "edgemtl_stats_json": ([p, ctypes.c_char_p, sz], sz),
    }
    for name, (args, res) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


class NativeRuntime:
    """One libedgemtl runtime handle; see the module docstring."""

    def __init__(self, bundle: str | Path, backend: str = "auto", threads: int = 0, pool_mb: float = 256,
                 lib: str | Path | None = None):  # fmt: skip
        path = Path(lib) if lib else find_library()
        if path is None or not path.is_file():
            raise EdgeRuntimeError(
                f"the native runtime library is not built ({path or 'build/libedgemtl.so'}): {BUILD_HINT}"
            )
        self.lib = _load(path)
        handle = ctypes.c_void_p()
        opts = _Options(backend.encode(), threads, pool_mb)
        self._check(self.lib.edgemtl_open(str(bundle).encode(), ctypes.byref(opts), ctypes.byref(handle)))
        self.handle = handle
        self.backend = self.lib.edgemtl_backend(handle).decode()
        self.task_names = [
            self.lib.edgemtl_task_name(handle, t).decode() for t in range(self.lib.edgemtl_num_tasks(handle))
        ]
        shape = (ctypes.c_int64 * 4)()
        self.lib.edgemtl_input_shape(handle, shape)
        self.input_shape = tuple(shape)

    def _check(self, status: int) -> None:
        if status != 0:
            raise EdgeRuntimeError(self.lib.edgemtl_last_error().decode())

    def output_shapes(self) -> list[tuple[int, ...]]:
        out = []
        for t in range(len(self.task_names)):
            dims = (ctypes.c_int64 * 8)()
            n = self.lib.edgemtl_output_shape(self.handle, t, dims, 8)
            if n < 0:
                self._check(1)
            out.append(tuple(dims[:n]))
        return out

    def set_preference(self, r, c: float, wait: bool = True) -> None:
        values = (ctypes.c_double * len(r))(*map(float, r))
        self._check(self.lib.edgemtl_set_preference(self.handle, values, len(r), float(c), int(wait)))

    def set_budget(self, ms: float, wait: bool = True) -> None:
        self._check(self.lib.edgemtl_set_budget(self.handle, float(ms), int(wait)))

    def wait(self) -> None:
        """Blocks until the latest request (made with wait=False) took effect; raises if its load failed."""
        self._check(self.lib.edgemtl_wait(self.handle))

    def _outputs(self) -> tuple[list[np.ndarray], ctypes.Array]:
        outs = [np.empty(s, np.float32) for s in self.output_shapes()]
        ptrs = (ctypes.POINTER(ctypes.c_float) * len(outs))(
            *(o.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) for o in outs)
        )
        return outs, ptrs

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Runs one preprocessed (1, C, H, W) float32 input; {task: output without the batch axis}."""
        x = np.ascontiguousarray(x, np.float32)
        if x.shape != self.input_shape:
            raise EdgeRuntimeError(f"native: input must have shape {self.input_shape}, found {x.shape}")
        outs, ptrs = self._outputs()
        self._check(self.lib.edgemtl_run(self.handle, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ptrs))
        return {name: o[0] for name, o in zip(self.task_names, outs)}

    def run_frame(self, frame: np.ndarray, colour_order: str = "RGB") -> dict[str, np.ndarray]:
        """Runs one HxWx3 uint8 frame, preprocessed in C++ as the bundle's input spec says."""
        frame = np.ascontiguousarray(frame, np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise EdgeRuntimeError(f"native: frame must be HxWx3 uint8, found {frame.shape}")
        outs, ptrs = self._outputs()
        data = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        self._check(
            self.lib.edgemtl_run_frame(self.handle, data, frame.shape[0], frame.shape[1], colour_order.encode(), ptrs)
        )
        return {name: o[0] for name, o in zip(self.task_names, outs)}

    def current(self) -> tuple[str, str]:
        """(grid point name, signature) of the latest call (the active point before any call)."""
        name, sig = ctypes.create_string_buffer(256), ctypes.create_string_buffer(17)
        self._check(self.lib.edgemtl_current(self.handle, name, 256, sig))
        return name.value.decode(), sig.value.decode()

    def stats(self) -> dict:
        n = 4096  # one call in the usual case; retried when the text (which grows with calls) did not fit
        while True:
            buf = ctypes.create_string_buffer(n)
            need = self.lib.edgemtl_stats_json(self.handle, buf, n)
            if need <= n:
                return json.loads(buf.value.decode())
            n = need

    def close(self) -> None:
        if getattr(self, "handle", None):
            self.lib.edgemtl_close(self.handle)
            self.handle = None

    def __enter__(self) -> "NativeRuntime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
