"""The ``agg-server`` command: a drop-in swergio server without Nagle stalls.

``main(argv)`` parses the options (each also read from an
``AGG_SERVER_<NAME>`` environment variable), sets up logging, installs
SIGINT/SIGTERM/SIGHUP handlers that only ask the server to stop, and runs
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
from ..protocol.routing import MAX_NAME, MAX_ROOM_NAME, MAX_ROOMS_PER_CONN
from ..transport.convert import (
    LOG_LEVELS,
    encoding,
    http_address,
    nonnegative_float,
    port,
    positive_int,
)
from ..transport.server import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_REGISTER_TIMEOUT,
    SERVER_MAX_FRAME_BYTES,
    AggServer,
)
from .common import (
    EXIT_CANNOT_BIND,
    EXIT_OK,
    EXIT_USAGE,
    OptionSpec,
    add_env_options,
    http_extra_installed,
    on_stop_signals,
    setup_logging,
    this_host_address,
    warn_unknown_env,
)

__all__ = ["EXIT_CANNOT_BIND", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

logger = logging.getLogger(__name__)

# (flag, type, default, metavar, help)
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
    (
        "--header-length",
        positive_int,
        10,
        "N",
        "swergio header length (default: %(default)s)",
    ),
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
        "--max-buffered-bytes",
        positive_int,
        DEFAULT_MAX_BUFFERED_BYTES,
        "N",
        "budget for bytes of unfinished frames, all clients together; past it the "
        "client holding most is disconnected (default: %(default)s, 128 MiB)",
    ),
    (
        "--max-queued-bytes",
        positive_int,
        DEFAULT_MAX_QUEUED_BYTES,
        "N",
        "budget for bytes waiting to be sent, all clients together (a frame sent "
        "to many counts once); past it the client with most waiting is "
        "disconnected (default: %(default)s, 256 MiB)",
    ),
    (
        "--max-clients",
        positive_int,
        None,
        "N",
        "most connections at once; at the cap a newcomer closes the oldest "
        "unregistered one, or is turned away (default: the open-files limit, "
        "RLIMIT_NOFILE, less 64)",
    ),
    (
        "--register-timeout",
        nonnegative_float,
        DEFAULT_REGISTER_TIMEOUT,
        "SECONDS",
        "a connection that has not registered by then is closed; 0: never "
        "(default: %(default)s)",
    ),
    (
        "--frame-timeout",
        nonnegative_float,
        DEFAULT_FRAME_TIMEOUT,
        "SECONDS",
        "a connection whose frame takes longer to arrive once it started is "
        "closed; 0: never (default: %(default)s)",
    ),
    (
        "--max-name-chars",
        positive_int,
        MAX_NAME,
        "N",
        "a REGISTER with a longer NAME is dropped (default: %(default)s)",
    ),
    (
        "--max-room-chars",
        positive_int,
        MAX_ROOM_NAME,
        "N",
        "a JOINROOM creating a room with a longer name is dropped "
        "(default: %(default)s)",
    ),
    (
        "--max-rooms-per-client",
        positive_int,
        MAX_ROOMS_PER_CONN,
        "N",
        "a JOINROOM past this many rooms of one connection is dropped "
        "(default: %(default)s)",
    ),
    (
        "--overwrite-sent-by",
        bool,
        False,
        "",
        "set SENT_BY to the sender's registered name even when the message has one, "
        "so a client cannot claim another's name (default: off, as swergio)",
    ),
    (
        "--stats-interval",
        nonnegative_float,
        60.0,
        "SECONDS",
        "one INFO line of counters this often; 0 turns it off (default: %(default)s)",
    ),
    (
        "--http",
        http_address,
        None,
        "[HOST:]PORT",
        "serve /metrics (Prometheus), /healthz, /status and a live page on this "
        "address; HOST defaults to 127.0.0.1; needs the http extra "
        "(default: off)",
    ),
    (
        "--log-level",
        str.upper,
        "INFO",
        "LEVEL",
        f"one of {', '.join(LOG_LEVELS)} (default: %(default)s)",
    ),
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
    recorder = None
    if args.http is not None:
        if not http_extra_installed("agg-server"):
            return EXIT_USAGE
        from ..observe import ServerRecorder

        recorder = ServerRecorder()
    setup_logging(args.log_level)
    host = args.host
    if host is None:  # the original's default: this host's address
        host = this_host_address(
            "agg-server", "give one with --host or AGG_SERVER_HOST"
        )
        if host is None:
            return EXIT_CANNOT_BIND
    endpoint = None
    if recorder is not None:
        from ..observe import HttpEndpoint

        http_host, http_port = args.http
        endpoint = HttpEndpoint(http_host, http_port, recorder.latest, "agg-server")
        try:
            endpoint.start()
        except OSError as exc:
            print(
                f"agg-server: cannot listen on {http_host}:{http_port} for --http: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return EXIT_CANNOT_BIND
        logger.info(
            "serving /metrics, /healthz, /status and the live page on http://%s:%d/",
            http_host,
            endpoint.port,
        )
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
            max_buffered_bytes=args.max_buffered_bytes,
            max_queued_bytes=args.max_queued_bytes,
            max_clients=args.max_clients,
            register_timeout=args.register_timeout,
            frame_timeout=args.frame_timeout,
            max_name_chars=args.max_name_chars,
            max_room_chars=args.max_room_chars,
            max_rooms_per_client=args.max_rooms_per_client,
            recorder=recorder,
        )
    except OSError as exc:
        if endpoint is not None:
            endpoint.stop()
        reason = exc.strerror or str(exc)
        print(
            f"agg-server: cannot listen on {host}:{args.port}: {reason}",
            file=sys.stderr,
        )
        return EXIT_CANNOT_BIND

    on_stop_signals(server.stop)
    try:
        server.start()
    finally:
        if endpoint is not None:
            endpoint.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
