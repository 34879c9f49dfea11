"""``/healthz`` and ``/readyz`` beside ``/metrics`` on the worker's metrics port.

- ``/healthz`` (liveness): 200 while the event loop runs (a timer beats every
  second; none for ``LOOP_STALL_S`` is red) and the scoring agent is not stuck
  (one batch, scoring and sending included, taking more than
  ``worker.stall_after_s`` is red). A red answer is 503 with the reason.
- ``/readyz`` (readiness): 200 once the model is loaded, the worker has
  joined its consumer group and the table recovery of its partitions has
  finished; 503 while starting (the model loads while the group is joined)
  or rebalancing. A worker that was given no partition (more workers than
  partitions) is ready too: it holds the group's spare place, and a rolling
  update must not wait for it.

Both answer with a line of text, and both are read from the HTTP thread: the
event loop only stamps times.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LOOP_STALL_S = 30.0  # no event-loop heartbeat for this long: /healthz is red


class Health:
    """Heartbeats stamped by the worker's event loop; verdicts read by the HTTP thread."""

    def __init__(self, *, stall_after_s: float = 60.0, loop_stall_s: float = LOOP_STALL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.stall_after_s = stall_after_s
        self.loop_stall_s = loop_stall_s
        self.clock = clock
        self.started = clock()
        self.loop_beat: float | None = None
        self.busy_since: float | None = None  # the agent's current batch started then
        self.readiness: Callable[[], tuple[bool, str]] = lambda: (False, "starting")

    # --- stamped from the event loop
    def beat(self) -> None:
        self.loop_beat = self.clock()

    def batch_started(self) -> None:
        self.busy_since = self.clock()

    def batch_done(self) -> None:
        self.busy_since = None

    # --- read from anywhere
    def live(self) -> tuple[bool, str]:
        now = self.clock()
        beat = self.loop_beat if self.loop_beat is not None else self.started
        if now - beat > self.loop_stall_s:
            return False, f"event loop: no heartbeat for {now - beat:.1f} s"
        busy = self.busy_since
        if busy is not None and now - busy > self.stall_after_s:
            return False, (f"agent: one batch has taken {now - busy:.1f} s "
                           f"(more than worker.stall_after_s {self.stall_after_s:g} s)")
        return True, "ok" if busy is None else f"ok (agent busy for {now - busy:.1f} s)"

    def ready(self) -> tuple[bool, str]:
        live, why = self.live()
        if not live:
            return False, why
        return self.readiness()


def serve(port: int, registry: CollectorRegistry, health: Health, *,
          addr: str = "0.0.0.0") -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``addr:port`` in a daemon thread.

    Called like ``prometheus_client.start_http_server``, whose ``/metrics`` it replaces.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, why = health.live() if path == "/healthz" else health.ready()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # probes every few seconds: keep the log quiet
            pass

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http-metrics", daemon=True)
    thread.start()
    return server, thread
