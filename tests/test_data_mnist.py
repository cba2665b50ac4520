"""MNIST-pc: Kaggle CSV parsing, rebuild from IDX files, preparation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from ddeqs.data import mnist_pc
from ddeqs.data.registry import prepare_dataset
from ddeqs.data.store import load_split, read_sidecar
from ddeqs.errors import DataError


def _csv(path: Path, rows: list[list[int]], k: int = 4, header: bool = True) -> None:
    lines = [",".join(["label"] + [f"{c}{j}" for j in range(k) for c in "xyv"])] if header else []
    for r in rows:
        lines.append(",".join(str(v) for v in r + [-1] * (1 + 3 * k - len(r))))
    path.write_text("\n".join(lines) + "\n")


def test_parse_kaggle_csv(tmp_path: Path) -> None:
    p = tmp_path / "train.csv"
    _csv(p, [[3, 1, 2, 255, 4, 5, 128], [7], [0, 0, 27, 9]])  # row 1 has no points
    clouds, labels, empty = mnist_pc.read_csv(p)
    assert labels.tolist() == [3, 0] and empty == [1]
    np.testing.assert_array_equal(clouds[0], [[1, 2], [4, 5]])  # x, y only; padding dropped
    np.testing.assert_array_equal(clouds[1], [[0, 27]])
    _csv(tmp_path / "nohead.csv", [[3, 1, 2, 255]], header=False)
    assert mnist_pc.read_csv(tmp_path / "nohead.csv")[1].tolist() == [3]


@pytest.mark.parametrize("body, needle", [("1,2,3\n", "3*K"), ("1,2,3,nan\n", "NaN"), ("12,1,1,1\n", "0..9")])
def test_malformed_csv_names_the_file(tmp_path: Path, body: str, needle: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(DataError) as err:
        mnist_pc.read_csv(p)
    assert str(p) in str(err.value) and needle in str(err.value)


def _idx(path: Path, arr: np.ndarray) -> None:
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.astype(np.uint8).tobytes())


def test_rebuild_from_idx_follows_the_pixel_rule(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = np.zeros((3, 28, 28), dtype=np.uint8)
    for im in imgs:
        r, c = rng.integers(0, 28, 40), rng.integers(0, 28, 40)
        im[r, c] = rng.integers(1, 256, 40)
    labels = np.array([4, 1, 9], dtype=np.uint8)
    _idx(tmp_path / "img.gz", imgs)
    _idx(tmp_path / "lab.gz", labels)
    out = tmp_path / "raw" / "mnist-pc" / "train.csv"
    assert mnist_pc.rebuild_csv_from_idx(tmp_path / "img.gz", tmp_path / "lab.gz", out) == 3
    assert out.read_text().startswith("label,x0,y0,v0,x1")
    table = np.loadtxt(out, delimiter=",", skiprows=1, dtype=int)
    assert table.shape == (3, 1 + 3 * 351)
    for i, im in enumerate(imgs):
        trip = table[i, 1:].reshape(-1, 3)
        trip = trip[(trip != -1).any(axis=1)]
        rows, cols = np.nonzero(im)
        expect = {(c, 27 - r, int(im[r, c])) for r, c in zip(rows, cols)}
        assert {tuple(t) for t in trip} == expect and len(trip) == len(expect)
    # the points are shuffled, not in raster order
    assert any(not np.array_equal(table[i, 1:4], [np.nonzero(imgs[i])[1][0], 27 - np.nonzero(imgs[i])[0][0],
                                                   imgs[i][np.nonzero(imgs[i])][0]]) for i in range(3))
    clouds, labs, _ = mnist_pc.read_csv(out)
    assert labs.tolist() == [4, 1, 9] and len(clouds[0]) == np.count_nonzero(imgs[0])


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "img.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 5, 28, 28) + b"\x00" * 100)
    with pytest.raises(DataError, match="truncated"):
        mnist_pc.read_idx(p)


def test_prepare_from_placed_csvs(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "mnist-pc").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("test", 3)):
        rows = [[i % 10] + [int(v) for t in zip(rng.integers(0, 28, 5), rng.integers(0, 28, 5), rng.integers(1, 256, 5))
                               for v in t] for i in range(n)]
        _csv(raw / "mnist-pc" / f"{split}.csv", rows + [[5]], k=6)  # plus one empty row
    assert "already present" in mnist_pc.fetch(raw)
    prepare_dataset("mnist-pc", raw, tmp_path / "proc", progress=False)
    s = load_split(tmp_path / "proc" / "mnist-pc" / "train")
    assert len(s) == 6 and s.dim == 2 and sorted(s.labels.tolist()) == list(range(6))
    side = read_sidecar(tmp_path / "proc" / "mnist-pc" / "train")
    assert side["n_skipped"] == 1 and side["skipped"] == [{"row": 6, "reason": "no points"}]
    for i in range(len(s)):
        np.testing.assert_allclose(s.cloud(i).mean(0), 0.0, atol=1e-5)
