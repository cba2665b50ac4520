"""Safe zip extraction: refuses entries that would land outside the target folder."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

from ddeqs.errors import DataError

COMPLETE_MARKER = ".extracted"


def check_member(name: str) -> None:
    """Raise :class:`DataError` for an absolute name, a drive letter or a ``..`` component."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DataError(f"refusing unsafe archive entry {name!r} (absolute path or '..')")


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a zip into ``target`` atomically; returns ``target``.

    Every entry is checked before anything is written; extraction goes to
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
