"""The ``agg-server`` command: a drop-in swergio server without Nagle stalls.

``main(argv)`` parses the options (each also read from an
``AGG_SERVER_<NAME>`` environment variable), sets up logging, installs
SIGINT/SIGTERM handlers that only ask the server to stop, and runs
:class:`~ensemble_agg.transport.server.AggServer` until then.
Exit status: 0 after a clean stop or a signal, 2 for a usage error, 3 if it
cannot listen on the address (in use, not this host's, not resolvable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..transport.server import SERVER_MAX_FRAME_BYTES, AggServer
from ..transport.settings import LOG_LEVELS, encoding, port, positive_int
from .common import (
    EXIT_CANNOT_BIND,
    EXIT_OK,
    EXIT_USAGE,
    OptionSpec,
    add_env_options,
    client_options,
    on_stop_signals,
    setup_logging,
    this_host_address,
    warn_unknown_env,
)

__all__ = ["EXIT_CANNOT_BIND", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

logger = logging.getLogger(__name__)

# (flag, type, default, metavar, help); some are agg-client's settings.
_SHARED = {option[0]: option for option in client_options()}
OPTIONS: list[OptionSpec] = [
    (
        "--host",
        str,
        None,
        "HOST",
        "address to listen on (default: this host's address, as the original server)",
    ),
    ("--port", port, 8080, "PORT", "port to listen on (default: %(default)s)"),
    (
        "--format",
        encoding,
        "utf-8",
        "ENC",
        "swergio message encoding (default: %(default)s)",
    ),
    _SHARED["--header-length"],
    (
        "--max-frame-bytes",
        positive_int,
        SERVER_MAX_FRAME_BYTES,
        "N",
        "frames with a longer body are skipped unread, the stream stays in step "
        "(default: %(default)s, 64 MiB)",
    ),
    (
        "--max-queue-bytes",
        positive_int,
        None,
        "N",
        "a client with more unsent bytes than this is disconnected: it stopped "
        "reading (default: twice --max-frame-bytes)",
    ),
    (
        "--overwrite-sent-by",
        bool,
        False,
        "",
        "set SENT_BY to the sender's registered name even when the message has one, "
        "so a client cannot claim another's name (default: off, as swergio)",
    ),
    _SHARED["--stats-interval"],
    _SHARED["--log-level"],
]


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """Return the ``agg-server`` argument parser, defaults taken from ``environ``.

    Each option ``--some-name`` can be set by ``AGG_SERVER_SOME_NAME``; an
    explicit flag wins over the variable.
    """
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="agg-server",
        description=(
            "ensemble-agg's swergio server: a drop-in replacement for "
            "swergio.Server(SERVER, PORT, FORMAT, HEADER_LENGTH).start() with the "
            "same routing for stock clients, no Nagle stall per hop, and no "
            "client able to stall the others.  Every option can also be set by "
            "an environment variable AGG_SERVER_<NAME>, e.g. AGG_SERVER_PORT=9000."
        ),
        epilog=(
            "exit status: 0 after a clean stop (SIGINT/SIGTERM included), 2 for a "
            "usage error, 3 if it cannot listen on the address."
        ),
    )
    add_env_options(parser, OPTIONS, "AGG_SERVER_", env, {"--log-level": LOG_LEVELS})
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agg-server`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status (see the module docstring).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    warn_unknown_env(parser, "AGG_SERVER_", os.environ)
    setup_logging(args.log_level)
    host = args.host
    if host is None:  # the original's default: this host's address
        host = this_host_address(
            "agg-server", "give one with --host or AGG_SERVER_HOST"
        )
        if host is None:
            return EXIT_CANNOT_BIND
    try:
        server = AggServer(
            host,
            args.port,
            args.format,
            args.header_length,
            max_frame_bytes=args.max_frame_bytes,
            max_queue_bytes=args.max_queue_bytes,
            stats_interval=args.stats_interval,
            overwrite_sent_by=args.overwrite_sent_by,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(
            f"agg-server: cannot listen on {host}:{args.port}: {reason}",
            file=sys.stderr,
        )
        return EXIT_CANNOT_BIND

    on_stop_signals(server.stop)
    server.start()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
