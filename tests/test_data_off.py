"""The strict .off reader: one-line headers, and clear errors naming the file for malformed meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ddeqs.data.offfile import read_off_vertices, write_off
from ddeqs.errors import DataError


def test_reads_two_line_and_one_line_headers(tmp_path: Path) -> None:
    v = np.random.default_rng(0).normal(size=(7, 3))
    f = np.array([[0, 1, 2], [2, 3, 4]])
    write_off(tmp_path / "a.off", v, f)
    write_off(tmp_path / "b.off", v, f, one_line_header=True)
    assert (tmp_path / "b.off").read_text().startswith("OFF7 2 0\n")
    for name in ("a.off", "b.off"):
        np.testing.assert_allclose(read_off_vertices(tmp_path / name), v, atol=1e-6)


def test_comments_and_extra_columns(tmp_path: Path) -> None:
    p = tmp_path / "c.off"
    p.write_text("OFF\n# a comment\n3 1 0\n0 0 0 255 0 0\n1 0 0 255 0 0\n0 1 0 0 0 255\n3 0 1 2\n")
    np.testing.assert_array_equal(read_off_vertices(p), [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "not an OFF mesh"),
        ("PLY\n3 1 0\n", "not an OFF mesh"),
        ("OFF\n", "missing the counts"),
        ("OFF\nthree 1 0\n", "bad counts"),
        ("OFF\n0 0 0\n", "no vertices"),
        ("OFF\n4 1 0\n0 0 0\n1 1 1\n3 0 1 2\n", "4 vertices"),
        ("OFF\n3 1 0\n0 0 0\n1 nan 1\n2 2 2\n3 0 1 2\n", "NaN"),
        ("OFF\n3 1 0\n0 0 0\n1 1\n2 2 2\n3 0 1 2\n", "fewer than 3"),
        ("OFF\n3 1 0\n0 0 0\n1 x 1\n2 2 2\n3 0 1 2\n", "non-numeric"),
        ("OFF3 2 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n", "2 faces"),
    ],
)
def test_malformed_files_raise_naming_the_file(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad_mesh.off"
    p.write_text(text)
    with pytest.raises(DataError) as err:
        read_off_vertices(p)
    assert str(p) in str(err.value) and needle in str(err.value)
