"""Frame sources for the run app: camera index, video file, image folder, or
`synthetic` (the bundle's pre-rendered sample frames, looped). All yield RGB
uint8 HxWx3 frames."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.errors import EdgeRuntimeError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise EdgeRuntimeError(f"video and camera sources need OpenCV (pip install opencv-python-headless): {exc}") from None
    return cv2


def frames(source: str, bundle: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    if source == "synthetic":
        path = Path(bundle) / "samples" / "frames.npy"
        if not path.is_file():
            raise EdgeRuntimeError(f"bundle has no sample frames ({path}): use a camera, video or image folder")
        data = np.load(path)
        count = limit if limit is not None else len(data)
        for i in range(count):
            yield data[i % len(data)].copy()  # callers may draw on it
        return
    yield from _opencv_frames(source, limit)


def _opencv_frames(source: str, limit: int | None) -> Iterator[np.ndarray]:
    cv2 = _cv2()
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
        raise EdgeRuntimeError(f"cannot open source {source!r}: expected a camera index, a video file, an image "
                               f"folder or 'synthetic'")
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
