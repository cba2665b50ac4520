"""A small, strict reader for Object File Format (``.off``) meshes: vertices only.

Written by hand because open3d's reader accepts malformed files silently (it returns
an empty or partial mesh for wrong counts or garbage) and does not handle the
one-line header ``OFF490 518 0`` used by some ModelNet40 files. Every problem
raises :class:`DataError` naming the file, so a bad mesh is never a silent wrong cloud.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddeqs.errors import DataError


def read_off_vertices(path: str | Path) -> np.ndarray:
    """Vertices of an ``.off`` mesh as a ``(n, 3)`` float64 array.

    Accepts the header on its own line (``OFF`` then ``nv nf ne``) or on one line
    (``OFF490 518 0``), comments (``#``) and blank lines. Raises :class:`DataError`
    for a missing header, bad counts, short or non-numeric vertex rows, NaN/inf
    coordinates or zero vertices.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the mesh ({err})") from None
    lines = (ln.split("#", 1)[0].strip() for ln in text.splitlines())
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise DataError(f"{path}: not an OFF mesh (the first line must start with 'OFF')")
    rest = lines[0][3:].strip()
    pos = 1
    if not rest:
        if len(lines) < 2:
            raise DataError(f"{path}: missing the counts line 'n_vertices n_faces n_edges'")
        rest, pos = lines[1], 2
    try:
        counts = [int(t) for t in rest.split()]
    except ValueError:
        raise DataError(f"{path}: bad counts line {rest!r} (expected 'n_vertices n_faces n_edges')") from None
    if len(counts) < 2 or min(counts) < 0:
        raise DataError(f"{path}: bad counts line {rest!r} (expected 'n_vertices n_faces n_edges')")
    nv, nf = counts[0], counts[1]
    if nv == 0:
        raise DataError(f"{path}: the mesh has no vertices")
    if len(lines) < pos + nv:
        raise DataError(f"{path}: header says {nv} vertices but the file has only {len(lines) - pos} data lines")
    block = lines[pos : pos + nv]
    try:
        flat = np.array(" ".join(block).split(), dtype=np.float64)  # fast path: exactly x y z per line
        if flat.size == 3 * nv:
            verts = flat.reshape(nv, 3)
        else:  # extra columns (e.g. colours) or short rows: check row by row
            rows = [ln.split() for ln in block]
            short = [i for i, r in enumerate(rows) if len(r) < 3]
            if short:
                raise DataError(f"{path}: vertex {short[0]} has fewer than 3 coordinates")
            verts = np.array([r[:3] for r in rows], dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: non-numeric vertex coordinate ({err})") from None
    if not np.isfinite(verts).all():
        bad = int(np.flatnonzero(~np.isfinite(verts).all(axis=1))[0])
        raise DataError(f"{path}: vertex {bad} has a NaN or infinite coordinate")
    if len(lines) < pos + nv + nf:
        raise DataError(f"{path}: header says {nf} faces but only {len(lines) - pos - nv} face lines follow")
    return verts


def write_off(path: str | Path, vertices: np.ndarray, faces: np.ndarray, one_line_header: bool = False) -> None:
    """Write a triangle mesh ``(n, 3)`` vertices / ``(m, 3)`` int faces as ``.off``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"OFF{len(vertices)} {len(faces)} 0\n" if one_line_header else f"OFF\n{len(vertices)} {len(faces)} 0\n"
    # one %-format over the whole array: the same text as per-row f-strings, ~10x faster
    vertices, faces = np.asarray(vertices, dtype=float), np.asarray(faces, dtype=np.int64)
    v = ("%.6f %.6f %.6f\n" * len(vertices)) % tuple(vertices.ravel())
    f = ("3 %d %d %d\n" * len(faces)) % tuple(faces.ravel().tolist())
    path.write_text(head + (v if len(vertices) else "\n") + f)
