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


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_live_worker_stalled_on_a_long_batch_turns_healthz_red_then_green(broker, tiny_ckpt, tmp_path):
    """A real worker given a batch that takes longer than ``worker.stall_after_s``.

    40 tracks of 10 s chunks arrive together and the agent waits up to 2 s to fill a
    batch, so one batch (up to 64 chunks, scored together) takes well over the 0.2 s
    allowed: /healthz answers 503 naming the agent while it runs, and 200 again once
    the batch is done; /metrics answers throughout (the probes are read from the HTTP
    thread).
    """
    import threading
    import time

    import numpy as np
    from streaming import PROBE_ERRORS, Worker, send, worker_config

    from stream_app.ingest import chunk_events

    # The agent waits up to 2 s to fill a batch (batch_max_tracks 64 events): with the
    # default 0.01 s a loaded machine sends so slowly that every batch is a few chunks
    # and none takes 0.2 s. Tracks waiting for their next batch must not be closed as
    # idle meanwhile (worker_config's 3 s), so the idle timeout is long.
    settings, config, app_id = worker_config(
        broker, tmp_path, worker={"stall_after_s": 0.2, "batch_wait_s": 2.0}, idle_timeout_s=120)
    w = Worker(settings, config, tiny_ckpt, app_id, tmp_path)
    w.start()
    try:
        w.wait_ready()
        rng = np.random.default_rng(0)
        messages = []
        for i in range(40):
            x = (0.1 * rng.standard_normal(22050 * 30)).astype(np.float32)
            messages += [(f"stall-{i}".encode(), v)
                         for v in chunk_events(f"stall-{i}", x, chunk_seconds=10.0)]
        seen: list[tuple[int, str]] = []
        done = threading.Event()

        def poll():
            while not done.is_set():
                try:
                    seen.append(w.get("/healthz"))
                except PROBE_ERRORS:  # a loaded worker: probe again
                    pass
                time.sleep(0.02)

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        send(settings, messages)
        deadline = time.monotonic() + 120
        while not any(code == 503 for code, _ in seen):
            assert time.monotonic() < deadline, (
                f"{len(seen)} probe(s) answered, none 503; the poller alive: {t.is_alive()}\n"
                f"{w.log_tail()}")
            time.sleep(0.05)
        red = next(body for code, body in seen if code == 503)
        assert "agent: one batch has taken" in red and "worker.stall_after_s 0.2 s" in red, red
        while (scored := w.metrics()[("hookstream_chunks_total", frozenset())]) < len(messages):
            assert time.monotonic() < deadline, (
                f"{scored:.0f} of {len(messages)} chunks scored\n{w.log_tail()}")
            time.sleep(0.1)
        while w.probe("/healthz") != 200:  # the last batch done: green again
            assert time.monotonic() < deadline, w.log_tail()
            time.sleep(0.05)
        done.set()
        t.join()
    finally:
        w.stop()
