"""ModelNet40 (Princeton) -> ModelNet40-s: mesh vertices, normalized, voxel-downsampled to <= 800 points.

Raw layout: ``<raw_root>/modelnet40/ModelNet40.zip`` (downloaded or placed by hand),
extracted to ``<raw_root>/modelnet40/extracted/``; an already extracted copy may be
placed at ``<raw_root>/modelnet40/ModelNet40/`` instead.
"""

from __future__ import annotations

from pathlib import Path

from ddeqs.errors import DataError

URL = "http://modelnet.cs.princeton.edu/ModelNet40.zip"
SHA256 = "42dc3e656932e387f554e25a4eb2cc0e1a1bd3ab54606e2a9eae444c60e536ac"
ZIP_NAME = "ModelNet40.zip"


def raw_dir(raw_root: str | Path) -> Path:
    return Path(raw_root) / "modelnet40"


def layout_root(raw_root: str | Path) -> Path | None:
    """The folder holding ``<class>/{train,test}`` (placed copy first, then the extraction)."""
    from ddeqs.data.meshes import find_layout_root

    base = raw_dir(raw_root)
    for cand in (base / "ModelNet40", base / "extracted"):
        found = find_layout_root(cand)
        if found is not None:
            return found
    return None


def fetch(raw_root: str | Path, url: str = URL, checksum: str | None = f"sha256:{SHA256}", progress: bool = True) -> str:
    """Download (resumable, verified) and extract ModelNet40; returns what was done."""
    from ddeqs.data.archive import safe_extract
    from ddeqs.data.download import download

    base = raw_dir(raw_root)
    if (base / "ModelNet40").is_dir() and layout_root(raw_root) is not None and not (base / "extracted").is_dir():
        return f"modelnet40-s: using the placed copy {base / 'ModelNet40'}; nothing to do"
    target = base / "extracted"
    if (target / ".extracted").is_file():
        return f"modelnet40-s: {target} already extracted; nothing to do"
    archive = download(url, base / ZIP_NAME, checksum=checksum, progress=progress)
    safe_extract(archive, target)
    if layout_root(raw_root) is None:
        raise DataError(f"{archive} did not contain the '<class>/train/*.off' layout")
    return f"modelnet40-s: downloaded, verified and extracted {archive.name} into {target}"
