"""The ``agg-client`` command: the swergio aggregator component.

``main(argv)`` parses the options (each also read from an ``AGG_<NAME>``
environment variable), sets up logging, installs SIGINT/SIGTERM handlers that
only set a stop flag, and runs :class:`~ensemble_agg.transport.component.AggregatorComponent`.
Exit status: 0 after a clean stop or a signal (SIGINT, SIGTERM, SIGHUP), 1 if
the server cannot be reached within ``--connect-timeout``, 2 for a usage
error, 3 for a state file that cannot be read or written at start, 4 for an
internal error (a bug: logged with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import __version__
from ..transport.settings import Settings, options
from ..util.text import preview

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_STATE_FILE",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "STOP_SIGNALS",
    "add_env_options",
    "build_parser",
    "main",
    "on_stop_signals",
    "this_host_address",
]

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
EXIT_STATE_FILE = 3
EXIT_INTERNAL = 4

logger = logging.getLogger(__name__)


def _typed(convert: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap ``convert`` so argparse reports ``name`` and the reason."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, OverflowError) as exc:
            reason = str(exc)
            if "invalid literal" in reason or "could not convert" in reason:
                reason = "not a number"
            elif "Exceeds the limit" in reason or isinstance(exc, OverflowError):
                reason = "too large a number"
            raise argparse.ArgumentTypeError(f"{preview(text)}: {reason}") from None

    parse.__name__ = name
    return parse


def client_options() -> list[tuple[str, Callable[[str], Any], Any, str, str]]:
    """agg-client's options, ``(flag, converter, default, metavar, help)``, from Settings."""
    return [
        (
            "--" + name.replace("_", "-"),
            option.convert,
            default,
            option.metavar,
            option.help,
        )
        for name, default, option in options()
    ]


#: The options whose values are one of a few.
CHOICES = {
    "--" + name.replace("_", "-"): option.choices
    for name, _, option in options()
    if option.choices is not None
}


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
            allowed = (choices or {}).get(flag)
            if allowed is not None and value not in allowed:
                parser.error(
                    f"environment variable {var}: {preview(value)} is not one of "
                    f"{', '.join(allowed)}"
                )
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


#: The signals that stop both commands cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def on_stop_signals(
    stop: Callable[[], None], received: list[int] | None = None
) -> None:
    """Call ``stop`` on SIGINT, SIGTERM and SIGHUP; the handler does nothing else.

    The signal's number is appended to ``received``, for a log line once the
    program has stopped.  Only the main thread can install handlers;
    elsewhere (a test calling ``main`` on a thread) this does nothing.
    """

    def handler(signum: int, frame: object) -> None:
        if received is not None:
            received.append(signum)
        stop()

    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
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
            "exit status: 0 after a clean stop (SIGINT, SIGTERM or SIGHUP "
            "included), 1 if the server cannot be reached within "
            "--connect-timeout, 2 for a usage error, 3 for a state file that "
            "cannot be read or written at start, 4 for an internal error."
        ),
    )
    demo = (
        "--demo",
        bool,
        False,
        "",
        "run a self-contained demonstration on 127.0.0.1 and exit",
    )
    add_env_options(parser, [*client_options(), demo], "AGG_", env, CHOICES)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    return parser


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
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    demo = args.pop("demo")
    try:
        settings = Settings(**args)
    except ValueError as exc:
        parser.error(str(exc))
    _setup_logging(settings.log_level)
    if demo:
        from ..demo.swarm import run_demo

        try:
            return run_demo(
                seed=settings.seed,
                rule=settings.rule,
                temperature=settings.temperature,
                models=settings.models,
            )
        except ValueError as exc:  # --models out of the demo's range
            print(f"agg-client: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (OSError, TimeoutError) as exc:
            print(f"agg-client: the demo failed: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE

    # Stop requests from here on (loading the state file can take a while):
    # the handler only sets a flag, which the component reads once it runs,
    # and a send blocked on a peer that does not read gives up on it.
    stop = threading.Event()
    received: list[int] = []
    on_stop_signals(stop.set, received)

    from ..transport.component import AggregatorComponent, ServerUnreachable
    from ..transport.state_file import StateFileError

    if settings.server is None:  # the original's default: this host's address
        settings.server = this_host_address(
            "agg-client", "give the server with --server or AGG_SERVER"
        )
        if settings.server is None:
            return EXIT_UNREACHABLE
    try:
        component = AggregatorComponent(settings, stop=stop)
    except StateFileError as exc:
        print(f"agg-client: {exc}", file=sys.stderr)
        return EXIT_STATE_FILE
    except (ValueError, TypeError) as exc:  # settings the aggregator refuses
        print(f"agg-client: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        component.run()
    except ServerUnreachable as exc:
        print(f"agg-client: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except Exception:
        logger.exception("agg-client: internal error; stopping")
        return EXIT_INTERNAL
    finally:
        if received:
            logger.info("stopped by %s", signal.Signals(received[0]).name)
    return EXIT_OK
