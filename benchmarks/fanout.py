#!/usr/bin/env python3
"""A room's fan-out: one sender, N members, agg-server against swergio.Server.

    python benchmarks/fanout.py            # the table alone, about a minute
    python benchmarks/fanout.py --smoke    # a few seconds

``benchmarks/run.py`` runs the same measurement for its results file.  One
sender writes ``DATA/FORWARD`` frames of about 200 bytes to a room of N
members, held by two reader processes (N/2 sockets each, read with
``selectors``).  *burst*: all frames in one write; *paced*: one frame per
write at a fixed rate, as an environment or an evolution step addresses a
room of models.  The figure is the server's CPU time (``/proc/PID/stat``)
per delivery (a frame that reached one member), agg-server's divided by the
stock server's, both measured in the same run.  Nothing here asserts
anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _net import HOST, free_port, wait_port

HERE = Path(__file__).resolve().parent
HEADER = 10
ROOM = "fan"

STOCK_SERVER = (
    "import sys; from swergio import Server; "
    "Server('127.0.0.1', int(sys.argv[1]), 'utf-8', 10).start()"
)


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return f"{len(body):<{HEADER}}".encode() + body


def _join(port: int, name: str) -> socket.socket:
    s = socket.create_connection((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(
        _frame({"ID": "r", "TYPE": "COMMAND/REGISTER", "NAME": name, "TO_ROOM": "_command"})
        + _frame({"ID": "j", "TYPE": "COMMAND/JOINROOM", "ROOM": ROOM, "TO_ROOM": "_command"})
    )  # fmt: skip
    return s


def role_reader(
    port: int, first: int, count: int, expected: int, timeout: float
) -> None:
    """Hold ``count`` members; print how many frames each got, once all or ``timeout``."""
    sel = selectors.DefaultSelector()
    socks = [_join(port, f"member-{first + i:03d}") for i in range(count)]
    state = {}
    for s in socks:
        s.setblocking(False)
        state[s] = [b"", 0]  # unparsed bytes, frames seen
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    cpu0 = time.process_time()
    deadline = time.monotonic() + timeout
    done = 0
    while done < count and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            st = state[s]
            try:
                data = s.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(s)
                done += 1
                continue
            buf = st[0] + data
            i = 0
            while len(buf) - i >= HEADER:
                n = int(buf[i : i + HEADER])
                if len(buf) - i - HEADER < n:
                    break
                i += HEADER + n
                st[1] += 1
            st[0] = buf[i:]
            if st[1] == expected:
                done += 1
    cpu = time.process_time() - cpu0
    print(
        json.dumps({"counts": [st[1] for st in state.values()], "cpu_s": cpu}),
        flush=True,
    )
    for s in socks:
        s.close()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def measure(kind: str, members: int, frames: int, rate: float | None) -> dict:
    """One run: server ``kind`` ('agg' or 'stock'); ``rate`` None for a burst."""
    port = free_port()
    if kind == "stock":
        cmd = [sys.executable, "-c", STOCK_SERVER, str(port)]
    else:
        cmd = [sys.executable, "-m", "ensemble_agg.server_cli", "--host", HOST,
               "--port", str(port), "--stats-interval", "0"]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    readers: list[subprocess.Popen] = []
    sender = None
    try:
        wait_port(port)
        half = members // 2
        timeout = 60.0 + (frames / rate if rate else 0.0)
        for first, count in ((0, half), (half, members - half)):
            readers.append(
                subprocess.Popen(
                    [sys.executable, __file__, "_reader", str(port), str(first),
                     str(count), str(frames), str(timeout)],
                    stdout=subprocess.PIPE, text=True,
                )
            )  # fmt: skip
        for r in readers:
            assert r.stdout is not None
            if r.stdout.readline().strip() != "ready":
                raise RuntimeError("a reader did not start")
        sender = _join(port, "sender")
        time.sleep(1.0)  # joins take effect asynchronously on the stock server
        pad = "x" * 120
        data = [
            _frame({"ID": f"{k:032x}", "TYPE": "DATA/FORWARD", "TO_ROOM": ROOM,
                    "STEP": k, "PAD": pad})
            for k in range(frames)
        ]  # fmt: skip
        cpu0 = _cpu(server.pid)
        if rate is None:
            sender.sendall(b"".join(data))
        else:
            start = time.perf_counter()
            for k, d in enumerate(data):
                delay = start + k / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sender.sendall(d)
        counts: list[int] = []
        readers_cpu = 0.0
        for r in readers:
            out, _ = r.communicate(timeout=timeout + 30)
            report = json.loads(out.strip().splitlines()[-1])
            counts += report["counts"]
            readers_cpu += report["cpu_s"]
        cpu = _cpu(server.pid) - cpu0
    finally:
        if sender is not None:
            sender.close()
        for r in readers:
            _stop(r)
        _stop(server)
    deliveries = sum(counts)
    return {
        "cpu_s": cpu,
        "deliveries": deliveries,
        "expected": frames * members,
        "us_per_delivery": 1e6 * cpu / deliveries if deliveries else None,
        # The readers' CPU counts too: where a stock server's frame body
        # waits for an ACK (Nagle), the reader's ACK sends it, on its CPU.
        "readers_us_per_delivery": 1e6 * readers_cpu / deliveries
        if deliveries
        else None,
    }


#: (label, members, frames, frames per second or None for one burst)
CASES = {
    "full": [
        ("burst", 20, 3000, None), ("burst", 100, 3000, None), ("burst", 400, 3000, None),
        ("paced", 20, 1000, 1000.0), ("paced", 100, 600, 300.0), ("paced", 400, 300, 300.0),
    ],
    "quick": [
        ("burst", 100, 1000, None), ("burst", 400, 1000, None),
        ("paced", 20, 1000, 1000.0), ("paced", 100, 600, 300.0), ("paced", 400, 300, 300.0),
    ],
    "smoke": [("burst", 6, 50, None), ("paced", 6, 20, 200.0)],
}  # fmt: skip


def run_cases(mode: str, repeats: int = 1) -> list[dict]:
    """Every case, agg-server and the stock server alternately; medians of ``repeats``."""
    results = []
    for label, members, frames, rate in CASES[mode]:
        ratios, agg_us, stock_us, agg_readers, stock_readers = [], [], [], [], []
        for _ in range(repeats):
            stock = measure("stock", members, frames, rate)
            agg = measure("agg", members, frames, rate)
            if agg["us_per_delivery"] and stock["us_per_delivery"]:
                agg_us.append(agg["us_per_delivery"])
                stock_us.append(stock["us_per_delivery"])
                ratios.append(agg["us_per_delivery"] / stock["us_per_delivery"])
                agg_readers.append(agg["readers_us_per_delivery"])
                stock_readers.append(stock["readers_us_per_delivery"])
            incomplete = [
                k for k, r in (("agg", agg), ("stock", stock))
                if r["deliveries"] < r["expected"]
            ]  # fmt: skip
        results.append(
            {
                "label": label,
                "members": members,
                "frames": frames,
                "rate": rate,
                "agg_us": statistics.median(agg_us) if agg_us else None,
                "stock_us": statistics.median(stock_us) if stock_us else None,
                "ratio": statistics.median(ratios) if ratios else None,
                "ratios": ratios,
                "agg_readers_us": statistics.median(agg_readers)
                if agg_readers
                else None,
                "stock_readers_us": (
                    statistics.median(stock_readers) if stock_readers else None
                ),
                "incomplete": incomplete,
            }
        )
    return results


def describe(case: dict) -> str:
    how = (
        f"{case['frames']:,} frames in one burst"
        if case["rate"] is None
        else f"one frame per write, {case['rate']:.0f}/s"
    )
    return f"fan-out {case['label']}, {case['members']} members ({how})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_reader":
        port, first, count, expected = map(int, argv[1:5])
        role_reader(port, first, count, expected, float(argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer, shorter cases")
    mode.add_argument("--smoke", action="store_true", help="seconds; means little")
    parser.add_argument("--repeats", type=int, default=1, help="runs per case")
    args = parser.parse_args(argv)
    kind = "smoke" if args.smoke else "quick" if args.quick else "full"
    for case in run_cases(kind, args.repeats):
        ratios = ", ".join(f"{r:.2f}" for r in case["ratios"])
        print(
            f"{describe(case):60} stock {case['stock_us'] or 0:6.2f} us  "
            f"agg {case['agg_us'] or 0:6.2f} us  ratio {case['ratio'] or 0:.2f} "
            f"[{ratios}]; readers {case['stock_readers_us'] or 0:.2f} / "
            f"{case['agg_readers_us'] or 0:.2f} us"
            + (f" INCOMPLETE {case['incomplete']}" if case["incomplete"] else ""),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
