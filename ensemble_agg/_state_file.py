"""The contribution tally on disk: atomic writes, strict loads.

The file is JSON: ``{"format": "ensemble-agg-tally", "version": 1,
"contributions": {model_id: float, ...}}``.  It is written to a temporary
file in the same directory and renamed over the old one, so a reader (or a
restart after ``kill -9``) sees either the old tally or the new one, never a
torn file.  There is no ``fsync`` per write: a killed process loses nothing
that way, only a power cut could, and an fsync per round would cost more
than the round itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from pathlib import Path

from ._validation import check_nonnegative

__all__ = ["StateFileError", "load_tally", "save_tally"]

FORMAT = "ensemble-agg-tally"
VERSION = 1


class StateFileError(Exception):
    """The state file cannot be read or written; ``str()`` says which and why."""


def load_tally(path: Path) -> dict[str, float]:
    """Return the tally stored at ``path``; ``{}`` if the file does not exist.

    Raises :class:`StateFileError` if it exists but is not a tally written by
    :func:`save_tally`; the file is left as it is, never replaced.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"state file {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError(
            f'state file {path} is not an ensemble-agg tally (no "format": "{FORMAT}")'
        )
    if data.get("version") != VERSION:
        raise StateFileError(
            f"state file {path} has version {data.get('version')!r}; "
            f"this agg-client reads version {VERSION}"
        )
    tally = data.get("contributions")
    if not isinstance(tally, dict):
        raise StateFileError(f'state file {path} has no "contributions" object')
    try:
        return {
            str(k): check_nonnegative(v, f"contribution of {k!r}")
            for k, v in tally.items()
        }
    except (TypeError, ValueError) as exc:
        raise StateFileError(f"state file {path}: {exc}") from None


def save_tally(path: Path, tally: Mapping[Hashable, float]) -> None:
    """Write ``tally`` to ``path`` atomically (temporary file, then rename).

    Ids become JSON object keys; agg-client's ids are strings already.
    """
    data = {"format": FORMAT, "version": VERSION, "contributions": dict(tally)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StateFileError(
            f"cannot write state file {path}: {exc.strerror}"
        ) from None
