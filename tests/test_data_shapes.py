"""The procedural ``shapes`` generator: deterministic, varied, upright, and safe with existing folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ddeqs.data import shapes
from ddeqs.data.offfile import read_off_vertices, write_off
from ddeqs.errors import DataError


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    a, wrote_a = shapes.generate(tmp_path / "a" / "shapes", 3, 2, seed=0)
    b, _ = shapes.generate(tmp_path / "b" / "shapes", 3, 2, seed=0)
    c, _ = shapes.generate(tmp_path / "c" / "shapes", 3, 2, seed=1)
    assert wrote_a and _digest(a) == _digest(b)
    offs = {k: v for k, v in _digest(a).items() if k.endswith(".off")}
    assert len(offs) == 8 * 5
    assert all(_digest(c)[k] != v for k, v in offs.items())
    assert not (tmp_path / "a" / "shapes.partial").exists()


def test_write_off_text_format_is_unchanged(tmp_path: Path) -> None:
    """The vectorised writer produces exactly the per-row text of the earlier writer."""
    v = np.random.default_rng(0).normal(size=(50, 3)) * 3
    v[0] = [-0.0, 0.0, 1e-9]
    f = np.random.default_rng(1).integers(0, 50, size=(20, 3))
    write_off(tmp_path / "a.off", v, f)
    rows = "\n".join(f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in v) + "\n" + "\n".join(f"3 {a} {b} {c}" for a, b, c in f)
    assert (tmp_path / "a.off").read_text() == "OFF\n50 20 0\n" + rows + "\n"


def test_default_split_sizes_give_a_test_split_of_200() -> None:
    assert (shapes.PER_CLASS_TRAIN, shapes.PER_CLASS_TEST) == (40, 25)
    assert len(shapes.CLASS_NAMES) * shapes.PER_CLASS_TEST == 200


@pytest.mark.parametrize("cls", shapes.CLASS_NAMES)
def test_meshes_vary_within_a_class_and_keep_z_up(cls: str) -> None:
    rng = np.random.default_rng(0)
    meshes = [shapes.make_mesh(cls, rng) for _ in range(12)]
    for v, f in meshes:
        assert v.ndim == 2 and v.shape[1] == 3 and np.isfinite(v).all() and len(v) > 800
        assert f.min() >= 0 and f.max() < len(v)
    counts = {len(v) for v, _ in meshes}
    extents = np.array([v.max(0) - v.min(0) for v, _ in meshes])
    # random proportions: the height/width ratio spreads by more than 20 % within the class
    ratio = extents[:, 2] / np.linalg.norm(extents[:, :2], axis=1)
    assert ratio.max() / ratio.min() > 1.2
    # every class has optional parts: the vertex count varies
    assert len(counts) > 1


def test_yaw_is_random_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same draws with YAW = 0 give the unrotated mesh (the angle is one draw whatever its range):
    # the rotation between the two, fitted on the horizontal coordinates, is the mesh's yaw
    def yaws(cls: str) -> list[float]:
        out = []
        for k in range(12):
            rotated, _ = shapes.make_mesh(cls, np.random.default_rng([7, k]))
            with monkeypatch.context() as m:
                m.setattr(shapes, "YAW", 0.0)
                upright, _ = shapes.make_mesh(cls, np.random.default_rng([7, k]))
            a, b = upright[:, :2] - upright[:, :2].mean(0), rotated[:, :2] - rotated[:, :2].mean(0)
            h = a.T @ b  # orthogonal Procrustes: b ~ a @ R.T
            out.append(float(np.degrees(np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1]))))
        return out

    angles = yaws("chair") + yaws("airplane")
    # 30 degrees either way (docs/data.md; version 3); jitter blurs the fit by a degree or so
    assert max(abs(a) for a in angles) <= 32
    assert np.ptp(angles) > 30  # spread over the range, not one fixed angle


def test_old_generated_folder_is_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "shapes"
    old = folder / "chair" / "train" / "chair_0001.off"
    write_off(old, np.zeros((3, 3)) + np.arange(3)[:, None], np.array([[0, 1, 2]]))
    write_off(folder / "chair" / "test" / "chair_0099.off", np.eye(3), np.array([[0, 1, 2]]))
    (folder / shapes.MARKER).write_text(json.dumps({"version": 1, "per_class_train": 24, "per_class_test": 8,
                                                    "seed": 0, "classes": shapes.CLASS_NAMES}))
    _, wrote = shapes.generate(folder, 2, 1)
    assert wrote
    assert json.loads((folder / shapes.MARKER).read_text())["version"] == shapes.GENERATOR_VERSION
    assert not (folder / "chair" / "test" / "chair_0099.off").exists()  # stale mesh of the old version gone
    assert len(list(folder.rglob("*.off"))) == 8 * 3
    assert len(read_off_vertices(old)) > 3
    before = _digest(folder)
    assert shapes.generate(folder, 2, 1) == (folder, False) and _digest(folder) == before


def test_user_files_are_never_deleted(tmp_path: Path) -> None:
    # a folder without the marker (not ours): refused, untouched
    mine = tmp_path / "a" / "shapes"
    write_off(mine / "chair" / "train" / "chair_0001.off", np.eye(3), np.array([[0, 1, 2]]))
    with pytest.raises(DataError, match="not written by the shapes generator"):
        shapes.generate(mine, 2, 1)
    assert (mine / "chair" / "train" / "chair_0001.off").read_text().startswith("OFF\n3 1 0")
    # a generated folder of an older version holding a user's own file: refused, nothing deleted
    gen, _ = shapes.generate(tmp_path / "b" / "shapes", 2, 1)
    extra = gen / "chair" / "train" / "my_chair.off"
    extra.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    before = _digest(gen)
    marker = json.loads((gen / shapes.MARKER).read_text())
    (gen / shapes.MARKER).write_text(json.dumps({**marker, "version": 1}))
    with pytest.raises(DataError, match="my_chair.off"):
        shapes.generate(gen, 2, 1)
    after = _digest(gen)
    assert after.pop(shapes.MARKER) != before.pop(shapes.MARKER) and after == before


def test_prepared_split_of_an_older_generator_is_prepared_again(tmp_path: Path, monkeypatch) -> None:
    from ddeqs.data.registry import prepare_dataset
    from ddeqs.data.store import read_sidecar

    kw = dict(raw_root=tmp_path / "raw", root=tmp_path / "proc", per_class_train=2, per_class_test=1, progress=False)
    monkeypatch.setattr(shapes, "GENERATOR_VERSION", 1)
    prepare_dataset("shapes", **kw)
    assert read_sidecar(tmp_path / "proc" / "shapes" / "test")["params"]["generator_version"] == 1
    monkeypatch.undo()
    msgs = prepare_dataset("shapes", **kw)
    assert not any("nothing to do" in m for m in msgs)
    assert read_sidecar(tmp_path / "proc" / "shapes" / "test")["params"]["generator_version"] == shapes.GENERATOR_VERSION
    assert json.loads((tmp_path / "raw" / "shapes" / shapes.MARKER).read_text())["version"] == shapes.GENERATOR_VERSION
    assert all("nothing to do" in m for m in prepare_dataset("shapes", **kw))


def test_a_symlink_in_an_old_generated_folder_is_refused_not_followed(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    write_off(keep / "x.off", np.eye(3), np.array([[0, 1, 2]]))
    gen, _ = shapes.generate(tmp_path / "raw" / "shapes", 1, 1)
    (gen / "chair" / "link").symlink_to(keep, target_is_directory=True)
    (gen / shapes.MARKER).write_text("{}")
    with pytest.raises(DataError, match="link"):
        shapes.generate(gen, 1, 1)
    assert (keep / "x.off").is_file() and (gen / "chair" / "link").is_symlink()
