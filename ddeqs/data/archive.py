"""Safe zip extraction: refuses entries that would land outside the target folder."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

from ddeqs.errors import DataError

COMPLETE_MARKER = ".extracted"
#: cap on the declared uncompressed size of an archive (ModelNet40 is about 2 GiB unpacked)
MAX_EXTRACT_BYTES = 8 * 2**30
#: cap on uncompressed / compressed size (mesh text compresses about 5x; a zip bomb 1000x and more)
MAX_RATIO = 100


def check_member(name: str) -> None:
    """Raise :class:`DataError` for an absolute name, a drive letter or a ``..`` component."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DataError(f"refusing unsafe archive entry {name!r} (absolute path or '..')")


def safe_extract(archive: str | Path, target: str | Path, max_bytes: int = MAX_EXTRACT_BYTES) -> Path:
    """Extract a zip into ``target`` atomically; returns ``target``.

    Every entry is checked before anything is written (no ``..``/absolute names, declared
    uncompressed size at most ``max_bytes``); extraction goes to
    ``<target>.partial`` and is renamed when complete. A target holding the
    completion marker is left as it is (idempotent).
    """
    archive, target = Path(archive), Path(target)
    if (target / COMPLETE_MARKER).is_file():
        return target
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{archive} is not a readable zip archive ({err}); delete it and fetch again") from None
    with zf:
        for info in zf.infolist():
            try:
                check_member(info.filename)
            except DataError as err:
                raise DataError(f"{archive}: {err}; nothing was extracted") from None
        # a zip bomb (or the wrong file): refuse before writing anything. zipfile never reads more than an
        # entry's declared size (and checks its CRC), so the declared sizes bound what is written.
        total = sum(info.file_size for info in zf.infolist())
        ratio = total / max(archive.stat().st_size, 1)
        if total > max_bytes or (total > 16 * 2**20 and ratio > MAX_RATIO):
            raise DataError(f"{archive} would extract {total / 2**20:.0f} MiB ({ratio:.0f} times its size; caps: "
                            f"{max_bytes / 2**20:.0f} MiB, {MAX_RATIO}x); nothing was extracted. Check that it is "
                            f"the right file")
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"{archive}: extraction failed ({err}); delete it and fetch again") from None
    (tmp / COMPLETE_MARKER).write_text(f"extracted from {archive.name}\n")
    if target.exists():  # never delete a folder we did not write
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{target} exists but was not extracted by ddeqs (no {COMPLETE_MARKER} marker); "
                        "move it away, or keep it and skip the archive")
    tmp.rename(target)
    return target
