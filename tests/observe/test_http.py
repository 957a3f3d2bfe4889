"""HttpEndpoint on 127.0.0.1 with real sockets: answers, limits, hostile clients."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from ensemble_agg.observe.http import HttpEndpoint, parse_address
from ensemble_agg.observe.recorders import ClientRecorder, ServerRecorder

from ..swergio_helpers import wait_for

parser = pytest.importorskip("prometheus_client.parser")

HOST = "127.0.0.1"


@pytest.fixture
def recorder():
    rec = ClientRecorder()
    rec.connection("connected")
    rec.submission("a", 0.0)
    rec.submission("b", 0.01)
    rec.round_done(0.01, 1, {"a": 0.6, "b": 0.4})
    rec.publish(0.5)
    return rec


@pytest.fixture
def serve():
    started: list[HttpEndpoint] = []

    def start(snapshot, kind="agg-client", **limits) -> HttpEndpoint:
        endpoint = HttpEndpoint(HOST, 0, snapshot, kind, **limits).start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


def get(endpoint: HttpEndpoint, path: str, method: str = "GET"):
    conn = http.client.HTTPConnection(HOST, endpoint.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def raw(endpoint: HttpEndpoint, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data`, read until the endpoint closes (bounded by `timeout`)."""
    with socket.create_connection((HOST, endpoint.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the endpoint has closed `sock` (EOF or reset), without blocking."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


class TestAnswers:
    def test_healthz_200_then_503(self, serve, recorder):
        endpoint = serve(recorder.latest)
        status, headers, body = get(endpoint, "/healthz")
        assert (status, body) == (200, b"ok\n")
        assert headers["Content-Type"].startswith("text/plain")
        recorder.connection("disconnected")
        recorder.publish(1.0)
        status, _, body = get(endpoint, "/healthz")
        assert (status, body) == (503, b"not connected (disconnected)\n")

    def test_healthz_503_before_the_first_snapshot(self, serve):
        status, _, body = get(serve(lambda: None), "/healthz")
        assert status == 503 and body.count(b"\n") == 1 and b"starting" in body

    def test_server_health(self, serve):
        rec = ServerRecorder()
        rec.publish(0.0)
        endpoint = serve(rec.latest, "agg-server")
        assert get(endpoint, "/healthz")[:1] == (200,)
        rec.set_accepting(False)
        rec.publish(1.0)
        assert get(endpoint, "/healthz")[0] == 503

    def test_status_is_the_snapshot_as_json(self, serve, recorder):
        status, headers, body = get(serve(recorder.latest), "/status?x=1")
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body) == recorder.latest()

    def test_metrics_parse(self, serve, recorder):
        status, headers, body = get(serve(recorder.latest), "/metrics")
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        names = {
            s.name
            for fam in parser.text_string_to_metric_families(body.decode())
            for s in fam.samples
        }
        assert {
            "ensemble_agg_rounds_total",
            "ensemble_agg_round_latency_seconds_count",
        } <= names

    def test_page_and_its_policy(self, serve, recorder):
        status, headers, body = get(serve(recorder.latest), "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "script-src 'sha256-" in headers["Content-Security-Policy"]
        assert b"http://" not in body and b"https://" not in body  # nothing fetched

    def test_head_has_headers_only(self, serve, recorder):
        endpoint = serve(recorder.latest)
        _, get_headers, body = get(endpoint, "/status")
        status, headers, head_body = get(endpoint, "/status", "HEAD")
        assert status == 200 and head_body == b""
        assert (
            headers["Content-Length"] == get_headers["Content-Length"] == str(len(body))
        )

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
    def test_other_methods_get_405(self, serve, recorder, method):
        answer = raw(
            serve(recorder.latest),
            f"{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode(),
        )
        assert answer.startswith(b"HTTP/1.1 405 ")
        assert b"\r\nAllow: GET, HEAD\r\n" in answer

    def test_unknown_path_404(self, serve, recorder):
        assert get(serve(recorder.latest), "/admin")[0] == 404

    def test_keep_alive_and_pipelining(self, serve, recorder):
        endpoint = serve(recorder.latest)
        conn = http.client.HTTPConnection(HOST, endpoint.port, timeout=10)
        for path in ("/healthz", "/status", "/healthz"):
            conn.request("GET", path)
            assert conn.getresponse().read()
        conn.close()
        answer = raw(
            endpoint,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        assert answer.count(b"HTTP/1.1 200 OK") == 2

    @pytest.mark.parametrize(
        "request_bytes, status",
        [
            (b"GARBAGE\r\n\r\n", b"400"),
            (b"GET / HTTP/2.0\r\n\r\n", b"505"),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"400"),
        ],
    )
    def test_malformed_requests(self, serve, recorder, request_bytes, status):
        answer = raw(serve(recorder.latest), request_bytes)
        assert answer.startswith(b"HTTP/1.1 " + status)

    def test_binds_only_the_given_host(self, serve, recorder):
        endpoint = serve(recorder.latest)
        assert endpoint._listener.getsockname()[0] == HOST

    def test_address_in_use_fails_at_start(self, serve, recorder):
        endpoint = serve(recorder.latest)
        with pytest.raises(OSError):
            HttpEndpoint(HOST, endpoint.port, recorder.latest, "agg-client").start()

    def test_a_failing_snapshot_is_a_500_not_a_dead_thread(self, serve, recorder):
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("boom")
            return recorder.latest()

        endpoint = serve(flaky)
        assert get(endpoint, "/status")[0] == 500
        assert get(endpoint, "/status")[0] == 200


class TestHostileClients:
    def test_oversize_headers_get_431_and_close(self, serve, recorder):
        endpoint = serve(recorder.latest)
        junk = b"GET / HTTP/1.1\r\n" + b"X-Junk: " + b"a" * 20000 + b"\r\n\r\n"
        answer = raw(endpoint, junk)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"Connection: close" in answer

    def test_slowloris_is_closed_by_the_deadline_others_served(self, serve, recorder):
        endpoint = serve(recorder.latest, request_timeout=1.5)
        slow = socket.create_connection((HOST, endpoint.port), timeout=10)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        stop = threading.Event()

        def trickle():
            while not stop.wait(0.3):
                try:
                    slow.send(b"a")
                except OSError:
                    return

        dripper = threading.Thread(target=trickle, daemon=True)
        dripper.start()
        try:
            # served at once while the slow request is open
            assert get(endpoint, "/healthz")[0] == 200
            # the trickle never ends its headers: only the deadline closes it
            wait_for(lambda: closed_by_peer(slow), 15, "the slow client to be closed")
            assert get(endpoint, "/healthz")[0] == 200
        finally:
            stop.set()
            dripper.join(5)
            slow.close()

    def test_silent_connection_is_closed_by_the_deadline(self, serve, recorder):
        endpoint = serve(recorder.latest, request_timeout=1.0)
        with socket.create_connection((HOST, endpoint.port), timeout=10) as s:
            wait_for(lambda: closed_by_peer(s), 15, "the silent client to be closed")

    def test_200_idle_connections_cannot_lock_out_a_health_check(self, serve, recorder):
        endpoint = serve(recorder.latest, max_connections=32)
        crowd = []
        try:
            for _ in range(200):
                crowd.append(
                    socket.create_connection((HOST, endpoint.port), timeout=10)
                )
            status, _, body = get(endpoint, "/healthz")
            assert (status, body) == (200, b"ok\n")
            wait_for(lambda: len(endpoint._conns) <= 32, 10, "the cap on connections")
            assert get(endpoint, "/healthz")[0] == 200
        finally:
            for s in crowd:
                s.close()

    def test_a_stuck_reader_does_not_block_others(self, serve):
        # a large answer that neither socket buffer can hold
        big = {
            "kind": "agg-client",
            "health": {"ok": True, "reason": "x"},
            "blob": "y" * 8_000_000,
        }
        endpoint = serve(lambda: big, write_timeout=2.0)
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.settimeout(10)
        stuck.connect((HOST, endpoint.port))
        try:
            stuck.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(
                lambda: any(c.out for c in list(endpoint._conns.values())),
                10,
                "the endpoint to be writing to the stuck reader",
            )
            assert get(endpoint, "/healthz")[0] == 200
            # no progress for write_timeout: the stuck reader is cut off (seen
            # from the endpoint's side: reading here would unstick it)
            wait_for(lambda: not endpoint._conns, 20, "the stuck reader to be closed")
        finally:
            stuck.close()

    def test_stop_joins_with_clients_still_connected(self, recorder):
        endpoint = HttpEndpoint(HOST, 0, recorder.latest, "agg-client").start()
        idle = socket.create_connection((HOST, endpoint.port), timeout=10)
        half = socket.create_connection((HOST, endpoint.port), timeout=10)
        half.sendall(b"GET /sta")
        try:
            assert get(endpoint, "/healthz")[0] == 200
            thread = endpoint._thread
            started = time.monotonic()
            endpoint.stop()
            assert thread is not None and not thread.is_alive()
            assert time.monotonic() - started < 2.5
            wait_for(lambda: closed_by_peer(idle), 5, "the idle client to be closed")
        finally:
            idle.close()
            half.close()


class TestParseAddress:
    @pytest.mark.parametrize(
        "text, expected",
        [
            ("9100", ("127.0.0.1", 9100)),
            (":9100", ("127.0.0.1", 9100)),
            ("0", ("127.0.0.1", 0)),
            ("0.0.0.0:80", ("0.0.0.0", 80)),
            ("localhost:65535", ("localhost", 65535)),
            ("[::1]:9100", ("::1", 9100)),
            (" 9100 ", ("127.0.0.1", 9100)),
        ],
    )
    def test_valid(self, text, expected):
        assert parse_address(text) == expected

    @pytest.mark.parametrize(
        "text, why",
        [
            ("", "the port must be a number"),
            ("host:", "the port must be a number"),
            ("65536", "the port must be a number from 0 to 65535"),
            ("-1", "the port must be a number"),
            ("１２", "the port must be a number"),
            ("::1:9100", "IPv6 address must be in brackets"),
            ("[::1]", "IPv6 host is written"),
            ("a b:9", "space"),
        ],
    )
    def test_invalid_names_the_option_and_the_form(self, text, why):
        with pytest.raises(ValueError) as info:
            parse_address(text, "--http")
        message = str(info.value)
        assert message.startswith("--http expects [HOST:]PORT")
        assert why.split()[-1] in message


def test_a_long_pipeline_on_one_connection_leaves_the_endpoint_serving(serve, recorder):
    # Found by an outside review: each pipelined request used to add a level
    # of recursion, and about 1,000 in one write stopped the endpoint for good.
    endpoint = serve(recorder.latest)
    with socket.create_connection((HOST, endpoint.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n" * 3000)
        answers, got, deadline = 0, b"", time.monotonic() + 60
        while answers < 3000 and time.monotonic() < deadline:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
            answers = got.count(b"HTTP/1.1 200 ")
    assert answers == 3000
    assert get(endpoint, "/healthz")[0] == 200


def test_a_lone_surrogate_in_a_peer_id_cannot_break_the_metrics(serve):
    rec = ClientRecorder()
    rec.connection("connected")
    rec.submission("s\ud800", 0.0)  # valid JSON on the wire: "s\\ud800"
    rec.round_done(0.01, 0, {"s\ud800": 1.0})
    rec.publish(0.5)
    endpoint = serve(rec.latest)
    status, _, body = get(endpoint, "/metrics")
    assert status == 200
    families = list(parser.text_string_to_metric_families(body.decode()))
    models = {
        s.labels.get("model")
        for f in families
        for s in f.samples
        if "model" in s.labels
    }
    assert "s\\ud800" in models
    assert json.loads(get(endpoint, "/status")[2])
