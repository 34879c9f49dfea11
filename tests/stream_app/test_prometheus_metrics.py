"""stream_app/metrics.py: what a fresh worker's /metrics shows before any event, over HTTP."""

import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from stream_app.events import HIGHLIGHT_KINDS
from stream_app.metrics import FINISH_HOWS, REJECT_REASONS, Metrics

SRC = Path(__file__).resolve().parents[2] / "stream_app"


@pytest.fixture
def scrape():
    """Serve a fresh registry's Metrics on a free port; scrape() -> {(name, labels): value}, families."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_address[1]

    def get():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            families = list(text_string_to_metric_families(r.read().decode()))
        samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
        return samples, {f.name for f in families}

    yield metrics, get
    server.shutdown()
    server.server_close()


def test_labelled_counters_start_at_zero_for_every_known_value(scrape):
    metrics, get = scrape
    samples, _ = get()
    for name, label, values in (("hookstream_highlight_events_total", "kind", HIGHLIGHT_KINDS),
                                ("hookstream_rejected_inputs_total", "reason", REJECT_REASONS),
                                ("hookstream_tracks_finished_total", "how", FINISH_HOWS)):
        for v in values:
            assert samples[(name, frozenset({(label, v)}))] == 0.0, (name, v)
    metrics.rejected.labels("gap").inc()
    assert get()[0][("hookstream_rejected_inputs_total", frozenset({("reason", "gap")}))] == 1.0


def test_process_platform_and_build_info(scrape):
    metrics, get = scrape
    metrics.set_build(version="0.1.0", model="m-1")
    samples, families = get()
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
            "python_info"} <= families
    assert samples[("process_resident_memory_bytes", frozenset())] > 10e6
    assert samples[("hookstream_build_info", frozenset({("version", "0.1.0"), ("model", "m-1")}))] == 1.0


def test_known_label_values_cover_the_code():
    """Every literal reason / how the processor and app use is pre-initialised."""
    code = "\n".join(p.read_text() for p in (SRC / "processor.py", SRC / "app.py", SRC / "events.py"))
    reasons = set(re.findall(r'_reject\(\s*\w+,\s*\w+,\s*"(\w+)"', code))
    reasons |= set(re.findall(r'rejected\.labels\("(\w+)"\)', code))
    reasons |= set(re.findall(r'EventError\(\s*"(\w+)"', code)) - {"bad_highlight"}
    reasons |= {v for v in re.findall(r'verdict in \(([^)]*)\)', code) for v in re.findall(r'"(\w+)"', v)
                if v not in ("next",)}
    assert reasons and reasons <= set(REJECT_REASONS), reasons - set(REJECT_REASONS)
    hows = set(re.findall(r'how="(\w+)"', code))
    assert hows and hows <= set(FINISH_HOWS), hows - set(FINISH_HOWS)
