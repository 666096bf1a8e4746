"""Webhook delivery through the on-disk outbox against a real http.server on 127.0.0.1.

The receiver keeps the idempotency keys it accepted; the tests check that every alert reaches its
accepted set exactly once, including across a receiver that is down and comes back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sensor.config import parse_config
from sensor.outputs.deliver import Deliverer, EveFileSink, WebhookAdapter
from sensor.outputs.outbox import Outbox
from sensor.outputs.webhook import OK, REJECTED, RETRY, WebhookSink
from sensor.records import Alert, FlowRef

SECRET = "hook-secret"
FLOW = FlowRef(7, "1:c", "tcp", "10.0.0.5", 40000, "10.0.0.9", 502)


def alert(i: int) -> Alert:
    return Alert(
        ts=1_700_000_000.0 + i,
        flow=FLOW,
        rule="1:9100001:1",
        signature=f"a{i}",
        category="signature",
        severity=2,
        signature_id=9100001,
    )


class Receiver:
    """An HTTP endpoint that checks signatures and keeps the idempotency keys it accepted."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.accepted: Counter[str] = Counter()
        self.requests = 0
        self.bad_signatures = 0
        self.status = status
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.entered.set()
                receiver.hold.wait(10)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                stamp = self.headers.get("X-Zonewarden-Timestamp", "")
                want = (
                    "sha256="
                    + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
                )
                if not hmac.compare_digest(want, self.headers.get("X-Zonewarden-Signature", "")):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.status == 200:
                    key = self.headers["Idempotency-Key"]
                    assert json.loads(body)["zonewarden"]["id"] == key
                    receiver.accepted[key] += 1
                    self.send_response(200)
                else:
                    self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _deliverer(url: str, tmp_path: Path, max_rows: int = 1000) -> Deliverer:
    sink = WebhookAdapter(WebhookSink("hook", url, SECRET, timeout=2))
    return Deliverer([sink], Outbox(tmp_path / "outbox.db", max_rows), retry_base=0.02, retry_max=0.1)


def _wait(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_post_signed_with_idempotency_key(receiver: Receiver) -> None:
    sink = WebhookSink("hook", f"http://127.0.0.1:{receiver.port}/h", SECRET)
    a = alert(1)
    assert sink.post({"zonewarden": {"id": a.alert_id}}, a.alert_id)[0] == OK
    assert receiver.accepted == Counter({a.alert_id: 1}) and receiver.bad_signatures == 0


def test_sink_down_then_back_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    port = _free_port()
    d = _deliverer(f"http://127.0.0.1:{port}/h", tmp_path)
    alerts = [alert(i) for i in range(20)]
    d.start()
    receiver: Receiver | None = None
    try:
        d.submit_many(alerts[:10])
        _wait(lambda: d.counters["retries.hook"] >= 3)  # nobody listening: retried with backoff
        assert d.outbox.pending() == 10
        d.submit_many(alerts[5:])  # 5 already queued: the outbox keeps one row per alert
        receiver = Receiver(port)
        _wait(lambda: d.outbox.pending() == 0)
        d.submit_many(alerts[:3])  # delivered before: remembered, not sent again
        time.sleep(0.2)
    finally:
        d.close(drain_timeout=2)
        if receiver is not None:
            receiver.stop()
    assert receiver is not None
    assert set(receiver.accepted) == {a.alert_id for a in alerts}
    assert set(receiver.accepted.values()) == {1}
    section = d.section()
    assert section["outbox"]["delivered"] == 20 and section["outbox"]["waiting"] == 0
    assert section["counters"]["delivered.hook"] == 20


def test_slow_sink_never_blocks_submit(receiver: Receiver, tmp_path: Path) -> None:
    receiver.hold.clear()  # the receiver stalls inside its handler until released
    d = _deliverer(f"http://127.0.0.1:{receiver.port}/h", tmp_path)
    d.start()
    try:
        d.submit(alert(1))
        assert receiver.entered.wait(10)
        d.submit_many([alert(i) for i in range(2, 50)])  # returns while the sink is still stuck
        assert not receiver.hold.is_set() and d.outbox.pending() >= 48
        receiver.hold.set()
        _wait(lambda: d.outbox.pending() == 0)
    finally:
        d.close(drain_timeout=2)
    assert len(receiver.accepted) == 49


def test_outbox_is_capped_oldest_dropped_and_counted(tmp_path: Path) -> None:
    d = _deliverer(f"http://127.0.0.1:{_free_port()}/h", tmp_path, max_rows=5)
    alerts = [alert(i) for i in range(8)]
    d.submit_many(alerts)  # no thread running: nothing is sent
    counters = d.outbox.counters()
    assert (counters["waiting"], counters["dropped"], counters["queued"]) == (5, 3, 8)
    kept = {row.alert_id for row in d.outbox.due("hook", time.time() + 1, 100)}
    assert kept == {a.alert_id for a in alerts[3:]}
    d.close(drain_timeout=0)


def test_refused_for_good_is_dead_not_retried(tmp_path: Path) -> None:
    receiver = Receiver(status=400)
    d = _deliverer(f"http://127.0.0.1:{receiver.port}/h", tmp_path)
    try:
        d.submit(alert(1))
        d.run_once()
        d.run_once()
    finally:
        receiver.stop()
        d.close(drain_timeout=0)
    assert receiver.requests == 1
    assert d.section()["outbox"]["dead"] == 1 and d.counters["rejected.hook"] == 1


@pytest.mark.parametrize(("status", "outcome"), [(500, RETRY), (429, RETRY), (404, REJECTED), (409, OK)])
def test_status_outcomes(status: int, outcome: str) -> None:
    receiver = Receiver(status=status)
    try:
        sink = WebhookSink("hook", f"http://127.0.0.1:{receiver.port}/h", SECRET)
        assert sink.post({}, "k")[0] == outcome
    finally:
        receiver.stop()


def test_eve_file_sink_and_deliverer_from_config(tmp_path: Path, receiver: Receiver) -> None:
    cfg = parse_config(
        {
            "outputs": {
                "allow_loopback": True,
                "outbox": "box.db",
                "sinks": [
                    {
                        "name": "hook",
                        "type": "webhook",
                        "url": f"http://127.0.0.1:{receiver.port}/h",
                        "secret": SECRET,
                    },
                    {"name": "file", "type": "eve", "path": "alerts.json"},
                ],
            }
        },
        base=tmp_path,
    )
    d = Deliverer.from_config(cfg.outputs)
    assert isinstance(d.sinks["file"], EveFileSink)
    d.start()
    d.submit_many([alert(1), alert(2)])
    d.close(drain_timeout=5)
    lines = [json.loads(x) for x in (tmp_path / "alerts.json").read_text().splitlines()]
    assert [x["alert"]["signature"] for x in lines] == ["a1", "a2"]
    assert len(receiver.accepted) == 2
