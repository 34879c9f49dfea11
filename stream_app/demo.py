"""``hookstream demo``: broker, worker, ingest and subscribe in one command.

Starts the embedded broker and a worker process, ingests the given files (or
synthetic example songs) in real time or at full speed, prints highlight
events as they arrive, and shuts everything down, leaving no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from models.errors import HookstreamError
from stream_app.broker import EmbeddedBroker, ensure_topics, free_port
from stream_app.settings import Settings, load_settings


def start_worker(settings: Settings, *, metrics_port: int, log_path: Path,
                 extra: list[str] = ()) -> subprocess.Popen:
    """A ``hookstream worker`` child process in its own process group."""
    cmd = [sys.executable, "-m", "stream_app", "worker", "--bootstrap", settings.kafka.bootstrap,
           "--metrics-port", str(metrics_port), *extra]
    return subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop_worker(proc: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """SIGTERM (Faust shuts down cleanly), then SIGKILL the group if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def wait_metrics(port: int, proc: subprocess.Popen, log_path: Path, timeout_s: float = 120.0) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HookstreamError(f"worker exited with code {proc.returncode}; its log "
                                  f"{log_path} ends:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.read().decode()
        except OSError:
            time.sleep(0.3)
    raise HookstreamError(f"worker metrics at {url} did not come up in {timeout_s:.0f} s")


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_demo(paths: list[str], *, realtime: bool, chunk_seconds: float, metrics_port: int,
             timeout_s: float, worker_args: list[str] = (), out=sys.stdout) -> int:
    from models.examples import write_examples
    from stream_app.ingest import ingest_files
    from stream_app.subscribe import iter_highlights

    work = Path(tempfile.mkdtemp(prefix="hookstream-demo-"))
    if not paths:
        paths = [str(p) for p in write_examples(work / "examples", 2)]
        print(f"demo: no files given; using {len(paths)} synthetic example songs in {work}",
              file=out)
    with EmbeddedBroker() as broker:
        settings = load_settings(None, bootstrap=broker.bootstrap)
        ensure_topics(broker.bootstrap, settings.topic_partitions())
        print(f"demo: broker at {broker.bootstrap}", file=out, flush=True)
        log_path = work / "worker.log"
        worker = start_worker(settings, metrics_port=metrics_port, log_path=log_path,
                              extra=list(worker_args))
        try:
            wait_metrics(metrics_port, worker, log_path)
            print(f"demo: worker up, metrics at http://127.0.0.1:{metrics_port}/metrics "
                  f"(log {log_path})", file=out, flush=True)
            results = []
            feeder = threading.Thread(
                target=lambda: results.extend(ingest_files(
                    paths, settings=settings, chunk_seconds=chunk_seconds, realtime=realtime)),
                daemon=True)
            feeder.start()
            if not realtime:
                feeder.join()
            finals = set()
            for e in iter_highlights(settings, from_beginning=True, timeout_s=timeout_s):
                _print_event(e, out)
                if e["kind"] == "final":
                    finals.add(e["track_id"])
                    feeder.join(timeout=5.0)  # the end chunk was sent: ingest is returning
                if not feeder.is_alive():
                    expected = {r.track_id for r in results if r.error is None}
                    if expected <= finals:
                        break
            feeder.join()
            failed = [r for r in results if r.error]
            missing = {r.track_id for r in results if r.error is None} - finals
            print(_metrics_summary(metrics_port), file=out)
            if missing:
                print(f"demo: no final highlight within {timeout_s:.0f} s for "
                      f"{sorted(missing)}", file=out)
            return 1 if failed or missing else 0
        finally:
            stop_worker(worker)
            print("demo: worker and broker stopped", file=out, flush=True)


def _print_event(e: dict, out) -> None:
    flag = " (incomplete)" if e.get("incomplete") else ""
    print(f"{e['kind']:>11}  {e['track_id']:<24} {_mmss(e['start_s'])}-{_mmss(e['end_s'])}  "
          f"score {e['score']:.3f}  after {e['audio_s']:.1f} s of audio{flag}", file=out,
          flush=True)


def _metrics_summary(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError as exc:
        return f"demo: metrics unavailable ({exc})"
    keep = ("hookstream_chunks_total ", "hookstream_audio_seconds_total ",
            "hookstream_highlight_events_total{", "hookstream_rejected_inputs_total{",
            "hookstream_scorer_batch_seconds_sum", "hookstream_scorer_batch_seconds_count")
    lines = [ln for ln in text.splitlines() if ln.startswith(keep)]
    return "demo: metrics at the end:\n  " + "\n  ".join(lines)


def _mmss(s: float) -> str:
    m, sec = divmod(s, 60)
    return f"{int(m)}:{sec:04.1f}"


__all__ = ["run_demo", "start_worker", "stop_worker", "wait_metrics", "free_port"]
