"""``shapes``: procedural meshes written as real ``.off`` files in the ModelNet40 layout.

``<raw_root>/shapes/<class>/{train,test}/<class>_NNNN.off`` for the 8 completion classes
of the paper; each mesh is a union of parametric surfaces (boxes, ellipsoids, cylinders,
cones, surfaces of revolution) with random proportions, and every third file uses the
one-line header ``OFF<nv> <nf> 0``. They are read and voxelized by the same code as
ModelNet40 (:mod:`ddeqs.data.meshes`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ddeqs.data.derive import COMPLETION_CLASSES_3D
from ddeqs.data.offfile import write_off

CLASS_NAMES = list(COMPLETION_CLASSES_3D)
GENERATOR_VERSION = 1
MARKER = ".generated.json"

Mesh = tuple[np.ndarray, np.ndarray]  # vertices (n, 3), faces (m, 3) int


def _grid(nu: int, nv: int, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Mesh:
    """Parametric surface on ``[0, 1]^2`` sampled on an ``nu x nv`` grid, triangulated."""
    u, v = np.meshgrid(np.linspace(0, 1, nu), np.linspace(0, 1, nv), indexing="ij")
    verts = fn(u.ravel(), v.ravel())
    i, j = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
    a = (i * nv + j).ravel()
    b, c, d = a + nv, a + 1, a + nv + 1
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([c, b, d], 1)])
    return verts, faces


def _union(*meshes: Mesh) -> Mesh:
    verts, faces, off = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + off)
        off += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def box(centre, size, n: int = 10) -> Mesh:
    """Axis-aligned box surface, ``n x n`` vertices per side."""
    c, s = np.asarray(centre, float), np.asarray(size, float) / 2
    sides = []
    for axis in range(3):
        o1, o2 = [k for k in range(3) if k != axis]
        for sign in (-1.0, 1.0):
            def fn(u, v, axis=axis, o1=o1, o2=o2, sign=sign):
                p = np.zeros((len(u), 3))
                p[:, axis] = sign * s[axis]
                p[:, o1] = (2 * u - 1) * s[o1]
                p[:, o2] = (2 * v - 1) * s[o2]
                return p + c
            sides.append(_grid(n, n, fn))
    return _union(*sides)


def ellipsoid(centre, radii, n: int = 24, phi_range=(0.0, 1.0)) -> Mesh:
    """Ellipsoid surface (``phi_range`` in fractions of pi from the top: (0.5, 1) is the lower half)."""
    c, r = np.asarray(centre, float), np.asarray(radii, float)

    def fn(u, v):
        th, ph = 2 * np.pi * u, np.pi * (phi_range[0] + (phi_range[1] - phi_range[0]) * v)
        return c + r * np.stack([np.sin(ph) * np.cos(th), np.sin(ph) * np.sin(th), np.cos(ph)], 1)

    return _grid(n, n, fn)


def revolution(profile: Callable[[np.ndarray], np.ndarray], height: float, centre=(0, 0, 0), n: int = 28,
               cap: bool = True) -> Mesh:
    """Surface of revolution about z: radius ``profile(t)`` at height ``t * height``, t in [0, 1]."""
    c = np.asarray(centre, float)

    def fn(u, v):
        th, r = 2 * np.pi * u, profile(v)
        return c + np.stack([r * np.cos(th), r * np.sin(th), v * height], 1)

    meshes = [_grid(n, n, fn)]
    if cap:  # bottom disk
        r0 = float(profile(np.zeros(1))[0])
        meshes.append(_grid(n, n // 3 + 2, lambda u, v: c + np.stack(
            [r0 * v * np.cos(2 * np.pi * u), r0 * v * np.sin(2 * np.pi * u), 0 * u], 1)))
    return _union(*meshes)


def cylinder(centre, radius: float, length: float, axis: int = 2, n: int = 16) -> Mesh:
    """Closed cylinder along ``axis``."""
    v, f = revolution(lambda t: radius + 0 * t, length, (0, 0, -length / 2), n=n)
    top = _grid(n, n // 3 + 2, lambda u, w: np.stack(
        [radius * w * np.cos(2 * np.pi * u), radius * w * np.sin(2 * np.pi * u), 0 * u + length / 2], 1))
    v, f = _union((v, f), top)
    perm = {0: [2, 1, 0], 1: [0, 2, 1], 2: [0, 1, 2]}[axis]
    return v[:, perm] + np.asarray(centre, float), f


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def airplane(rng: np.random.Generator) -> Mesh:
    L, R, span, chord = _u(rng, 1.6, 2.6), _u(rng, 0.16, 0.28), _u(rng, 1.8, 3.0), _u(rng, 0.3, 0.6)
    wing_x = _u(rng, -0.2, 0.2)
    return _union(ellipsoid((0, 0, 0), (L / 2, R, R)),
                  box((wing_x, 0, 0), (chord, span, 0.05), n=12),
                  box((-L / 2 + 0.15, 0, R + 0.2), (0.25, 0.04, 0.45), n=8),
                  box((-L / 2 + 0.12, 0, R * 0.5), (0.2, span * 0.35, 0.04), n=8))


def bathtub(rng: np.random.Generator) -> Mesh:
    L, W, H, t = _u(rng, 1.4, 2.0), _u(rng, 0.6, 0.9), _u(rng, 0.4, 0.7), 0.06
    return _union(box((0, 0, 0), (L, W, t), n=12),
                  box((L / 2, 0, H / 2), (t, W, H), n=8), box((-L / 2, 0, H / 2), (t, W, H), n=8),
                  box((0, W / 2, H / 2), (L, t, H), n=10), box((0, -W / 2, H / 2), (L, t, H), n=10))


def bowl(rng: np.random.Generator) -> Mesh:
    R, depth, t = _u(rng, 0.8, 1.2), _u(rng, 0.4, 0.9), 0.05
    return _union(ellipsoid((0, 0, 0), (R, R, R * depth), n=28, phi_range=(0.5, 1.0)),
                  ellipsoid((0, 0, 0), (R - t, R - t, R * depth - t), n=28, phi_range=(0.5, 1.0)))


def car(rng: np.random.Generator) -> Mesh:
    L, W, H = _u(rng, 2.0, 2.8), _u(rng, 0.9, 1.2), _u(rng, 0.35, 0.5)
    cab, wr = _u(rng, 0.4, 0.6), _u(rng, 0.16, 0.24)
    wheels = [cylinder((sx * L * 0.32, sy * W / 2, 0), wr, 0.12, axis=1, n=12) for sx in (-1, 1) for sy in (-1, 1)]
    return _union(box((0, 0, wr + H / 2), (L, W, H), n=12),
                  box((_u(rng, -0.2, 0.1), 0, wr + H + 0.18), (L * cab, W * 0.9, 0.36), n=10), *wheels)


def chair(rng: np.random.Generator) -> Mesh:
    S, h, back, leg = _u(rng, 0.8, 1.1), _u(rng, 0.7, 1.0), _u(rng, 0.7, 1.2), 0.07
    legs = [box((sx * (S / 2 - leg), sy * (S / 2 - leg), h / 2), (leg, leg, h), n=6)
            for sx in (-1, 1) for sy in (-1, 1)]
    return _union(box((0, 0, h), (S, S, 0.08), n=12), box((-S / 2, 0, h + back / 2), (0.08, S, back), n=12), *legs)


def cone(rng: np.random.Generator) -> Mesh:
    R, H = _u(rng, 0.5, 1.0), _u(rng, 1.0, 2.0)
    return revolution(lambda t: R * (1 - t), H, n=32)


def toilet(rng: np.random.Generator) -> Mesh:
    R, H = _u(rng, 0.45, 0.6), _u(rng, 0.5, 0.7)
    return _union(ellipsoid((0, 0, H), (R * 1.3, R, R * 0.8), n=24, phi_range=(0.5, 1.0)),
                  cylinder((0, 0, H / 2), R * 0.5, H, axis=2, n=16),
                  box((-R * 1.3 - 0.12, 0, H + 0.35), (0.25, R * 1.8, _u(rng, 0.6, 0.9)), n=10))


def vase(rng: np.random.Generator) -> Mesh:
    a, b, c, ph, H = _u(rng, 0.35, 0.55), _u(rng, 0.1, 0.25), _u(rng, 4.0, 9.0), _u(rng, 0, np.pi), _u(rng, 1.2, 2.2)
    return revolution(lambda t: a + b * np.sin(c * t + ph), H, n=32)


GENERATORS: dict[str, Callable[[np.random.Generator], Mesh]] = {
    "airplane": airplane, "bathtub": bathtub, "bowl": bowl, "car": car,
    "chair": chair, "cone": cone, "toilet": toilet, "vase": vase,
}


def make_mesh(cls: str, rng: np.random.Generator) -> Mesh:
    """One random mesh of class ``cls`` with a small random yaw (up to 15 degrees)."""
    v, f = GENERATORS[cls](rng)
    a = np.deg2rad(rng.uniform(-15, 15))
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return v @ rot.T, f


def generate(folder: str | Path, per_class_train: int = 24, per_class_test: int = 8, seed: int = 0) -> tuple[Path, bool]:
    """Write the meshes under ``folder`` (idempotent); returns ``(folder, written)``.

    Nothing is rewritten when the marker file records the same parameters.
    """
    folder = Path(folder)
    params = {"version": GENERATOR_VERSION, "per_class_train": per_class_train, "per_class_test": per_class_test,
              "seed": seed, "classes": CLASS_NAMES}
    marker = folder / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return folder, False
        except json.JSONDecodeError:
            pass
    marker.unlink(missing_ok=True)
    for k, cls in enumerate(CLASS_NAMES):
        rng = np.random.default_rng([seed, k])
        n = 0
        for split, count in (("train", per_class_train), ("test", per_class_test)):
            out = folder / cls / split
            for old in out.glob("*.off") if out.is_dir() else []:
                old.unlink()
            for _ in range(count):
                n += 1
                v, f = make_mesh(cls, rng)
                write_off(out / f"{cls}_{n:04d}.off", v, f, one_line_header=(n % 3 == 0))
    marker.write_text(json.dumps(params, indent=2) + "\n")
    return folder, True
