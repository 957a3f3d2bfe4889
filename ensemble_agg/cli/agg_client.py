"""The ``agg-client`` command: the swergio aggregator component.

``main(argv)`` parses the options (each also read from an ``AGG_<NAME>``
environment variable), sets up logging, installs SIGINT/SIGTERM handlers that
only set a stop flag, and runs :class:`~ensemble_agg.transport.component.AggregatorComponent`.
Exit status: 0 after a clean stop or a signal (SIGINT, SIGTERM, SIGHUP), or
when the reader of ``--demo``'s output closes it (``| head``), 1 if
the server cannot be reached within ``--connect-timeout``, 2 for a usage
error, 3 for a state file that cannot be read or written at start, 4 for an
internal error (a bug: logged with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

from .. import __version__
from ..transport.settings import Settings
from .common import (
    CHOICES,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_STATE_FILE,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_env_options,
    client_options,
    http_extra_installed,
    on_stop_signals,
    setup_logging,
    this_host_address,
    warn_unknown_env,
)

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_STATE_FILE",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

logger = logging.getLogger(__name__)


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
            "included, or --demo's output closed by its reader, as by "
            "'| head'), 1 if the server cannot be reached within "
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


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's buffer)
        pass
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agg-client`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status (see the module docstring).
    """
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    warn_unknown_env(parser, "AGG_", os.environ, foreign=("AGG_SERVER_", "agg-server"))
    demo = args.pop("demo")
    try:
        settings = Settings(**args)
    except ValueError as exc:
        parser.error(str(exc))
    if settings.http is not None and not http_extra_installed("agg-client"):
        return EXIT_USAGE
    setup_logging(settings.log_level)
    if demo:
        from ..demo.swarm import run_demo

        try:
            return run_demo(
                seed=settings.seed,
                rule=settings.rule,
                temperature=settings.temperature,
                models=settings.models,
                http=settings.http,
            )
        except ValueError as exc:  # --models out of the demo's range
            print(f"agg-client: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except BrokenPipeError:
            # The reader closed standard output (``agg-client --demo | head``):
            # it has read all it wants, so this is a clean stop.  Point stdout
            # at /dev/null so that the interpreter's final flush does not fail
            # again with "Exception ignored ... BrokenPipeError".
            _silence_stdout()
            return EXIT_OK
        except (OSError, TimeoutError) as exc:
            print(f"agg-client: the demo failed: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE

    # Stop requests from here on (loading the state file can take a while):
    # the handler only sets a flag, which the component reads once it runs,
    # and a send blocked on a peer that does not read gives up on it.
    stop = threading.Event()
    received: list[int] = []
    on_stop_signals(stop.set, received)

    from ..errors import ServerUnreachable, StateFileError
    from ..transport.component import AggregatorComponent, HttpBindError

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
    except HttpBindError as exc:
        print(f"agg-client: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
