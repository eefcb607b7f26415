"""Procedural indoor scenes with dense ground truth, rendered by ray casting in numpy.

A pinhole camera (y axis down, looking along +z) sits in a box-shaped room
(back wall, side walls, ceiling, tiled floor) holding a few primitives that
rest on the floor: spheres, yawed boxes and vertical cylinders. Every pixel's
ray is intersected analytically with every surface, vectorised over the whole
batch, so a few thousand 32x32 scenes take seconds. Outputs per scene:

- image     uint8 (3, H, W), Lambertian shading + ambient, textures, noise
- semseg    uint8 (H, W), classes CLASSES
- depth     float32 (H, W), z-depth in metres (> 0)
- normals   float32 (3, H, W), unit camera-space normals facing the camera
- edges     uint8 (H, W), 1 on instance boundaries (a superset of class changes)
- saliency  uint8 (H, W), 1 on objects (foreground)
- focal     float32 (), the pinhole focal length in pixels

Everything is a pure function of (n, size, seed, max_objects): the same
arguments give the same bytes, which the on-disk cache relies on.
"""

from __future__ import annotations

import numpy as np

GENERATOR_VERSION = 2
CLASSES = ("wall", "floor", "sphere", "box", "cylinder")
N_ROOM_SURFACES = 5  # back, left, right, ceiling, floor: instance ids 0..4
_INF = np.float64(np.inf)


def rays(focal: np.ndarray, size: int) -> np.ndarray:
    """Unnormalised ray directions (n, 3, H, W) with d_z = 1, so t = z-depth."""
    coords = np.arange(size) + 0.5 - size / 2
    dx = coords[None, None, :] / focal[:, None, None]
    dy = coords[None, :, None] / focal[:, None, None]
    dx, dy = np.broadcast_arrays(dx, dy)
    return np.stack([dx, dy, np.ones_like(dx)], axis=1)


class _Hits:
    """Z-buffer: keeps, per pixel, the nearest hit's depth, instance, normal, uv."""

    def __init__(self, n: int, size: int):
        shape = (n, size, size)
        self.t = np.full(shape, _INF)
        self.inst = np.full(shape, -1, dtype=np.int16)
        self.normal = np.zeros((n, 3, size, size))
        self.tex = np.zeros(shape)  # texture value in [0, 1] from surface coords

    def add(self, t, inst, normal, tex) -> None:
        t = np.where(np.isfinite(t) & (t > 1e-6), t, _INF)
        closer = t < self.t
        self.t = np.where(closer, t, self.t)
        self.inst = np.where(closer, np.broadcast_to(inst, closer.shape), self.inst)
        self.normal = np.where(closer[:, None], normal, self.normal)
        self.tex = np.where(closer, tex, self.tex)


def _col(v: np.ndarray) -> np.ndarray:
    """Per-scene scalar (n,) -> broadcastable (n, 1, 1)."""
    return v[:, None, None]


def _const_normal(n_like: np.ndarray, vec) -> np.ndarray:
    out = np.zeros((n_like.shape[0], 3) + n_like.shape[1:])
    out += np.asarray(vec, dtype=float)[None, :, None, None]
    return out


def _checker(a: np.ndarray, b: np.ndarray, cell: float) -> np.ndarray:
    return ((np.floor(a / cell) + np.floor(b / cell)) % 2).astype(float)


def _room(hits: _Hits, d: np.ndarray, rng: np.random.Generator) -> dict:
    n = d.shape[0]
    room = {
        "floor": rng.uniform(1.0, 1.6, n),  # camera height above the floor
        "ceil": rng.uniform(1.2, 1.8, n),
        "left": rng.uniform(2.0, 4.0, n),
        "right": rng.uniform(2.0, 4.0, n),
        "back": rng.uniform(5.0, 9.0, n),
    }
    dx, dy = d[:, 0], d[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        planes = [  # (t, instance id, normal)
            (np.broadcast_to(_col(room["back"]), dx.shape), 0, (0, 0, -1)),
            (np.where(dx < 0, -_col(room["left"]) / dx, _INF), 1, (1, 0, 0)),
            (np.where(dx > 0, _col(room["right"]) / dx, _INF), 2, (-1, 0, 0)),
            (np.where(dy < 0, -_col(room["ceil"]) / dy, _INF), 3, (0, 1, 0)),
            (np.where(dy > 0, _col(room["floor"]) / dy, _INF), 4, (0, -1, 0)),
        ]
    for t, inst, normal in planes:
        with np.errstate(invalid="ignore"):  # inf * 0 where a plane is missed
            if inst == 4:  # tiled floor, tiles in world (x, z): perspective depth cue
                tex = _checker(t * dx, t, 0.5)
            else:
                tex = 0.5 + 0.5 * np.sin(7.0 * t * (dx + dy))
        hits.add(t, inst, _const_normal(dx, normal), np.nan_to_num(tex))
    return room


def _sphere(d, centre, radius):
    """Nearest ray/sphere hit: t (n,H,W) and outward normal (n,3,H,W)."""
    c = centre[:, :, None, None]
    a = (d * d).sum(1)
    b = -2.0 * (d * c).sum(1)
    cc = (c * c).sum(1) - _col(radius) ** 2
    disc = b * b - 4 * a * cc
    t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), _INF)
    normal = (t[:, None] * d - c) / radius[:, None, None, None]
    return t, normal


def _box(d, centre, half, yaw):
    """Nearest ray/box hit for a box yawed about the y axis (slab method)."""
    cos, sin = np.cos(yaw), np.sin(yaw)

    # Ray in the box frame: rotate by -yaw about y; origin is -centre.
    def to_box(v):
        x, y, z = v[:, 0], v[:, 1], v[:, 2]
        return np.stack([_col(cos) * x - _col(sin) * z, y, _col(sin) * x + _col(cos) * z], 1)

    o = to_box(np.broadcast_to(-centre[:, :, None, None], d.shape))
    db = to_box(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half[:, :, None, None] - o) / db
        t2 = (half[:, :, None, None] - o) / db
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    tnear, axis = tmin.max(1), tmin.argmax(1)
    tfar = tmax.min(1)
    t = np.where((tnear < tfar) & (tnear > 0), tnear, _INF)
    nb = np.zeros_like(d)
    sign = -np.sign(np.take_along_axis(db, axis[:, None], 1))
    np.put_along_axis(nb, axis[:, None], sign, 1)
    x, y, z = nb[:, 0], nb[:, 1], nb[:, 2]  # back to camera frame: rotate by +yaw
    normal = np.stack([_col(cos) * x + _col(sin) * z, y, -_col(sin) * x + _col(cos) * z], 1)
    local = o + t[:, None] * db
    return t, normal, np.nan_to_num(_checker(local[:, 0] + local[:, 1], local[:, 2], 0.2))


def _cylinder(d, centre, radius, height):
    """Vertical capped cylinder standing on the floor (centre = bottom centre)."""
    dx, dy = d[:, 0], d[:, 1]
    cx, cy, cz = (_col(centre[:, i]) for i in range(3))
    r = _col(radius)
    a = dx * dx + 1.0
    b = -2.0 * (dx * cx + cz)
    cc = cx * cx + cz * cz - r * r
    disc = b * b - 4 * a * cc
    t_side = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), _INF)
    y_side = t_side * dy
    t_side = np.where((y_side <= cy) & (y_side >= cy - _col(height)), t_side, _INF)
    top = cy - _col(height)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_top = np.where(dy * top > 0, top / dy, _INF)
    inside = (t_top * dx - cx) ** 2 + (t_top - cz) ** 2 <= r * r
    t_top = np.where(inside, t_top, _INF)
    use_top = t_top < t_side
    t = np.where(use_top, t_top, t_side)
    side_n = np.stack([(t * dx - cx) / r, np.zeros_like(t), (t - cz) / r], 1)
    normal = np.where(use_top[:, None], _const_normal(t, (0, -1, 0)), side_n)
    stripes = (np.floor((t * dy) / 0.15) % 2).astype(float)
    return t, normal, np.nan_to_num(stripes)


def _objects(hits: _Hits, d, room, rng, max_objects: int) -> np.ndarray:
    """Places up to max_objects primitives on the floor; returns their classes (n, K)."""
    n = d.shape[0]
    count = rng.integers(1, max_objects + 1, n)
    kinds = rng.integers(2, 5, (n, max_objects))  # class ids of sphere/box/cylinder
    for k in range(max_objects):
        s = rng.uniform(0.3, 0.7, n)
        x = rng.uniform(-room["left"] + s, room["right"] - s) * 0.8
        z = rng.uniform(2.0, room["back"] - 1.0)
        present = _col(k < count)
        inst = N_ROOM_SURFACES + k
        h_box = s * rng.uniform(0.6, 1.5, n)
        half = np.stack([s * rng.uniform(0.6, 1.2, n), h_box, s * rng.uniform(0.6, 1.2, n)], 1)
        yaw = rng.uniform(0, np.pi / 2, n)
        height = s * rng.uniform(1.0, 3.0, n)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t_s, n_s = _sphere(d, np.stack([x, room["floor"] - s, z], 1), s)
            t_b, n_b, tex_b = _box(d, np.stack([x, room["floor"] - h_box, z], 1), half, yaw)
            t_c, n_c, tex_c = _cylinder(d, np.stack([x, room["floor"], z], 1), s, height)
        kind = _col(kinds[:, k])
        t = np.select([kind == 2, kind == 3], [t_s, t_b], t_c)
        normal = np.select([kind[:, None] == 2, kind[:, None] == 3], [n_s, n_b], n_c)
        tex = np.select([kind == 2, kind == 3], [np.zeros_like(t_s), tex_b], tex_c)
        hits.add(np.where(present, t, _INF), inst, normal, tex)
    return np.where(np.arange(max_objects)[None] < count[:, None], kinds, -1)


def _shade(hits: _Hits, rng: np.random.Generator, n_inst: int) -> np.ndarray:
    n = hits.t.shape[0]
    light = np.stack([rng.uniform(-0.6, 0.6, n), rng.uniform(0.5, 1.0, n), rng.uniform(0.2, 0.8, n)], 1)
    light /= np.linalg.norm(light, axis=1, keepdims=True)
    lambert = np.clip(-(hits.normal * light[:, :, None, None]).sum(1), 0, 1)
    shade = 0.35 + 0.65 * lambert
    palette = rng.uniform(0.15, 0.95, (n, n_inst, 3))
    base = np.take_along_axis(palette, np.maximum(hits.inst, 0).reshape(n, -1, 1), 1)
    base = base.reshape(n, *hits.t.shape[1:], 3).transpose(0, 3, 1, 2)
    colour = base * (0.8 + 0.2 * hits.tex[:, None]) * shade[:, None]
    colour += rng.normal(0, 0.02, colour.shape)
    return (np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8)


def _boundaries(inst: np.ndarray) -> np.ndarray:
    """1 where a 4-neighbour belongs to another instance (both sides marked)."""
    edge = np.zeros(inst.shape, dtype=bool)
    dv = inst[:, 1:, :] != inst[:, :-1, :]
    dh = inst[:, :, 1:] != inst[:, :, :-1]
    edge[:, 1:, :] |= dv
    edge[:, :-1, :] |= dv
    edge[:, :, 1:] |= dh
    edge[:, :, :-1] |= dh
    return edge.astype(np.uint8)


def render_scenes(n: int, size: int, seed: int, max_objects: int = 4) -> dict[str, np.ndarray]:
    """Renders n scenes of size x size pixels; deterministic in its arguments."""
    rng = np.random.default_rng(seed)
    focal = size * rng.uniform(0.9, 1.3, n)
    d = rays(focal, size)
    hits = _Hits(n, size)
    room = _room(hits, d, rng)
    obj_classes = _objects(hits, d, room, rng, max_objects)
    image = _shade(hits, rng, N_ROOM_SURFACES + max_objects)
    inst = hits.inst.astype(np.int64)
    room_class = np.array([0, 0, 0, 0, 1])
    table = np.concatenate([np.broadcast_to(room_class, (n, N_ROOM_SURFACES)), obj_classes], 1)
    semseg = np.take_along_axis(table, inst.reshape(n, -1), 1).reshape(inst.shape)
    normals = hits.normal / np.linalg.norm(hits.normal, axis=1, keepdims=True)
    return {
        "image": image,
        "semseg": semseg.astype(np.uint8),
        "depth": hits.t.astype(np.float32),
        "normals": normals.astype(np.float32),
        "edges": _boundaries(inst),
        "saliency": (inst >= N_ROOM_SURFACES).astype(np.uint8),
        "focal": focal.astype(np.float32),
    }
