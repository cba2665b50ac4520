"""Downloads from a local HTTP server: checksum, refusal, resume, atomicity; safe zip extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from ddeqs.data.archive import safe_extract
from ddeqs.data.download import download
from ddeqs.errors import DataError, DownloadError

pytestmark = pytest.mark.network

PAYLOAD = bytes(range(256)) * 400  # 100 kB


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    drop_after: dict[str, int] = {}  # path -> close the connection after this many body bytes
    ranges: list[str | None] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        rng = self.headers.get("Range")
        self.ranges.append(rng)
        if body is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(body):
            self.send_response(416)
            self.end_headers()
            return
        part = body[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        cut = self.drop_after.pop(self.path, None)
        self.wfile.write(part if cut is None else part[:cut])
        if cut is not None:
            self.close_connection = True


@pytest.fixture
def server():
    _Handler.files, _Handler.drop_after, _Handler.ranges = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_checksum_and_is_idempotent(server, tmp_path: Path) -> None:
    url, h = server
    h.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "raw" / "a.bin"
    assert download(url + "/a.bin", dest, checksum=sha(PAYLOAD), progress=False) == dest
    assert dest.read_bytes() == PAYLOAD and not dest.with_name("a.bin.part").exists()
    n = len(h.ranges)
    download(url + "/a.bin", dest, checksum=f"sha256:{sha(PAYLOAD)}", progress=False)  # present: no request
    assert len(h.ranges) == n


@pytest.mark.parametrize("served", [PAYLOAD[:-1000], PAYLOAD[:500] + b"X" + PAYLOAD[501:]], ids=["truncated", "tampered"])
def test_bad_archive_is_refused_and_leaves_no_file(server, tmp_path: Path, served: bytes) -> None:
    url, h = server
    h.files["/a.zip"] = served
    dest = tmp_path / "a.zip"
    with pytest.raises(DownloadError) as err:
        download(url + "/a.zip", dest, checksum=sha(PAYLOAD), progress=False)
    msg = str(err.value)
    assert url + "/a.zip" in msg and str(dest) in msg and "checksum" in msg
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a .part


def test_resume_from_part_file_uses_range(server, tmp_path: Path) -> None:
    url, h = server
    h.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    dest.with_name("a.bin.part").write_bytes(PAYLOAD[:30_000])
    download(url + "/a.bin", dest, checksum=sha(PAYLOAD), progress=False)
    assert h.ranges == ["bytes=30000-"] and dest.read_bytes() == PAYLOAD


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path: Path) -> None:
    url, h = server
    h.files["/a.bin"] = PAYLOAD
    h.drop_after["/a.bin"] = 40_000
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="resume"):
        download(url + "/a.bin", dest, checksum=sha(PAYLOAD), progress=False)
    assert not dest.exists() and dest.with_name("a.bin.part").stat().st_size == 40_000
    download(url + "/a.bin", dest, checksum=sha(PAYLOAD), progress=False)
    assert h.ranges[-1] == "bytes=40000-" and dest.read_bytes() == PAYLOAD


def test_http_error_names_url_and_manual_path(server, tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "missing.zip"
    with pytest.raises(DownloadError) as err:
        download(url + "/missing.zip", dest, checksum=None, progress=False)
    assert "404" in str(err.value) and str(dest) in str(err.value) and "/missing.zip" in str(err.value)
    assert not dest.exists()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("bad", ["../evil.txt", "ok/../../evil.txt", "/abs/evil.txt"])
def test_zip_with_escaping_entry_is_refused(tmp_path: Path, bad: str) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"fine/a.txt": b"a", bad: b"evil"}))
    target = tmp_path / "out" / "x"
    with pytest.raises(DataError, match="unsafe archive entry"):
        safe_extract(archive, target)
    assert not target.exists() and not (tmp_path / "out" / "x.partial").exists()
    assert not list(tmp_path.rglob("evil.txt"))


def test_modelnet_fetch_and_prepare_from_local_server(server, tmp_path: Path) -> None:
    """The ModelNet40 path end to end on a tiny archive: download, verify, extract, voxelize, skip bad files."""
    import numpy as np

    from ddeqs.data import modelnet
    from ddeqs.data.offfile import write_off
    from ddeqs.data.registry import prepare_dataset
    from ddeqs.data.shapes import make_mesh
    from ddeqs.data.store import load_split, read_sidecar

    src = tmp_path / "src"
    for k, cls in enumerate(["chair", "cone"]):
        for i, split in enumerate(["train", "train", "test"]):
            v, f = make_mesh(cls, np.random.default_rng([k, i]))
            write_off(src / "ModelNet40" / cls / split / f"{cls}_{i}.off", v, f, one_line_header=i == 1)
    (src / "ModelNet40" / "cone" / "train" / "cone_bad.off").write_text("OFF\n5 1 0\n0 0 0\n1 1 1\n")
    entries = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*.off")}
    data = _zip(entries)
    url, h = server
    h.files["/ModelNet40.zip"] = data
    raw = tmp_path / "raw"
    msg = modelnet.fetch(raw, url=url + "/ModelNet40.zip", checksum=sha(data), progress=False)
    assert "extracted" in msg
    assert "nothing to do" in modelnet.fetch(raw, url=url + "/ModelNet40.zip", checksum=sha(data), progress=False)
    prepare_dataset("modelnet40-s", raw, tmp_path / "proc", progress=False)
    train = load_split(tmp_path / "proc" / "modelnet40-s" / "train")
    assert train.class_names == ["chair", "cone"] and len(train) == 4
    assert train.lengths.max() <= 800 and train.lengths.min() >= 500
    side = read_sidecar(tmp_path / "proc" / "modelnet40-s" / "train")
    assert side["n_skipped"] == 1 and side["skipped"][0]["file"] == "cone/train/cone_bad.off"
    assert "5 vertices" in side["skipped"][0]["reason"]
