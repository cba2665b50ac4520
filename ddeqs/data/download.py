"""Resumable, checksum-verified, atomic HTTP downloads.

A download goes to ``<dest>.part`` (resumed with an HTTP ``Range`` request when a
previous attempt left one), is checked against the expected checksum and only then
renamed to ``<dest>``: a file under the final name is always complete and verified.
"""

# Why not pooch (checksummed retrieval, the usual library for this): pooch streams each attempt into a
# temporary file that it deletes when the attempt fails, and retries from byte 0, so an interrupted
# download of the 2 GB ModelNet40 archive starts over; there is no Range resume. Its Unzip processor
# has no cap on the declared uncompressed size or the compression ratio, and judges an extraction by
# the folder's existence, not by a completion marker (ddeqs.data.archive has all three). Keeping resume
# and safe extraction would mean replacing both parts of pooch, so this module and archive.py stay.

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ddeqs.errors import DownloadError


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file with ``hashlib`` algorithm ``algo``."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    """``'sha256:ab..'``, ``'md5:..'`` or a bare sha256 hex -> ``(algo, hex)``; an unknown algorithm is a
    :class:`DownloadError` (raised before any request, so no ``.part`` file is left)."""
    if not checksum:
        return None
    algo, _, value = checksum.partition(":") if ":" in checksum else ("sha256", "", checksum)
    algo = algo.lower()
    if algo not in hashlib.algorithms_available:
        raise DownloadError(f"checksum {checksum!r}: unknown hash algorithm {algo!r}; write it as "
                            f"'sha256:<hex>' (or md5, sha1, sha512)")
    return algo, value.lower()


def verify(path: str | Path, checksum: str | None) -> bool:
    """True when ``path`` matches ``checksum`` (always True without one)."""
    parsed = parse_checksum(checksum)
    return parsed is None or file_digest(path, parsed[0]) == parsed[1]


def _manual(url: str, dest: Path) -> str:
    return f"download {url} by hand (browser, curl) and place it at {dest}, then run the command again"


def download(url: str, dest: str | Path, checksum: str | None = None, progress: bool = True,
             timeout: float = 60.0, chunk: int = 1 << 16) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified, atomic); returns ``dest``.

    ``checksum``: ``'sha256:<hex>'``, ``'md5:<hex>'`` or a bare sha256; ``None`` skips the check.
    An existing ``dest`` that verifies is kept (no request is made). Raises
    :class:`DownloadError` naming the URL and where to place the file by hand.
    """
    dest = Path(dest)
    parse_checksum(checksum)  # an unknown algorithm fails here, before anything is written
    if dest.is_file():
        if verify(dest, checksum):
            return dest
        raise DownloadError(f"{dest} exists but does not match the expected checksum {checksum}; "
                            f"delete it and run again, or {_manual(url, dest)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "ddeqs"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part is already complete: verify it below
            resp = None
        else:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; {_manual(url, dest)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise DownloadError(f"{url}: {getattr(err, 'reason', err)}; {_manual(url, dest)}") from None
    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            mode = "ab" if (have and status == 206) else "wb"
            if mode == "wb":
                have = 0  # the server ignored the Range header: start over
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            _stream(resp, part, mode, have, total, url, dest, progress, chunk)
    if not verify(part, checksum):
        part.unlink(missing_ok=True)  # a wrong file cannot be resumed into a right one
        raise DownloadError(f"{url}: the downloaded file does not match the expected checksum {checksum} "
                            f"(truncated or tampered); nothing was kept. Run again, or {_manual(url, dest)}")
    os.replace(part, dest)
    return dest


def _stream(resp, part: Path, mode: str, have: int, total: int | None, url: str, dest: Path,
            progress: bool, chunk: int) -> None:
    from tqdm.auto import tqdm

    got = have
    with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=dest.name, disable=not progress, leave=False) as bar:
        try:
            while block := resp.read(chunk):
                f.write(block)
                got += len(block)
                bar.update(len(block))
        except (OSError, ValueError, http.client.HTTPException) as err:  # connection dropped: keep the .part for a resume
            raise DownloadError(f"{url}: interrupted after {got} bytes ({err}); run the command again to resume "
                                f"from {part}, or {_manual(url, dest)}") from None
    if total is not None and got < total:
        raise DownloadError(f"{url}: interrupted after {got} of {total} bytes; run the command again to resume "
                            f"from {part}, or {_manual(url, dest)}")
