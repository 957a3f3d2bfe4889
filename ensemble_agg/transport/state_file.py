"""The contribution tally on disk: safe, durable writes and strict loads.

The file is JSON: ``{"format": "ensemble-agg-tally", "version": 1,
"contributions": {model_id: float, ...}}``.  It is written to a new
temporary file in the same directory, created with ``mkstemp`` (a random
name opened with ``O_CREAT | O_EXCL``, mode 0600, so nobody who can write the
directory can make us follow a symlink or overwrite another file), flushed
and ``fsync``-ed, then renamed over the old one, and the directory is
``fsync``-ed so the rename itself is on disk.  A reader, or a restart after
``kill -9`` or a power cut, sees the old tally or the new one, never a torn
file.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Hashable, Mapping
from pathlib import Path

from ..core.checks import check_nonnegative
from ..errors import StateFileError
from ..util.text import preview

__all__ = ["StateFileError", "load_tally", "remove_tally", "save_tally"]

FORMAT = "ensemble-agg-tally"
VERSION = 1
#: A tally of a million ids is under 64 MB; anything larger is not ours.
MAX_SIZE = 64 << 20


def load_tally(path: Path) -> dict[str, float]:
    """Return the tally stored at ``path``; ``{}`` if the file does not exist.

    Raises :class:`StateFileError`, naming the file and the problem, if it
    exists but is not a tally written by :func:`save_tally` (not a regular
    file, too large, not UTF-8, not JSON, a value that is not a finite
    non-negative number, ...); the file is left as it is, never replaced.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StateFileError(f"state file {path} is not a regular file")
    if info.st_size > MAX_SIZE:
        raise StateFileError(
            f"state file {path} has {info.st_size} bytes; a tally is at most "
            f"{MAX_SIZE} bytes"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise StateFileError(f"state file {path} is not UTF-8 text ({exc})") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise StateFileError(f"state file {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError(
            f'state file {path} is not an ensemble-agg tally (no "format": "{FORMAT}")'
        )
    version = data.get("version")
    if type(version) is not int or version != VERSION:
        raise StateFileError(
            f"state file {path} has version {preview(version)}; "
            f"this agg-client reads version {VERSION}"
        )
    tally = data.get("contributions")
    if not isinstance(tally, dict):
        raise StateFileError(f'state file {path} has no "contributions" object')
    try:
        return {
            str(k): check_nonnegative(v, f"contribution of {preview(k)}")
            for k, v in tally.items()
        }
    except (TypeError, ValueError) as exc:
        raise StateFileError(f"state file {path}: {exc}") from None


def save_tally(path: Path, tally: Mapping[Hashable, float]) -> None:
    """Write ``tally`` to ``path`` atomically and durably.

    A new temporary file (``mkstemp``, mode 0600) in the same directory is
    written, ``fsync``-ed and renamed over ``path``; then the directory is
    ``fsync``-ed.  Ids become JSON object keys; agg-client's ids are strings.
    Raises :class:`StateFileError` if any step fails; ``path`` then still
    holds the previous tally.
    """
    data = json.dumps(
        {"format": FORMAT, "version": VERSION, "contributions": dict(tally)}
    ).encode("utf-8")
    folder = path.parent
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
    except OSError as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise StateFileError(
            f"cannot write state file {path}: {exc.strerror or exc}"
        ) from None


def remove_tally(path: Path) -> bool:
    """Remove the state file; True if it is gone (or was never there).

    For a GET whose cleared tally cannot be written (a full disk): an empty
    tally and no file mean the same at the next start, so the old tally
    cannot be counted twice.  Removing a file needs no free space.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        _fsync_dir(path.parent)
    except OSError:
        pass
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
