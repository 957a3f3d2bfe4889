"""What both commands share: exit codes, options from the environment, signals, logging.

``agg_client`` and ``agg_server`` each import this module and never each
other, so one command can change without the other moving.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..transport.settings import options
from ..util.text import preview

__all__ = [
    "CHOICES",
    "EXIT_CANNOT_BIND",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_STATE_FILE",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "STOP_SIGNALS",
    "OptionSpec",
    "add_env_options",
    "client_options",
    "http_extra_installed",
    "on_stop_signals",
    "setup_logging",
    "this_host_address",
    "typed",
    "warn_unknown_env",
]

#: A clean stop, a signal included (both commands).
EXIT_OK = 0
#: agg-client: the server cannot be reached within ``--connect-timeout``.
EXIT_UNREACHABLE = 1
#: A usage error: argparse's own status (both commands).
EXIT_USAGE = 2
#: agg-client: the state file cannot be read or written at start.
EXIT_STATE_FILE = 3
#: agg-server: it cannot listen on the address.  Not 1: Python exits 1 after
#: an unexpected traceback, and this is no bug.
EXIT_CANNOT_BIND = 3
#: agg-client: an internal error (a bug, logged with its traceback).
EXIT_INTERNAL = 4

#: ``(flag, converter, default, metavar, help)``; a ``bool`` converter makes a switch.
OptionSpec = tuple[str, Callable[[str], Any], Any, str, str]


def typed(convert: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap ``convert`` so argparse reports ``name`` and the reason.

    Examples
    --------
    >>> typed(int, "port")("x")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: 'x': not a number
    """

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


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def client_options() -> list[OptionSpec]:
    """agg-client's settings as options (agg-server shares some of them)."""
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


#: agg-client's options whose values are one of a few.
CHOICES = {
    "--" + name.replace("_", "-"): option.choices
    for name, _, option in options()
    if option.choices is not None
}


def add_env_options(
    parser: argparse.ArgumentParser,
    options: list[OptionSpec],
    prefix: str,
    env: Mapping[str, str],
    choices: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Add ``options`` to ``parser``, each defaulting to its ``prefix<NAME>`` variable.

    ``--some-name`` reads ``<prefix>SOME_NAME``; an explicit flag wins.  An
    option whose type is ``bool`` is a switch (``store_true``) whose variable
    takes 1/0, true/false, yes/no or on/off.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="demo")
    >>> add_env_options(parser, [("--port", int, 8080, "PORT", "port")], "DEMO_",
    ...                 {"DEMO_PORT": "9000"})
    >>> parser.parse_args([]).port, parser.parse_args(["--port", "1"]).port
    (9000, 1)
    """
    for flag, kind, default, metavar, help_text in options:
        var = prefix + flag[2:].upper().replace("-", "_")
        convert = typed(_boolean if kind is bool else kind, flag[2:])
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


#: The variable named in an option's help by :func:`add_env_options`.
_ENV_IN_HELP = re.compile(r"\[env (\w+)\]$")


def warn_unknown_env(
    parser: argparse.ArgumentParser,
    prefix: str,
    env: Mapping[str, str],
    foreign: tuple[str, str] | None = None,
) -> list[str]:
    """Warn on standard error about ``prefix`` variables that no option reads.

    A misspelt variable (``AGG_PORTT=1``) would otherwise be ignored without
    a word.  Each unknown one gets a line naming the nearest known variable.
    ``foreign`` is ``(other_prefix, other_program)``: variables under
    ``other_prefix`` belong to that program and are no typos of this one's
    (agg-client's ``AGG_`` covers agg-server's ``AGG_SERVER_``), so their
    line only says whose they are.  Returns the lines written.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="demo")
    >>> add_env_options(parser, [("--port", int, 8080, "PORT", "port")], "DEMO_", {})
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()):
    ...     lines = warn_unknown_env(parser, "DEMO_", {"DEMO_PORTT": "1"})
    >>> print(lines[0])  # doctest: +ELLIPSIS
    demo: warning: environment variable DEMO_PORTT ... did you mean DEMO_PORT?
    """
    known = {
        match[1]
        for action in parser._actions
        if action.help and (match := _ENV_IN_HELP.search(action.help))
    }
    prog = parser.prog
    lines = []
    for var in sorted(env):
        if not var.startswith(prefix) or var in known:
            continue
        if foreign is not None and var.startswith(foreign[0]):
            other_prefix, other = foreign
            own = prefix + var[len(other_prefix) :]
            hint = f"; {prog}'s own is {own}" if own in known else ""
            lines.append(
                f"{prog}: note: {var} is for {other} (its variables are "
                f"{other_prefix}*), ignored by {prog}{hint}"
            )
            continue
        near = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else f"see {prog} --help"
        lines.append(
            f"{prog}: warning: environment variable {var} is not one of "
            f"{prog}'s, ignored; {hint}"
        )
    for line in lines:
        print(line, file=sys.stderr)
    return lines


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


def setup_logging(level: str) -> None:
    """Send log lines at ``level`` and above to standard error, once per command."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def http_extra_installed(prog: str) -> bool:
    """True if ``--http`` can be served; else one usage line naming the extra."""
    from ..observe import MissingExtraError, require_http_extra

    try:
        require_http_extra("--http")
    except MissingExtraError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return False
    return True
