"""/healthz and /readyz: the verdicts with a fake clock, then over HTTP, then on a real worker."""

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from stream_app.broker import free_port
from stream_app.health import Health, serve


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


#   time  0   1   2 ... 5   6   7 ... 40
#   loop  b   b   b     b   .   .     .      b: heartbeat
#   agent     [batch.....................    a batch that never ends
#   live  ok  ok  ok    ok  RED (stall_after_s 4: busy 5 s)   RED (loop silent 34 s > 30)
def test_a_stalled_agent_or_loop_turns_healthz_red():
    clock = Clock()
    h = Health(stall_after_s=4.0, loop_stall_s=30.0, clock=clock)
    h.beat()
    assert h.live() == (True, "ok")
    clock.t += 1
    h.batch_started()
    for _ in range(4):
        clock.t += 1
        h.beat()
        assert h.live()[0], h.live()
    clock.t += 1.5
    ok, why = h.live()
    assert not ok and "agent" in why and "stall_after_s" in why
    h.batch_done()
    assert h.live() == (True, "ok")
    clock.t += 31
    ok, why = h.live()
    assert not ok and "event loop" in why


def test_readyz_needs_liveness_and_readiness():
    clock = Clock()
    h = Health(stall_after_s=4.0, clock=clock)
    h.beat()
    assert h.ready() == (False, "starting")
    h.readiness = lambda: (True, "ok: 2 partition(s) assigned, table recovered")
    assert h.ready()[0]
    h.batch_started()
    clock.t += 10
    assert not h.ready()[0]


def test_endpoints_over_http():
    registry = CollectorRegistry()
    Counter("hookstream_test_total", "a counter", registry=registry).inc(3)
    clock = Clock()
    h = Health(stall_after_s=4.0, clock=clock)
    h.beat()
    port = free_port()
    server, _ = serve(port, registry, h, addr="127.0.0.1")
    try:
        assert get(port, "/healthz") == (200, "ok\n")
        assert get(port, "/readyz") == (503, "starting\n")
        h.readiness = lambda: (True, "ok: 4 partition(s) assigned, table recovered")
        assert get(port, "/readyz")[0] == 200
        status, text = get(port, "/metrics")
        assert status == 200 and "hookstream_test_total 3.0" in text
        h.batch_started()
        clock.t += 5
        status, text = get(port, "/healthz")
        assert status == 503 and "agent" in text
        assert get(port, "/readyz")[0] == 503
        assert get(port, "/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
