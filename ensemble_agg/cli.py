"""The ``agg-client`` command: the swergio aggregator component.

``main(argv)`` parses the options (each also read from an ``AGG_<NAME>``
environment variable), sets up logging, installs SIGINT/SIGTERM handlers that
only set a stop flag, and runs :class:`~ensemble_agg._component.AggregatorComponent`.
Exit status: 0 after a clean stop or a signal, 1 if the server cannot be
reached within ``--connect-timeout``, 2 for a usage error, 3 for a state file
that cannot be read or written at start.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._validation import RULES

__all__ = ["EXIT_OK", "EXIT_STATE_FILE", "EXIT_UNREACHABLE", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
EXIT_STATE_FILE = 3

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be 0..65535")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a finite number > 0")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("must be a finite number >= 0")
    return value


def _model_ids(text: str) -> list[str]:
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        ids = [
            line.strip() for line in lines if line.strip() and not line.startswith("#")
        ]
    else:
        ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ValueError("no model ids given")
    return ids


def _typed(convert: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap ``convert`` so argparse reports ``name`` and the reason."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            reason = str(exc)
            if "invalid literal" in reason or "could not convert" in reason:
                reason = "not a number"
            raise argparse.ArgumentTypeError(f"{text!r}: {reason}") from None

    parse.__name__ = name
    return parse


# (flag, type, default, metavar, help); the default is used when neither the
# flag nor its AGG_ variable is given.
OPTIONS: list[tuple[str, Callable[[str], Any], Any, str, str]] = [
    (
        "--server",
        str,
        None,
        "HOST",
        "swergio server address (default: this host's address, as the original)",
    ),
    ("--port", _port, 8080, "PORT", "swergio server port (default: %(default)s)"),
    (
        "--name",
        str,
        "aggregation",
        "NAME",
        "component name registered with the server (default: %(default)s)",
    ),
    ("--models", _positive_int, 20, "N", "models per round (default: %(default)s)"),
    (
        "--format",
        str,
        "utf-8",
        "ENC",
        "swergio message encoding (default: %(default)s)",
    ),
    (
        "--header-length",
        _positive_int,
        10,
        "N",
        "swergio header length (default: %(default)s)",
    ),
    (
        "--logits-room",
        str,
        "logits",
        "ROOM",
        "room of the models' LOGITS (default: %(default)s)",
    ),
    (
        "--action-room",
        str,
        "action",
        "ROOM",
        "room the ACTION goes to (default: %(default)s)",
    ),
    (
        "--evolution-room",
        str,
        "evolution",
        "ROOM",
        "room of CMD GET and the CONTRIBUTION reply (default: %(default)s)",
    ),
    (
        "--rule",
        str,
        "sum",
        "RULE",
        f"ensemble rule: {', '.join(RULES)} (default: %(default)s)",
    ),
    (
        "--temperature",
        _positive_float,
        1.0,
        "T",
        "ensemble temperature > 0 (default: %(default)s)",
    ),
    ("--seed", int, None, "INT", "seed for sampled actions (default: fresh entropy)"),
    (
        "--step-timeout",
        _positive_float,
        None,
        "SECONDS",
        "close a round that has waited this long with the models present (default: off)",
    ),
    (
        "--state-file",
        Path,
        None,
        "PATH",
        "keep the contribution tally in this file; restored at start (default: none)",
    ),
    (
        "--connect-timeout",
        _nonnegative_float,
        None,
        "SECONDS",
        "give up if the server cannot be reached at start (default: keep trying)",
    ),
    (
        "--max-actions",
        _positive_int,
        4096,
        "N",
        "LOGITS longer than this are dropped as malformed (default: %(default)s)",
    ),
    (
        "--model-ids",
        _model_ids,
        None,
        "IDS",
        "comma list, or @FILE with one id a line: only these models count (default: any)",
    ),
    (
        "--max-ids",
        _positive_int,
        None,
        "N",
        "without --model-ids, the most distinct ids tracked between two GETs "
        "(default: max(1024, 4 x --models))",
    ),
    (
        "--stats-interval",
        _nonnegative_float,
        60.0,
        "SECONDS",
        "one INFO line of counters this often; 0 turns it off (default: %(default)s)",
    ),
    (
        "--log-level",
        str.upper,
        "INFO",
        "LEVEL",
        f"one of {', '.join(LOG_LEVELS)} (default: %(default)s)",
    ),
]


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def add_env_options(
    parser: argparse.ArgumentParser,
    options: list[tuple[str, Callable[[str], Any], Any, str, str]],
    prefix: str,
    env: Mapping[str, str],
    choices: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Add ``options`` to ``parser``, each defaulting to its ``prefix<NAME>`` variable.

    ``--some-name`` reads ``<prefix>SOME_NAME``; an explicit flag wins.  An
    option whose type is ``bool`` is a switch (``store_true``) whose variable
    takes 1/0, true/false, yes/no or on/off.
    """
    for flag, kind, default, metavar, help_text in options:
        var = prefix + flag[2:].upper().replace("-", "_")
        convert = _typed(_boolean if kind is bool else kind, flag[2:])
        value = default
        if env.get(var, "") != "":
            try:
                value = convert(env[var])
            except argparse.ArgumentTypeError as exc:
                parser.error(f"environment variable {var}: {exc}")
        help_text += f" [env {var}]"
        if kind is bool:
            parser.add_argument(
                flag, action="store_true", default=value, help=help_text
            )
            continue
        parser.add_argument(
            flag,
            type=convert,
            default=value,
            metavar=metavar,
            choices=(choices or {}).get(flag),
            help=help_text,
        )


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """Return the ``agg-client`` argument parser, defaults taken from ``environ``.

    Each option ``--some-name`` can be set by ``AGG_SOME_NAME``; an explicit
    flag wins over the variable.
    """
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="agg-client",
        description=(
            "ensemble-agg's swergio aggregator: collects every model's LOGITS per "
            "step, sends one ACTION, and answers CMD GET with each model's "
            "CONTRIBUTION.  A drop-in replacement for the original torch "
            "component.  Every option can also be set by an environment variable "
            "AGG_<NAME>, e.g. AGG_PORT=9000 or AGG_STEP_TIMEOUT=0.5."
        ),
        epilog=(
            "exit status: 0 after a clean stop (SIGINT/SIGTERM included), 1 if the "
            "server cannot be reached within --connect-timeout, 2 for a usage "
            "error, 3 for a state file that cannot be read or written."
        ),
    )
    add_env_options(
        parser, OPTIONS, "AGG_", env, {"--rule": RULES, "--log-level": LOG_LEVELS}
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run a self-contained demonstration on 127.0.0.1 and exit",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    return parser


def this_host_address(prog: str, hint: str) -> str | None:
    """This host's address (swergio's examples' default), or ``None`` after one
    error line on standard error ending with ``hint``."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError as exc:
        print(
            f"{prog}: cannot resolve this host's address ({exc}); {hint}",
            file=sys.stderr,
        )
        return None


def on_stop_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT and SIGTERM; the handler does nothing else.

    Only the main thread can install handlers; elsewhere (a test calling
    ``main`` on a thread) this does nothing.
    """

    def handler(signum: int, frame: object) -> None:
        stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agg-client`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status (see the module docstring).
    """
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    if args.demo:
        from ._demo import run_demo

        try:
            return run_demo(
                seed=args.seed, rule=args.rule, temperature=args.temperature
            )
        except (OSError, TimeoutError) as exc:
            print(f"agg-client: the demo failed: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE

    from ._component import AggregatorComponent, ServerUnreachable, Settings
    from ._state_file import StateFileError

    server = args.server
    if server is None:  # the original's default: this host's address
        server = this_host_address(
            "agg-client", "give the server with --server or AGG_SERVER"
        )
        if server is None:
            return EXIT_UNREACHABLE
    settings = Settings(
        server=server,
        port=args.port,
        name=args.name,
        models=args.models,
        format=args.format,
        header_length=args.header_length,
        logits_room=args.logits_room,
        action_room=args.action_room,
        evolution_room=args.evolution_room,
        rule=args.rule,
        temperature=args.temperature,
        seed=args.seed,
        step_timeout=args.step_timeout,
        state_file=args.state_file,
        connect_timeout=args.connect_timeout,
        max_actions=args.max_actions,
        model_ids=args.model_ids,
        max_ids=args.max_ids,
        stats_interval=args.stats_interval,
    )
    stop = threading.Event()
    try:
        component = AggregatorComponent(settings, stop=stop)
    except StateFileError as exc:
        print(f"agg-client: {exc}", file=sys.stderr)
        return EXIT_STATE_FILE
    except ValueError as exc:  # e.g. max_ids below models
        print(f"agg-client: {exc}", file=sys.stderr)
        return EXIT_USAGE

    on_stop_signals(stop.set)
    try:
        component.run()
    except ServerUnreachable as exc:
        print(f"agg-client: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_OK
