"""A ``hookstream worker`` child for the bench: start/stop, metrics, CPU, RSS; tracks through it."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

from models.errors import HookstreamError
from stream_app.bench.config import BenchConfig
from stream_app.bench.figures import parse_metrics


class WorkerHandle:
    """One ``hookstream worker`` child, its metrics endpoint and its settings."""

    def __init__(self, settings, ckpt_path: Path, log_path: Path, *, app_id: str,
                 config: Path | None = None, detect_config: Path | None = None):
        from stream_app.broker import free_port

        self.settings = settings
        self.port = free_port()
        self.log_path = log_path
        self.app_id = app_id
        self.extra = ["--checkpoint", str(ckpt_path), "--app-id", app_id]
        if config is not None:
            self.extra += ["--config", str(config)]
        if detect_config is not None:
            self.extra += ["--detect-config", str(detect_config)]
        self.proc = None

    def start(self, say, *, torch_threads: int | None = None) -> None:
        from stream_app.demo import start_worker, wait_metrics

        t0 = time.monotonic()
        extra = self.extra + (["--torch-threads", str(torch_threads)] if torch_threads else [])
        self.proc = start_worker(self.settings, metrics_port=self.port, log_path=self.log_path,
                                 extra=extra)
        wait_metrics(self.port, self.proc, self.log_path)
        say(f"worker pid {self.proc.pid} up in {time.monotonic() - t0:.1f} s "
            f"(metrics port {self.port})")

    def stop(self) -> None:
        from stream_app.demo import stop_worker

        if self.proc is not None:
            stop_worker(self.proc)

    @property
    def changelog(self) -> str:
        """The table's changelog topic (Faust names it ``{app id}-{table}-changelog``)."""
        from stream_app.app import TABLE

        return f"{self.app_id}-{TABLE}-changelog"

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def cpu_s(self) -> float:
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def metrics(self) -> dict[tuple[str, tuple], float]:
        from stream_app.demo import wait_metrics

        return parse_metrics(wait_metrics(self.port, self.proc, self.log_path, timeout_s=10.0))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            from stream_app.demo import _tail

            raise HookstreamError(f"worker exited with code {self.proc.returncode}; its log "
                                  f"{self.log_path} ends:\n{_tail(self.log_path)}")

    def warm_up(self, path: Path, track_id: str, cfg: BenchConfig, say) -> None:
        """One short track end to end: the consumer group is joined and lazy imports are done."""
        t0 = time.monotonic()
        run_tracks(self, [path], [track_id], cfg, realtime=False)
        say(f"worker warmed up in {time.monotonic() - t0:.1f} s")


def run_tracks(worker: WorkerHandle, paths: list[Path], track_ids: list[str], cfg: BenchConfig, *,
               realtime: bool) -> tuple[list, list[tuple[float, dict]], list]:
    """Ingest the files (in a thread) and collect their highlight events until every final is in.

    Returns (ingest results, [(receipt unix time, event)], [SentChunk], unix time when
    ingest returned, every chunk acknowledged).
    """
    from stream_app.ingest import ingest_files
    from stream_app.subscribe import iter_highlights

    sent: list = []
    results: list = []
    errors: list[BaseException] = []

    acked: list[float] = []

    def feed() -> None:
        try:
            results.extend(ingest_files(paths, settings=worker.settings, track_ids=track_ids,
                                        chunk_seconds=cfg.chunk_seconds, realtime=realtime,
                                        on_sent=sent.append, ensure=False))
            acked.append(time.time())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    feeder = threading.Thread(target=feed, name="bench-ingest", daemon=True)
    feeder.start()
    wanted = set(track_ids)
    finals: set[str] = set()
    events: list[tuple[float, dict]] = []
    budget = cfg.timeout_s + (cfg.realtime_seconds if realtime else 0.0)
    for e in iter_highlights(worker.settings, from_beginning=True, track_ids=wanted,
                             timeout_s=budget, poll_ms=50):
        events.append((time.time(), e))
        if e["kind"] == "final":
            finals.add(e["track_id"])
            if finals >= wanted:
                break
    feeder.join(timeout=cfg.timeout_s)
    worker.check_alive()
    if errors:
        raise HookstreamError(f"ingest failed: {errors[0]}")
    failed = [r.error for r in results if r.error]
    if failed:
        raise HookstreamError("ingest failed: " + "; ".join(failed))
    if not finals >= wanted:
        raise HookstreamError(f"no final event within {budget:.0f} s for "
                              f"{sorted(wanted - finals)}; worker log: {worker.log_path}")
    return results, events, sent, acked[0]


def topic_totals(settings, topic: str, *, idle_s: float = 0.5) -> tuple[int, int]:
    """(records, value bytes) in ``topic``, read from the beginning (0, 0 if it does not exist)."""
    from kafka import KafkaConsumer, TopicPartition

    from stream_app.settings import kafka_python_security_kwargs

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             check_crcs=False, client_id="hookstream-bench",
                             **kafka_python_security_kwargs(settings))
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return 0, 0
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        count = size = 0
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            for records in consumer.poll(timeout_ms=100, max_records=10_000).values():
                count += len(records)
                size += sum(len(r.value or b"") for r in records)
                last = time.monotonic()
        return count, size
    finally:
        consumer.close()


def write_settings_yaml(path: Path, settings) -> None:
    import yaml

    data = json.loads(json.dumps(dataclasses.asdict(settings)))  # tuples -> lists
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
