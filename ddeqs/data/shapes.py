"""``shapes``: procedural meshes written as real ``.off`` files in the ModelNet40 layout.

``<raw_root>/shapes/<class>/{train,test}/<class>_NNNN.off`` for the 8 completion classes
of the paper; each mesh is a union of parametric surfaces (boxes, ellipsoids, shells,
cylinders, surfaces of revolution) with random proportions and optional parts, parts shared
across classes, a random deformation (:func:`deform`), a yaw of up to ``YAW`` degrees (z stays up) and vertex
jitter, so that the classes overlap (docs/data.md gives the calibration). Every third file
uses the one-line header ``OFF<nv> <nf> 0``. Same seed, byte-identical files. They are read and voxelized by the same code as
ModelNet40 (:mod:`ddeqs.data.meshes`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ddeqs.data.registry import COMPLETION_CLASSES_3D
from ddeqs.data.offfile import write_off
from ddeqs.errors import DataError

CLASS_NAMES = list(COMPLETION_CLASSES_3D)
GENERATOR_VERSION = 3
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


def _p(rng: np.random.Generator, prob: float) -> bool:
    """True with probability ``prob`` (optional parts)."""
    return bool(rng.random() < prob)


def _shell(centre, radii, depth_from: float = 0.5, t: float = 0.05, n: int = 24) -> Mesh:
    """Open lower half-ellipsoid with a wall of thickness ``t`` (bowls, tub basins, toilet bowls)."""
    r = np.asarray(radii, float)
    return _union(ellipsoid(centre, r, n=n, phi_range=(depth_from, 1.0)),
                  ellipsoid(centre, np.maximum(r - t, 0.02), n=n, phi_range=(depth_from, 1.0)))


def airplane(rng: np.random.Generator) -> Mesh:
    L, R, span, chord = _u(rng, 1.4, 2.8), _u(rng, 0.12, 0.34), _u(rng, 1.2, 3.0), _u(rng, 0.25, 0.7)
    wing_x, wing_z = _u(rng, -0.3, 0.3), _u(rng, -0.6, 0.6) * R
    parts = [ellipsoid((0, 0, 0), (L / 2, R, R)), box((wing_x, 0, wing_z), (chord, span, _u(rng, 0.04, 0.1)), n=12)]
    if _p(rng, 0.75):  # fin
        parts.append(box((-L / 2 + 0.15, 0, R + 0.2), (0.25, 0.04, _u(rng, 0.25, 0.6)), n=8))
    if _p(rng, 0.7):  # tailplane
        parts.append(box((-L / 2 + 0.12, 0, R * 0.5), (0.2, span * _u(rng, 0.2, 0.45), 0.04), n=8))
    if _p(rng, 0.5):  # engines under the wings: cylinders, as in cars' wheels and toilets' pedestals
        er = _u(rng, 0.06, 0.14)
        parts += [cylinder((wing_x + 0.1, sy * span * _u(rng, 0.15, 0.35), wing_z - er - 0.03), er, 0.4, axis=0, n=10)
                  for sy in (-1, 1)]
    return _union(*parts)


def bathtub(rng: np.random.Generator) -> Mesh:
    L, W, H, t = _u(rng, 1.2, 2.2), _u(rng, 0.6, 1.1), _u(rng, 0.35, 0.8), 0.06
    if _p(rng, 0.3):  # rounded tub: an elongated half-ellipsoid shell, like a bowl
        parts = [_shell((0, 0, H), (L / 2, W / 2, H), t=t)]
    else:
        parts = [box((0, 0, 0), (L, W, t), n=12),
                 box((L / 2, 0, H / 2), (t, W, H), n=8), box((-L / 2, 0, H / 2), (t, W, H), n=8),
                 box((0, W / 2, H / 2), (L, t, H), n=10), box((0, -W / 2, H / 2), (L, t, H), n=10)]
    if _p(rng, 0.35):  # feet
        parts += [cylinder((sx * L * 0.4, sy * W * 0.35, -0.08), 0.05, 0.16, n=8) for sx in (-1, 1) for sy in (-1, 1)]
    return _union(*parts)


def bowl(rng: np.random.Generator) -> Mesh:
    R, depth = _u(rng, 0.6, 1.2), _u(rng, 0.3, 1.3)
    if _p(rng, 0.4):  # flat-bottomed: a widening surface of revolution, like a funnel-shaped cone or a vase
        r0, q = _u(rng, 0.3, 0.7), _u(rng, 0.5, 1.0)
        parts = [revolution(lambda t: R * (r0 + (1 - r0) * t ** q), R * depth, n=28)]
    else:
        parts = [_shell((0, 0, R * depth), (R, R, R * depth), depth_from=_u(rng, 0.5, 0.62), n=28)]
    if _p(rng, 0.5):  # foot ring
        parts.append(cylinder((0, 0, -0.05), R * _u(rng, 0.25, 0.55), _u(rng, 0.06, 0.25), n=16))
    return _union(*parts)


def car(rng: np.random.Generator) -> Mesh:
    L, W, H = _u(rng, 1.6, 2.8), _u(rng, 0.8, 1.3), _u(rng, 0.3, 0.6)
    wr = _u(rng, 0.14, 0.28)
    pos = [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)]
    keep = [q for q in pos if not _p(rng, 0.2)] or pos[:1]  # wheels may be missing (occluded/broken)
    parts = [box((0, 0, wr + H / 2), (L, W, H), n=12)]
    parts += [cylinder((sx * L * 0.32, sy * W / 2, wr), wr, 0.12, axis=1, n=12) for sx, sy in keep]
    if _p(rng, 0.8):  # cabin (a flatbed without)
        parts.append(box((_u(rng, -0.3, 0.2), 0, wr + H + 0.18), (L * _u(rng, 0.3, 0.7), W * 0.9, _u(rng, 0.25, 0.5)), n=10))
    return _union(*parts)


def chair(rng: np.random.Generator) -> Mesh:
    S, h, back, leg = _u(rng, 0.7, 1.2), _u(rng, 0.5, 1.0), _u(rng, 0.5, 1.2), _u(rng, 0.05, 0.12)
    parts = [box((0, 0, h), (S, S * _u(rng, 0.8, 1.2), 0.08), n=12)]
    if _p(rng, 0.75):  # backrest (a stool without)
        parts.append(box((-S / 2, 0, h + back / 2), (0.08, S, back), n=12))
    if _p(rng, 0.3):  # a pedestal cylinder instead of legs, as under a toilet or a vase
        parts.append(cylinder((0, 0, h / 2), _u(rng, 0.06, 0.2), h, n=14))
    else:
        parts += [box((sx * (S / 2 - leg), sy * (S / 2 - leg), h / 2), (leg, leg, h), n=6)
                  for sx in (-1, 1) for sy in (-1, 1)]
    if _p(rng, 0.3):  # armrests
        parts += [box((0, sy * S / 2, h + 0.25), (S * 0.8, 0.06, 0.06), n=6) for sy in (-1, 1)]
    return _union(*parts)


def cone(rng: np.random.Generator) -> Mesh:
    R, H, p = _u(rng, 0.4, 1.0), _u(rng, 0.6, 2.2), _u(rng, 0.5, 1.8)
    top = _u(rng, 0.0, 0.6) if _p(rng, 0.5) else 0.0  # truncated cone (a lampshade or a pot)
    if _p(rng, 0.25):  # upside down (a funnel), like a flat-bottomed bowl
        parts = [revolution(lambda t: R * (top + (1 - top) * t ** p), H, n=32)]
    else:
        parts = [revolution(lambda t: R * (top + (1 - top) * (1 - t) ** p), H, n=32)]
    if _p(rng, 0.3):  # base plinth
        parts.append(cylinder((0, 0, -0.05), R * _u(rng, 0.9, 1.2), 0.1, n=16))
    return _union(*parts)


def toilet(rng: np.random.Generator) -> Mesh:
    R, H = _u(rng, 0.4, 0.65), _u(rng, 0.4, 0.8)
    parts = [_shell((0, 0, H), (R * _u(rng, 1.0, 1.5), R, R * _u(rng, 0.5, 1.0)), t=0.05)]
    if _p(rng, 0.85):  # pedestal (wall-hung without)
        parts.append(cylinder((0, 0, H / 2), R * _u(rng, 0.35, 0.8), H, axis=2, n=16))
    if _p(rng, 0.75):  # tank
        parts.append(box((-R * 1.3 - 0.12, 0, H + 0.35), (0.25, R * 1.8, _u(rng, 0.5, 0.9)), n=10))
    if _p(rng, 0.3):  # open lid standing up
        parts.append(box((-R * 1.1, 0, H + 0.5), (0.04, R * 1.6, R * 1.6), n=8))
    return _union(*parts)


def vase(rng: np.random.Generator) -> Mesh:
    a, b, c, ph, H = _u(rng, 0.25, 0.8), _u(rng, 0.05, 0.3), _u(rng, 1.0, 9.0), _u(rng, 0, np.pi), _u(rng, 0.6, 2.2)
    flare = _u(rng, -0.5, 0.5)  # widening (or narrowing) towards the top, as a cone's or a bowl's
    parts = [revolution(lambda t: np.maximum(a + b * np.sin(c * t + ph) + flare * t, 0.05), H, n=32)]
    if _p(rng, 0.25):  # handles
        parts += [box((0, sy * (a + b + 0.05), H * 0.6), (0.05, 0.08, H * 0.3), n=6) for sy in (-1, 1)]
    return _union(*parts)


GENERATORS: dict[str, Callable[[np.random.Generator], Mesh]] = {
    "airplane": airplane, "bathtub": bathtub, "bowl": bowl, "car": car,
    "chair": chair, "cone": cone, "toilet": toilet, "vase": vase,
}

# Strength of the class-independent deformations of :func:`deform` (calibrated: see docs/data.md).
SCALE_RANGE = (0.6, 1.5)   # per-axis scale factors
TAPER = 0.5                # horizontal scale 1 +- TAPER from bottom to top
SHEAR = 0.4                # horizontal shift per unit height
BEND = 0.4                 # horizontal shift per unit height squared
JITTER = 0.03              # vertex noise, fraction of the bounding-box diagonal
BASE_PLATE = 0.3           # probability of a floor plate under the object
# Rotation about the vertical axis, uniform in [-YAW, YAW] degrees. ModelNet40's meshes are upright
# and mostly front-facing within a class; with any yaw (version 2) the DDEQ classifier (no rotation
# augmentation, attention over 500-800 normalised points) stayed at chance for 400 steps of batch 8,
# its pooled output collapsing to one vector for every cloud, while at 30 degrees (or 0) it leaves that
# plateau after ~110 steps and fits 64 clouds (docs/data.md, "shapes").
YAW = 30.0


def deform(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random anisotropic scaling, taper, shear and bending, keeping z up; ``(n, 3) -> (n, 3)``."""
    v = v * rng.uniform(*SCALE_RANGE, size=3)
    z = v[:, 2] - v[:, 2].min()
    zn = z / max(float(z.max()), 1e-9) - 0.5                       # height in [-0.5, 0.5]
    v = v.copy()
    v[:, :2] *= (1 + rng.uniform(-TAPER, TAPER) * zn)[:, None]
    v[:, :2] += np.outer(zn, rng.uniform(-SHEAR, SHEAR, size=2)) + np.outer(zn ** 2, rng.uniform(-BEND, BEND, size=2))
    return v


def make_mesh(cls: str, rng: np.random.Generator) -> Mesh:
    """One random mesh of class ``cls``: its parts, :func:`deform`, a rotation about z of at most ``YAW`` degrees, vertex jitter."""
    v, f = GENERATORS[cls](rng)
    if _p(rng, BASE_PLATE):  # a stand or floor plate, the same for every class
        lo, hi = v.min(0), v.max(0)
        size = (hi - lo) * rng.uniform(0.6, 1.3, size=3)
        v, f = _union((v, f), box(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] - 0.04), (size[0], size[1], 0.06), n=10))
    v = deform(v, rng)
    a = np.deg2rad(rng.uniform(-YAW, YAW))
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    diag = float(np.linalg.norm(v.max(0) - v.min(0)))
    return v @ rot.T + rng.normal(0, JITTER * diag, size=v.shape), f


PER_CLASS_TRAIN = 40
PER_CLASS_TEST = 25
_OURS = re.compile(r"^(?P<cls>[a-z]+)/(train|test)/(?P=cls)_\d{4}\.off$")


def _remove_generated(folder: Path) -> None:
    """Delete what an earlier :func:`generate` wrote under ``folder``, refusing if anything else is there.

    Only ``<class>/<split>/<class>_NNNN.off`` files and the marker are ours; any other file
    is the user's, so nothing is deleted and a :class:`DataError` names it.
    """
    files = [p for p in folder.rglob("*") if p.is_symlink() or not p.is_dir()]
    rel = {p: p.relative_to(folder).as_posix() for p in files}
    foreign = [p for p in files if rel[p] != MARKER and not _OURS.match(rel[p])]
    if foreign:
        raise DataError(f"{folder} holds files the shapes generator did not write (e.g. {foreign[0]}); "
                        f"move them elsewhere or use another --raw-root, then run 'ddeqs data prepare shapes' again")
    for p in files:
        p.unlink()
    for d in sorted((d for d in folder.rglob("*") if d.is_dir() and not d.is_symlink()), key=lambda d: -len(d.parts)):
        d.rmdir()
    folder.rmdir()


def generate(folder: str | Path, per_class_train: int = PER_CLASS_TRAIN, per_class_test: int = PER_CLASS_TEST,
             seed: int = 0) -> tuple[Path, bool]:
    """Write the meshes under ``folder`` (idempotent); returns ``(folder, written)``.

    Nothing is rewritten when the marker file records the same parameters (generator
    version included). Otherwise the meshes are written to ``<folder>.partial`` and moved
    into place, replacing an earlier generated folder (one with the marker, holding only
    generated meshes); a folder without the marker is never touched (:class:`DataError`).
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
    elif folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DataError(f"{folder} exists but was not written by the shapes generator (no {MARKER}); "
                        f"move it away or use another --raw-root")
    tmp = folder.with_name(folder.name + ".partial")  # our scratch folder: an interrupted run's is discarded
    if tmp.exists():
        shutil.rmtree(tmp)
    for k, cls in enumerate(CLASS_NAMES):
        rng = np.random.default_rng([seed, k])
        n = 0
        for split, count in (("train", per_class_train), ("test", per_class_test)):
            for _ in range(count):
                n += 1
                v, f = make_mesh(cls, rng)
                write_off(tmp / cls / split / f"{cls}_{n:04d}.off", v, f, one_line_header=(n % 3 == 0))
    (tmp / MARKER).write_text(json.dumps(params, indent=2) + "\n")
    if folder.exists():
        _remove_generated(folder)
    tmp.rename(folder)
    return folder, True
