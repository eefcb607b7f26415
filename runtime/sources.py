"""Frame sources for the run app: camera index, video file, image folder, or
`synthetic` (the bundle's pre-rendered sample frames, looped). All yield RGB
uint8 HxWx3 frames.

Files are read frame by frame and drop nothing. Live sources (camera indices,
stream URLs, or any source with a simulated frame rate) go through `LiveSource`,
which keeps only the newest frame: reading a camera sequentially would let the
driver queue frames and the shown result fall ever further behind the scene."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from edgecore.arrays import SUFFIX, read_arrays
from edgecore.paths import confine
from runtime.errors import EdgeRuntimeError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}


def import_cv2():
    try:
        import cv2
    except ImportError as exc:
        raise EdgeRuntimeError(
            f"video and camera sources need OpenCV (pip install opencv-python-headless): {exc}"
        ) from None
    return cv2


def is_live(source: str) -> bool:
    """Camera indices and network streams deliver frames whether or not we keep up."""
    return source.isdigit() or "://" in source


# One uint8 array "frames" (N, H, W, 3), uncompressed like every bundle array file: the C++
# runtime maps it as is (scenes3's 48 frames of 128x128 are 2.4 MB).
SAMPLES = Path("samples") / f"frames{SUFFIX}"


def sample_frames(bundle: Path) -> np.ndarray:
    """The bundle's sample frames, (N, H, W, 3) uint8."""
    # Through the confinement every bundle file goes through: a symlink in samples/ that
    # leads out of the bundle is refused, as the C++ runtime refuses it.
    path = confine(bundle, SAMPLES.as_posix(), "sample frames", EdgeRuntimeError)
    if not path.is_file():
        raise EdgeRuntimeError(f"bundle has no sample frames ({path}): use a camera, video or image folder")
    data = read_arrays(path, EdgeRuntimeError).get("frames")
    if data is None:
        raise EdgeRuntimeError(f"sample frames {path} hold no 'frames' array: rebuild the bundle")
    if data.ndim != 4 or data.shape[-1] != 3 or data.dtype != np.uint8 or 0 in data.shape:
        raise EdgeRuntimeError(f"sample frames {path}: expected uint8 (N, H, W, 3), found {data.dtype} {data.shape}")
    return data


def frames(source: str, bundle: Path, limit: int | None = None, loop: bool = False) -> Iterator[np.ndarray]:
    """Frames of `source` in order; `synthetic` plays the samples once, `limit`
    frames (looping) or, with `loop`, forever."""
    if source == "synthetic":
        data = sample_frames(bundle)
        count = limit if limit is not None else (2**62 if loop else len(data))
        for i in range(count):
            yield data[i % len(data)].copy()  # callers may draw on it
        return
    yield from _opencv_frames(source, limit)


def open_source(
    source: str, bundle: Path, limit: int | None = None, live_fps: float | None = None
) -> tuple[Iterable[np.ndarray], LiveSource | None]:
    """(frames, the LiveSource or None): live for cameras and streams, and for any
    source given `live_fps` (a video or the samples played like a camera)."""
    if live_fps is not None and not (np.isfinite(live_fps) and live_fps > 0):
        raise EdgeRuntimeError(f"live frame rate must be a positive number of frames per second, found {live_fps!r}")
    if live_fps is None and not is_live(source):
        return frames(source, bundle, limit), None
    live = LiveSource(frames(source, bundle, None, loop=True), live_fps, limit)
    return live, live


def frame_count(source: str, bundle: Path, limit: int | None, live_fps: float | None = None) -> int | None:
    """How many frames a run of `source` will process, when that is known before it starts
    (None for cameras and streams without a limit): a schedule event past it would never run."""
    if live_fps is not None or is_live(source):
        return limit
    n = _source_length(source, bundle)
    if n is None:
        return limit
    if source == "synthetic":  # the samples loop up to a limit
        return limit if limit is not None else n
    return n if limit is None else min(n, limit)


def _source_length(source: str, bundle: Path) -> int | None:
    try:
        if source == "synthetic":
            return len(sample_frames(bundle))
        if Path(source).is_dir():
            return sum(1 for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_EXTS)
        cv2 = import_cv2()
        cap = cv2.VideoCapture(source)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        return n if n > 0 else None
    except (OSError, ValueError, EdgeRuntimeError):
        return None  # the source itself reports the problem when it is opened


def _opencv_frames(source: str, limit: int | None) -> Iterator[np.ndarray]:
    cv2 = import_cv2()
    if Path(source).is_dir():
        files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise EdgeRuntimeError(f"image folder {source} has no {sorted(IMAGE_EXTS)} files")
        for p in files[:limit]:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise EdgeRuntimeError(f"cannot read image {p}")
            yield img[..., ::-1].copy()
        return
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        raise EdgeRuntimeError(
            f"cannot open source {source!r}: expected a camera index, a video file, an image folder or 'synthetic'"
        )
    try:
        n = 0
        while limit is None or n < limit:
            ok, img = cap.read()
            if not ok:
                break
            n += 1
            yield img[..., ::-1].copy()
    finally:
        cap.release()


class LiveSource:
    """Latest-frame delivery from a producer thread, like a camera driver's.

    The thread pulls frames from `produce` (paced at `fps` when given; a real
    camera paces itself); a frame not taken before the next one arrives is
    dropped and counted. Iterating yields at most `limit` frames, each the newest
    at the moment it is taken. Costs one thread and one frame of memory."""

    def __init__(self, produce: Iterable[np.ndarray], fps: float | None = None, limit: int | None = None):
        self._produce, self._period, self.limit = produce, (1.0 / fps if fps else 0.0), limit
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._done, self._error = False, None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.produced = self.dropped = self.delivered = 0

    def _run(self) -> None:
        due = time.perf_counter()
        try:
            for frame in self._produce:
                if self._period:
                    due += self._period
                    time.sleep(max(0.0, due - time.perf_counter()))
                if self._stop.is_set():
                    break
                with self._cond:
                    self.dropped += self._frame is not None  # the previous one was never taken
                    self._frame, self.produced = frame, self.produced + 1
                    self._cond.notify()
        except Exception as exc:  # re-raised to the consumer, not lost in the thread
            self._error = exc
        finally:
            if hasattr(self._produce, "close"):
                self._produce.close()  # releases the camera; generators close in their own thread
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self) -> Iterator[np.ndarray]:
        self._thread = threading.Thread(target=self._run, name="edgemtl-live-source", daemon=True)
        self._thread.start()
        try:
            while self.limit is None or self.delivered < self.limit:
                with self._cond:
                    self._cond.wait_for(lambda: self._frame is not None or self._done)
                    frame, self._frame = self._frame, None
                if frame is None:
                    break
                self.delivered += 1
                yield frame
            if self._error is not None:
                raise self._error
        finally:
            self.close()

    def close(self) -> None:
        """Stops the producer (after its current read) and waits for it briefly."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
