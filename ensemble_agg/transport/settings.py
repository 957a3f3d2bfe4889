"""agg-client's settings, defined once.

Each field of :class:`Settings` carries its command-line flag's metadata
(converter, metavar, help, choices); ``cli.agg_client.build_parser`` builds the parser
and the ``AGG_<NAME>`` environment variables from them, and the docs' CLI
reference is generated from that parser, so flag, variable, default and help
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.checks import RULES
from ..core.options import check_weight_map
from .convert import (
    LOG_LEVELS,
    encoding,
    http_address,
    nonnegative_float,
    port,
    positive_float,
    positive_int,
)

__all__ = [
    "CLIENT_MAX_FRAME_BYTES",
    "LOG_LEVELS",
    "Option",
    "Settings",
    "encoding",
    "options",
]

#: agg-client's default cap on one frame's body (``--max-frame-bytes``):
#: larger frames pass by unread (the aggregator never needs an evolution
#: ``SET``).  A LOGITS of 4096 numbers is about 100 KB, a GET a few dozen bytes.
CLIENT_MAX_FRAME_BYTES = 1 << 20
#: The smallest --max-frame-bytes: a swergio message with a few logits.
MIN_FRAME_BYTES = 4096
#: Bytes a frame may need per action of --max-actions (a float's digits).
BYTES_PER_ACTION = 32


def _lines_or_commas(text: str) -> list[str]:
    """Items of a comma list, or of ``@FILE`` (one a line, ``#`` comments)."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ValueError(f"cannot read {path}: {reason}") from None
        return [
            line.strip() for line in lines if line.strip() and not line.startswith("#")
        ]
    return [part.strip() for part in text.split(",") if part.strip()]


def model_ids(text: str) -> list[str]:
    """``a,b,c`` or ``@FILE`` with one id a line."""
    ids = _lines_or_commas(text)
    if not ids:
        raise ValueError("no model ids given")
    return ids


def weights(text: str) -> dict[str, float]:
    """``ID=W,ID=W`` or ``@FILE`` with one ``ID=W`` a line."""
    out: dict[str, float] = {}
    for item in _lines_or_commas(text):
        model, sep, value = item.rpartition("=")
        if not sep or not model.strip():
            raise ValueError(f"{item!r} is not ID=WEIGHT")
        out[model.strip()] = float(value)
    if not out:
        raise ValueError("no weights given")
    check_weight_map(out)  # the library's one check of weights by id
    return out


@dataclass(frozen=True)
class Option:
    """How one setting appears on the command line."""

    convert: Callable[[str], Any]
    metavar: str
    help: str
    choices: tuple[str, ...] | None = None


def _opt(
    default: Any,
    convert: Callable[[str], Any],
    metavar: str,
    help: str,
    choices: tuple[str, ...] | None = None,
) -> Any:
    return field(
        default=default,
        metadata={"option": Option(convert, metavar, help, choices)},
    )


@dataclass
class Settings:
    """Everything ``agg-client`` can be told; defaults are the original's.

    Each field is the option ``--field-name`` and the environment variable
    ``AGG_FIELD_NAME``.
    """

    server: str | None = _opt(
        None,
        str,
        "HOST",
        "swergio server address (default: this host's address, as the original)",
    )
    port: int = _opt(8080, port, "PORT", "swergio server port (default: %(default)s)")
    name: str = _opt(
        "aggregation",
        str,
        "NAME",
        "component name registered with the server (default: %(default)s)",
    )
    models: int = _opt(20, positive_int, "N", "models per round (default: %(default)s)")
    format: str = _opt(
        "utf-8", encoding, "ENC", "swergio message encoding (default: %(default)s)"
    )
    header_length: int = _opt(
        10, positive_int, "N", "swergio header length (default: %(default)s)"
    )
    logits_room: str = _opt(
        "logits", str, "ROOM", "room of the models' LOGITS (default: %(default)s)"
    )
    action_room: str = _opt(
        "action", str, "ROOM", "room the ACTION goes to (default: %(default)s)"
    )
    evolution_room: str = _opt(
        "evolution",
        str,
        "ROOM",
        "room of CMD GET and the CONTRIBUTION reply (default: %(default)s)",
    )
    rule: str = _opt(
        "sum",
        str,
        "RULE",
        f"ensemble rule: {', '.join(RULES)} (default: %(default)s)",
        RULES,
    )
    temperature: float = _opt(
        1.0, positive_float, "T", "ensemble temperature > 0 (default: %(default)s)"
    )
    seed: int | None = _opt(
        None, int, "INT", "seed for sampled actions (default: fresh entropy)"
    )
    step_timeout: float | None = _opt(
        None,
        positive_float,
        "SECONDS",
        "close a round that has waited this long with the models present "
        "(default: off)",
    )
    state_file: Path | None = _opt(
        None,
        Path,
        "PATH",
        "keep the contribution tally in this file; restored at start (default: none)",
    )
    connect_timeout: float | None = _opt(
        None,
        nonnegative_float,
        "SECONDS",
        "give up if the server cannot be reached at start (default: keep trying)",
    )
    max_actions: int = _opt(
        4096,
        positive_int,
        "N",
        "LOGITS longer than this are dropped as malformed (default: %(default)s)",
    )
    actions: int | None = _opt(
        None,
        positive_int,
        "N",
        "every LOGITS must have exactly N entries; others are dropped, whoever "
        "submits first (default: the round's first submission sets it)",
    )
    model_ids: list[str] | None = _opt(
        None,
        model_ids,
        "IDS",
        "comma list, or @FILE with one id a line: only these models count "
        "(default: any)",
    )
    weights: dict[str, float] | None = _opt(
        None,
        weights,
        "ID=W,...",
        "per-model weights, or @FILE with one ID=W a line; unlisted models "
        "weigh 1 (default: all 1)",
    )
    max_ids: int | None = _opt(
        None,
        positive_int,
        "N",
        "without --model-ids, the most distinct ids tracked between two GETs "
        "(default: max(1024, 4 x --models))",
    )
    max_frame_bytes: int | None = _opt(
        None,
        positive_int,
        "BYTES",
        "larger frames pass by unread, the stream stays in step (default: 1 MiB, "
        "or 32 bytes per --max-actions if that is more)",
    )
    stats_interval: float = _opt(
        60.0,
        nonnegative_float,
        "SECONDS",
        "one INFO line of counters this often; 0 turns it off (default: %(default)s)",
    )
    http: tuple[str, int] | None = _opt(
        None,
        http_address,
        "[HOST:]PORT",
        "serve /metrics (Prometheus), /healthz, /status and a live page on this "
        "address; HOST defaults to 127.0.0.1; needs the http extra "
        "(default: off)",
    )
    log_level: str = _opt(
        "INFO",
        str.upper,
        "LEVEL",
        f"one of {', '.join(LOG_LEVELS)} (default: %(default)s)",
        LOG_LEVELS,
    )

    def __post_init__(self) -> None:
        if self.max_frame_bytes is not None and self.max_frame_bytes < MIN_FRAME_BYTES:
            raise ValueError(
                f"--max-frame-bytes must be at least {MIN_FRAME_BYTES}, got "
                f"{self.max_frame_bytes}: smaller would pass every message by"
            )
        digits = len(str(self.frame_limit()))
        if self.header_length < digits:
            raise ValueError(
                f"--header-length {self.header_length} cannot hold a frame length "
                f"of {digits} digits (the frame limit is {self.frame_limit()} bytes)"
            )
        if self.max_ids is not None and self.max_ids < self.models:
            raise ValueError(
                f"--max-ids must be at least --models ({self.models}), "
                f"got {self.max_ids}"
            )
        if self.actions is not None and self.actions > self.max_actions:
            raise ValueError(
                f"--actions {self.actions} is more than --max-actions "
                f"{self.max_actions}"
            )
        if self.weights is not None and self.model_ids is not None:
            unknown = sorted(set(self.weights) - set(self.model_ids))
            if unknown:
                raise ValueError(
                    f"--weights names ids that --model-ids does not list: "
                    f"{', '.join(unknown[:5])}"
                )
            if not any(self.weights.get(i, 1.0) > 0 for i in self.model_ids):
                raise ValueError("--weights gives every model in --model-ids weight 0")

    def id_cap(self) -> int | None:
        """The cap on distinct ids tracked: none if ``model_ids`` restricts them."""
        if self.model_ids is not None:
            return None
        return self.max_ids if self.max_ids is not None else max(1024, 4 * self.models)

    def frame_limit(self) -> int:
        """The largest frame read: ``max_frame_bytes``, or the default for ``max_actions``."""
        if self.max_frame_bytes is not None:
            return self.max_frame_bytes
        return max(CLIENT_MAX_FRAME_BYTES, BYTES_PER_ACTION * self.max_actions)


def options() -> list[tuple[str, Any, Option]]:
    """``(field name, default, Option)`` for every setting, in flag order."""
    return [(f.name, f.default, f.metadata["option"]) for f in fields(Settings)]
