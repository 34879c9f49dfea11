"""Capacity sweep: K live tracks into one worker, for K = 10, 50, 100, ...; the largest K held.

For each K, K tracks stream in real time for ``seconds`` (chunk ``k`` of a track
leaves at its start + ``k * chunk_seconds``; starts staggered evenly over one
chunk), all from one producer in one sender thread, into one ``hookstream
worker`` (``provisional_min_interval_s: 0``, so every chunk can lead to an
event). Measured per K:

- latency: chunk published -> first provisional event including it received
  (all chunks, and chunks whose own event it was), as in the latency phase;
- the worker's CPU use in cores (CPU seconds / wall seconds);
- backlog: chunks sent minus chunks the worker has scored
  (``hookstream_chunks_total``), sampled every ``SAMPLE_S``; its slope over the
  second half of the window (least squares). ``backlog_growing`` when the slope
  exceeds ``GROWTH_FRACTION`` of the arrival rate;
- the sender's own lag (actual - scheduled send time), so a sender that falls
  behind is seen and not taken for the worker's limit.

``held`` = p99 of the chunks whose own event it was <= ``P99_LIMIT_S``, no
growing backlog, drained. (Each track's first 2 s chunk is shorter than the
scorer's 3 s chunk, so it never has an event of its own and waits one chunk,
2 s, for the next: the p99 over all chunks is about 2 s at any K, whatever the
worker does; it is reported too.) Between two K the
worker drains what is left; when it cannot within ``DRAIN_S`` the sweep stops.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from models.errors import ConfigError, HookstreamError
from stream_app.bench.config import DEFAULT_KS, BenchConfig
from stream_app.bench.figures import percentiles, sig
from stream_app.bench.latency import match_latencies
from stream_app.bench.songs import synth_track
from stream_app.bench.worker import WorkerHandle, write_settings_yaml

P99_LIMIT_S = 1.0
GROWTH_FRACTION = 0.05  # backlog slope above 5% of the arrival rate: not keeping up
SAMPLE_S = 1.0
DRAIN_S = 60.0
LISTEN_IDLE_S = 15.0  # the listener gives up this long after the last event
SONGS = 4  # distinct synthetic songs, cycled over the tracks


@dataclasses.dataclass(frozen=True)
class Sent:
    """One chunk handed to the producer (what :func:`match_latencies` reads)."""

    track_id: str
    seq: int
    sent_at: float
    due: float  # when it was scheduled to leave (unix seconds)


def parse_ks(text: str) -> tuple[int, ...]:
    """``"10,50,100"`` -> (10, 50, 100): positive, increasing. ConfigError naming --sweep."""
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--sweep: expected comma-separated track counts, got {text!r}") from None
    if not ks or any(k < 1 for k in ks) or list(ks) != sorted(set(ks)):
        raise ConfigError(f"--sweep: expected increasing positive track counts, got {text!r}")
    return ks


def backlog_slope(times: list[float], backlog: list[float]) -> float:
    """Least-squares slope (chunks/s) of the backlog over the second half of the samples."""
    if len(times) < 4:
        return 0.0
    half = len(times) // 2
    t, b = np.asarray(times[half:]), np.asarray(backlog[half:], dtype=float)
    return float(np.polyfit(t - t[0], b, 1)[0])


def largest_held(rows: list[dict]) -> int | None:
    """The largest K of the rows that held (p99 within the limit, no growing backlog)."""
    held = [r["tracks"] for r in rows if r["held"]]
    return max(held) if held else None


def sweep_phase(worker: WorkerHandle, ks: tuple[int, ...], cfg: BenchConfig, seconds: float, *,
                say: Callable[[str], None], broker_proc=None) -> dict:
    """Run every K on ``worker``; stop early once one K cannot be drained."""
    sr = 22_050
    songs = [synth_track(200 + i, seconds) for i in range(SONGS)]
    rows = []
    for k in ks:
        say(f"sweep: {k} tracks x {seconds:g} s in real time")
        row = _one_k(worker, k, songs, cfg, seconds, sr=sr, broker_proc=broker_proc)
        rows.append(row)
        say(f"sweep K={k}: p50 {row['p50_s']} s, p99 {row['p99_s']} s, worker "
            f"{row['worker_cores']} cores, backlog slope {row['backlog_slope_per_s']} chunks/s, "
            f"sender lag p99 {row['send_lag_p99_s']} s: {'held' if row['held'] else 'NOT held'}")
        if not row["drained"]:
            say(f"sweep: the worker did not drain K={k}'s backlog in {DRAIN_S:g} s; stopping")
            break
    return {"seconds_per_k": sig(seconds), "p99_limit_s": P99_LIMIT_S,
            "growth_fraction": GROWTH_FRACTION, "rows": rows, "largest_held": largest_held(rows)}


def _one_k(worker: WorkerHandle, k: int, songs: list[np.ndarray], cfg: BenchConfig,
           seconds: float, *, sr: int, broker_proc=None) -> dict:
    from stream_app.ingest import chunk_frames
    from stream_app.subscribe import iter_highlights

    n = chunk_frames(cfg.chunk_seconds, sr=sr)
    chunks_key = ("hookstream_chunks_total", ())
    scored0 = worker.metrics().get(chunks_key, 0.0)
    ids = [f"sweep{k}-{i + 1:03d}" for i in range(k)]
    sent: list[Sent] = []
    errors: list[BaseException] = []
    t0 = time.time() + 1.0
    sender = threading.Thread(target=_send_all, name="sweep-sender", daemon=True,
                              args=(worker.settings, ids, songs, n, cfg.chunk_seconds, t0, sent,
                                    errors))
    events: list[tuple[float, dict]] = []
    stop = threading.Event()

    def listen() -> None:
        # ends LISTEN_IDLE_S after the last event, or at the first event after ``stop``
        for e in iter_highlights(worker.settings, track_ids=set(ids), timeout_s=LISTEN_IDLE_S,
                                 poll_ms=50, from_beginning=True):
            events.append((time.time(), e))
            if stop.is_set():
                break

    listener = threading.Thread(target=listen, name="sweep-listener", daemon=True)
    listener.start()
    cpu0, wall0 = worker.cpu_s(), time.monotonic()
    others0 = _other_cpu(broker_proc)
    sender.start()
    samples_t, samples_b = [], []
    while sender.is_alive():
        time.sleep(SAMPLE_S)
        worker.check_alive()
        scored = worker.metrics().get(chunks_key, 0.0) - scored0
        samples_t.append(time.time())
        samples_b.append(len(sent) - scored)
    cpu, wall = worker.cpu_s() - cpu0, time.monotonic() - wall0
    others = {name: sig((v - others0[name]) / wall) for name, v in _other_cpu(broker_proc).items()}
    if errors:
        stop.set()
        raise HookstreamError(f"sweep K={k}: sending failed: {errors[0]}")
    deadline = time.monotonic() + DRAIN_S
    drained = False
    while time.monotonic() < deadline:
        if worker.metrics().get(chunks_key, 0.0) - scored0 >= len(sent):
            drained = True
            break
        time.sleep(0.5)
    time.sleep(1.0)  # the last events reach the listener
    stop.set()
    listener.join(timeout=LISTEN_IDLE_S + 5)
    m = match_latencies(sent, events)
    lag = percentiles([s.sent_at - s.due for s in sent])
    slope = backlog_slope(samples_t, samples_b)
    arrival = k / cfg.chunk_seconds
    growing = slope > GROWTH_FRACTION * arrival
    return {"tracks": k, "chunks": len(sent), "p50_s": m["p50_s"], "p95_s": m["p95_s"],
            "p99_s": m["p99_s"], "direct_p50_s": m["direct_p50_s"],
            "direct_p99_s": m["direct_p99_s"], "matched": m["matched"],
            "worker_cores": sig(cpu / wall), "broker_cores": others.get("broker"),
            "bench_cores": others["bench"], "backlog_end": sig(samples_b[-1]) if samples_b else 0,
            "backlog_slope_per_s": sig(slope), "arrival_per_s": sig(arrival),
            "backlog_growing": bool(growing), "drained": drained,
            "send_lag_p50_s": lag[0], "send_lag_p99_s": lag[2],
            "held": bool(m["direct_p99_s"] is not None and m["direct_p99_s"] <= P99_LIMIT_S
                         and not growing and drained)}


def _other_cpu(broker_proc) -> dict[str, float]:
    """CPU seconds of the broker (if known) and of this process (sender and listener)."""
    import psutil

    out = {}
    for name, proc in (("broker", broker_proc), ("bench", psutil.Process())):
        if proc is not None:
            t = proc.cpu_times()
            out[name] = t.user + t.system
    return out


def _send_all(settings, ids: list[str], songs: list[np.ndarray], n: int, chunk_s: float,
              t0: float, sent: list[Sent], errors: list[BaseException]) -> None:
    """One producer, every track: each chunk at its scheduled time (a heap of due times)."""
    from stream_app.events import encode_chunk
    from stream_app.ingest import make_producer

    try:
        producer = make_producer(settings)
        try:
            count = [max(1, int(np.ceil(len(s) / n))) for s in songs]
            heap = [(t0 + chunk_s * i / len(ids), i, 0) for i in range(len(ids))]
            heapq.heapify(heap)
            while heap:
                due, i, seq = heapq.heappop(heap)
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                song, total = songs[i % len(songs)], count[i % len(songs)]
                at = time.time()
                value = encode_chunk(ids[i], seq, song[seq * n:(seq + 1) * n], sample_rate=22_050,
                                     encoding="f32le", end=seq == total - 1, sent_at=at)
                producer.send(settings.topics.chunks, key=ids[i].encode(), value=value)
                sent.append(Sent(ids[i], seq, at, due))
                if seq + 1 < total:
                    heapq.heappush(heap, (due + chunk_s, i, seq + 1))
            producer.flush()
        finally:
            producer.close(timeout=10)
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def sweep_worker(settings, ckpt_path: Path, detect_yaml: Path, work: Path, bootstrap: str):
    """The sweep's worker: topics of its own, provisional events unthrottled."""
    from stream_app.broker import ensure_topics
    from stream_app.settings import load_settings

    path = work / "stream-sweep.yaml"
    write_settings_yaml(path, load_settings(
        None, bootstrap=bootstrap,
        topics={k: f"bench-sweep.{v}" for k, v in dataclasses.asdict(settings.topics).items()},
        stream={"provisional_min_interval_s": 0.0, "idle_timeout_s": 3600.0}))
    s = load_settings(path)
    ensure_topics(bootstrap, s.topic_partitions())
    return WorkerHandle(s, ckpt_path, work / "worker-sweep.log", app_id="hookstream-bench-sweep",
                        config=path, detect_config=detect_yaml)


def plot_sweep(sweep: dict, path: str | Path) -> Path:
    """Latency quantiles and worker CPU against K, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep["rows"]
    ks = [r["tracks"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    for key, label in (("p50_s", "p50"), ("p95_s", "p95"), ("p99_s", "p99"),
                       ("direct_p99_s", "p99, own event")):
        ax1.plot(ks, [r[key] if r[key] is not None else np.nan for r in rows], "o-", label=label)
    ax1.axhline(sweep["p99_limit_s"], color="grey", ls="--", lw=1, label="p99 limit")
    ax1.set_ylabel("chunk -> provisional (s)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    held = sweep["largest_held"]
    ax1.set_title(f"one worker, live tracks; largest K held: {held if held else 'none'}")
    ax2.plot(ks, [r["worker_cores"] for r in rows], "s-", color="tab:red")
    ax2.set_ylabel("worker CPU (cores)")
    ax2.set_xlabel("live tracks K")
    for r in rows:
        if r["backlog_growing"]:
            ax2.annotate("backlog", (r["tracks"], r["worker_cores"]), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_lines(sweep: dict) -> list[str]:
    """The sweep as a table."""
    lines = ["", f"capacity sweep: K live tracks x {sweep['seconds_per_k']:g} s into one worker "
                 f"(held: own-event p99 <= {sweep['p99_limit_s']:g} s, backlog slope <= "
                 f"{100 * sweep['growth_fraction']:.0f}% of arrivals)",
             f"  {'K':>5}{'p50 s':>9}{'p95 s':>9}{'p99 s':>9}{'own p99':>9}{'cores':>7}"
             f"{'broker':>7}{'bench':>7}{'slope/s':>9}{'sendlag':>9}  held"]
    for r in sweep["rows"]:
        f = (lambda x: "n/a" if x is None else f"{x:.3f}")
        lines.append(f"  {r['tracks']:>5}{f(r['p50_s']):>9}{f(r['p95_s']):>9}{f(r['p99_s']):>9}"
                     f"{f(r['direct_p99_s']):>9}{r['worker_cores']:>7.2f}"
                     f"{_cores(r.get('broker_cores')):>7}{_cores(r.get('bench_cores')):>7}"
                     f"{r['backlog_slope_per_s']:>9.2f}{f(r['send_lag_p99_s']):>9}  "
                     f"{'yes' if r['held'] else 'no'}")
    lines.append(f"  largest K held: {sweep['largest_held'] or 'none'}")
    return lines


def _cores(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
