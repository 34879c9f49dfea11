"""SIGTERM stops a worker within 10 s whatever it is doing: idle, busy, broker unreachable.

Each case prints the measured time (``pytest -s`` shows it).
"""

import os
import signal
import time
import uuid

import pytest

from models.examples import synth_song
from stream_app.broker import EmbeddedBroker
from stream_app.ingest import chunk_events
from stream_app.subscribe import iter_highlights
from streaming import Worker, send, worker_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LIMIT_S = 10.0


def sigterm(w: Worker) -> tuple[float, int | None]:
    started = time.monotonic()
    os.killpg(w.proc.pid, signal.SIGTERM)
    try:
        rc = w.proc.wait(LIMIT_S + 20)
    except Exception:
        rc = None
    return time.monotonic() - started, rc


def start(broker, tiny_ckpt, work) -> Worker:
    settings, config, app_id = worker_config(broker, work)
    w = Worker(settings, config, tiny_ckpt, app_id, work)
    w.start()
    w.wait_ready()
    return w


def test_sigterm_when_idle(broker, tiny_ckpt, tmp_path):
    w = start(broker, tiny_ckpt, tmp_path)
    try:
        took, rc = sigterm(w)
    finally:
        w.stop()
    print(f"\nshutdown, idle: {took:.1f} s (exit {rc})")
    assert rc == 0 and took < LIMIT_S, w.log_tail()


def test_sigterm_when_busy_commits_what_was_processed(broker, tiny_ckpt, tmp_path):
    w = start(broker, tiny_ckpt, tmp_path)
    ids = [f"busy-{uuid.uuid4().hex[:6]}-{i}" for i in range(8)]
    x = synth_song(seed=5, bar_s=0.75)[0]  # 39 s: 20 chunks each, 160 in all
    try:
        send(w.settings, [(tid.encode(), v) for tid in ids for v in chunk_events(tid, x, chunk_seconds=2.0)])
        deadline = time.monotonic() + 60
        while w.metrics()[("hookstream_chunks_total", frozenset())] < 10:
            assert time.monotonic() < deadline, w.log_tail()
            time.sleep(0.1)
        scored = w.metrics()[("hookstream_chunks_total", frozenset())]
        took, rc = sigterm(w)
        print(f"\nshutdown, busy ({scored:.0f} of 160 chunks scored): {took:.1f} s (exit {rc})")
        assert rc == 0 and took < LIMIT_S, w.log_tail()
        # A new worker (same group) resumes from the committed offsets: what the first one
        # scored comes back at most as the duplicates of the last uncommitted batches. Every
        # track gets its final, from one worker or the other (the first may have ended some).
        w.start()
        finals = set()
        for e in iter_highlights(w.settings, from_beginning=True, track_ids=ids, timeout_s=90):
            if e["kind"] == "final":
                assert e["incomplete"] is False, e
                finals.add(e["track_id"])
            if finals == set(ids):
                break
        assert finals == set(ids), w.log_tail()
        m = w.metrics()
        redone = m[("hookstream_chunks_total", frozenset())]
        duplicates = m.get(("hookstream_rejected_inputs_total", frozenset({("reason", "duplicate")})), 0)
        print(f"after restart: {redone:.0f} chunks scored, {duplicates:.0f} duplicates dropped")
        assert redone + duplicates < 160, "nothing was committed"
    finally:
        w.stop()


def test_sigterm_when_the_broker_is_unreachable(tiny_ckpt, tmp_path):
    with EmbeddedBroker() as own:
        w = start(own, tiny_ckpt, tmp_path)
        try:
            own.stop()
            time.sleep(2.0)  # the worker notices: fetches and heartbeats fail
            took, rc = sigterm(w)
        finally:
            w.stop()
    print(f"\nshutdown, broker unreachable: {took:.1f} s (exit {rc})")
    assert rc == 0 and took < LIMIT_S, w.log_tail()


def test_deploy_grace_periods_cover_the_shutdown_deadline():
    """Kubernetes and Compose wait longer than the worker's own deadline, and not much more."""
    import yaml

    from stream_app.faust_patches import SHUTDOWN_DEADLINE_S
    from streaming import REPO

    [deployment] = [d for d in yaml.safe_load_all((REPO / "deploy/k8s/worker-deployment.yaml").read_text())
                    if d and d.get("kind") == "Deployment"]
    k8s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    compose = yaml.safe_load((REPO / "deploy/docker-compose.yml").read_text())
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert grace.endswith("s")
    for name, seconds in [("terminationGracePeriodSeconds", k8s), ("stop_grace_period", int(grace[:-1]))]:
        assert SHUTDOWN_DEADLINE_S + 2 <= seconds <= 30, (name, seconds)
