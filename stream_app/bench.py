"""``hookstream bench``: offline and streaming throughput, latency and memory in one run.

Phases, in order (each prints a progress line on stderr):

1. **offline**: ``--tracks`` synthetic songs of ``--seconds`` each, written as
   FLAC, decoded and scored in this process by the same
   :class:`~models.detect.Detector` that ``hookstream detect`` uses; decode and
   scoring are timed apart.
2. **profile**: one longer track through the scorer, whole and in 2 s pieces,
   with its stages (mel, CNN, LSTM attention, window) timed by wrapping the
   scorer's own methods on a private instance: where the time goes.
3. **streaming**: the embedded broker and a real ``hookstream worker``
   subprocess (the shipped ``configs/stream.yaml``); the same songs ingested
   at full speed, timed from the first chunk sent to the last final event
   received. The worker's metrics and the CPU time of worker, broker and this
   process say where the wall time went.
4. **latency**: a second worker (``provisional_min_interval_s: 0``, topics of
   its own); ``--concurrency`` songs of ``--realtime-seconds`` ingested
   concurrently at real-time pace. For each chunk, the time from its
   publication (``SentChunk.sent_at``) to the receipt of the first
   provisional event whose ``seq`` includes it; plus the worker's own
   ``hookstream_chunk_to_provisional_seconds`` histogram.
5. **memory**: on that warm worker, after a quarter as many *closed* tracks
   (the same traffic, no state kept), ``--memory-tracks`` tracks opened with
   the first half of a ``--seconds`` song each (no end chunk), sent in paced
   rounds; the worker's RSS then, minus its idle RSS, per open track; and the
   size of the serialised :class:`~stream_app.tracks.TrackRecord` that its
   table (and the changelog topic) stores per track.
6. **changelog**: the bytes the table's changelog receives per track, per
   audio minute, for 1, 5 and 20 minute tracks (:mod:`stream_app.changelog_size`).

Everything runs in one invocation and is shut down before it returns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

import numpy as np

from models.errors import ConfigError, HookstreamError

SYNTH_BARS = 52  # bars in models.examples.synth_song's plan (4+8+8+8+8+4+8+4)
WARMUP_SECONDS = 8.0
PROFILE_PIECE_S = 2.0
ROUND_EVENTS = 64  # chunk events per round in the memory phase (the worker's default batch)


@dataclass(frozen=True)
class BenchConfig:
    """What ``hookstream bench`` runs; validated in :meth:`__post_init__`."""

    tracks: int = 6
    concurrency: int = 4
    seconds: float = 120.0
    realtime_seconds: float = 40.0
    memory_tracks: int = 32
    profile_seconds: float = 240.0  # 0 skips the profile
    chunk_seconds: float = 2.0
    checkpoint: str | None = None  # None: configs/detect.yaml's, or an untrained Huang net
    torch_threads: int | None = None  # None: torch's default (OMP_NUM_THREADS, else one per core)
    timeout_s: float = 180.0  # longest wait for the worker in any one step

    def __post_init__(self) -> None:
        for name in ("tracks", "concurrency", "memory_tracks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        for name in ("seconds", "realtime_seconds"):
            if not getattr(self, name) >= 4 * self.chunk_seconds:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least "
                                  f"{4 * self.chunk_seconds:g} (four chunks), got {getattr(self, name)}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"--torch-threads must be at least 1, got {self.torch_threads}")
        if not self.profile_seconds >= 0:
            raise ConfigError(f"--profile-seconds must be >= 0, got {self.profile_seconds}")


# ---------------------------------------------------------------------------- run

def run_bench(cfg: BenchConfig, *, progress: TextIO = sys.stderr) -> dict:
    """Run every phase; return the results (see docs/performance.md for the keys)."""
    import torch

    from models import checkpoint as ckpts
    from models.config import CONFIG_DIR, DetectConfig, load_yaml
    from models.detect import Detector

    t_start = time.monotonic()
    say = _Progress(progress, t_start)
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    work = Path(tempfile.mkdtemp(prefix="hookstream-bench-"))
    ok = False
    try:
        detect_cfg = load_yaml(DetectConfig, CONFIG_DIR / "detect.yaml")
        ckpt, ckpt_path, ckpt_note = _resolve_checkpoint(cfg.checkpoint, detect_cfg, work)
        say(f"checkpoint {ckpt.name} ({ckpt_note}); work dir {work}")
        detector = Detector(detect_cfg, ckpt)
        out: dict = {
            "checkpoint": {"name": ckpt.name, "trained": ckpt.trained, "arch": ckpt.model.arch,
                           "parameters": sum(v.numel() for v in ckpt.state_dict.values()),
                           "path": None if ckpt_path.is_relative_to(work) else str(ckpt_path),
                           "note": ckpt_note},
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "device": str(detector.scorer.device),
                        "kafka_python_crc32c": _crc32c_impl(),
                        "load_avg_start": _loadavg()},
            "args": dataclasses.asdict(cfg),
        }
        songs = _write_songs(work / "songs", cfg.tracks, cfg.seconds, seed0=0)
        say(f"wrote {len(songs)} songs of {cfg.seconds:g} s")
        out["offline"] = offline_phase(detector, songs, say=say)
        if cfg.profile_seconds > 0:
            out["profile"] = profile_phase(detect_cfg, ckpt, cfg.profile_seconds, say=say)
        out.update(_streaming_phases(cfg, detector, ckpt_path, songs, work, say=say))
        from stream_app.changelog_size import bench_phase
        out["changelog"] = bench_phase(detector, say=say)
        st, off = out["streaming"], out["offline"]
        st["ratio_to_offline"] = _r(st["audio_s_per_s"] / off["audio_s_per_s"])
        st["cpu_ratio_to_offline"] = _r(sum(st["cpu_s"].values()) / st["audio_s"]
                                        / (off["cpu_s"] / off["audio_s"]))
        out["machine"]["load_avg_end"] = _loadavg()
        out["total_s"] = _r(time.monotonic() - t_start)
        say(f"done in {out['total_s']:.0f} s")
        ok = True
        return out
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"bench: failed; logs kept in {work}", file=progress, flush=True)


class _Progress:
    def __init__(self, stream: TextIO, t0: float):
        self.stream, self.t0 = stream, t0

    def __call__(self, msg: str) -> None:
        print(f"bench [{time.monotonic() - self.t0:6.1f} s] {msg}", file=self.stream, flush=True)


def _resolve_checkpoint(path: str | None, detect_cfg, work: Path):
    """(checkpoint, file the worker loads, note). Falls back to an untrained full-size Huang net."""
    from models import checkpoint as ckpts
    from models import nets
    from models.errors import CheckpointError
    from models.training.pop909 import LABELS

    if path is not None:
        ckpt = ckpts.load(path)
        return ckpt, Path(path), "given with --checkpoint"
    try:
        ckpt = ckpts.load(detect_cfg.checkpoint)
        return ckpt, Path(detect_cfg.checkpoint or ckpts.DEFAULT_CHECKPOINT), "the default model"
    except CheckpointError:
        missing = detect_cfg.checkpoint or ckpts.DEFAULT_CHECKPOINT
        ckpt = ckpts.untrained(nets.huang(len(LABELS)), LABELS)
        saved = ckpts.save(ckpt, work / "untrained-huang.safetensors")
        return ckpt, saved, (f"no model at {missing}: an untrained full-size Huang network, "
                             "the same compute as a trained one")


# ------------------------------------------------------------------------ songs

def synth_track(seed: int, seconds: float, *, sr: int = 22_050) -> np.ndarray:
    """A synthetic song of exactly ``seconds`` (bar length scaled, then trimmed or looped)."""
    from models.examples import synth_song

    samples, _ = synth_song(seed, bar_s=seconds / SYNTH_BARS, sr=sr)
    return np.resize(samples, int(round(seconds * sr))).astype(np.float32)


def _write_songs(folder: Path, count: int, seconds: float, *, seed0: int,
                 prefix: str = "song") -> list[Path]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}-{i + 1:02d}.flac"
        sf.write(path, synth_track(seed0 + i, seconds), 22_050)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------- offline

def offline_phase(detector, paths: list[Path], *, say: Callable[[str], None]) -> dict:
    """Decode and score each file as ``hookstream detect`` does; decode and score timed apart."""
    from models.audio import decode
    from models.detect import track_id_for

    sr = detector.ckpt.mel.sample_rate
    max_s = detector.cfg.scorer.max_duration_s
    detector.detect_samples("warmup", synth_track(99, WARMUP_SECONDS))  # lazy imports, caches
    decode_s = score_s = audio_s = 0.0
    cpu0 = _own_cpu()
    for path in paths:
        t0 = time.perf_counter()
        samples = decode(path, sr=sr, max_duration_s=max_s)
        t1 = time.perf_counter()
        detector.detect_samples(track_id_for(path), samples)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        score_s += t2 - t1
        audio_s += len(samples) / sr
    cpu = _own_cpu() - cpu0
    out = {"tracks": len(paths), "audio_s": _r(audio_s), "decode_s": _r(decode_s),
           "score_s": _r(score_s), "cpu_s": _r(cpu),
           "audio_s_per_s": _r(audio_s / (decode_s + score_s)),
           "audio_s_per_cpu_s": _r(audio_s / cpu),
           "score_audio_s_per_s": _r(audio_s / score_s),
           "decode_audio_s_per_s": _r(audio_s / decode_s)}
    say(f"offline: {audio_s:.0f} s of audio, decode {decode_s:.2f} s, score {score_s:.2f} s: "
        f"{out['audio_s_per_s']:.0f}x real time")
    return out


# ---------------------------------------------------------------------- profile

def profile_phase(detect_cfg, ckpt, seconds: float, *, say: Callable[[str], None]) -> dict:
    """Time the scorer's stages on one track, whole (offline) and in 2 s pieces (streamed).

    The stages are the scorer's own methods, wrapped with ``perf_counter`` on a
    private instance: ``_frames`` (incremental log-mel, normalisation, slot
    energy), ``_embed_all`` (CNN), ``_attend`` (Bi-LSTM attention: the
    provisional context refresh in ``step``, the whole track in ``finalize``)
    and ``Detector.highlight`` (softmax and window).
    """
    from models.detect import Detector

    samples = synth_track(7, seconds)
    sr = ckpt.mel.sample_rate
    out = {"track_s": _r(seconds)}
    for mode in ("whole", "streamed"):
        det = Detector(detect_cfg, ckpt)
        times = _instrument(det)
        det.detect_samples("warmup", samples[: int(WARMUP_SECONDS * sr)])
        times.clear()
        t0 = time.perf_counter()
        if mode == "whole":
            det.detect_samples("profile", samples)
            pieces = 1
        else:
            step = int(PROFILE_PIECE_S * sr)
            state = det.scorer.init_state("profile")
            pieces = 0
            for i in range(0, len(samples), step):
                state = det.scorer.step([(state, samples[i:i + step])])[0]
                det.highlight(det.scorer.provisional(state))
                pieces += 1
            det.highlight(det.scorer.finalize([state])[0])
        total = time.perf_counter() - t0
        parts = {k: _r(times.get(k, 0.0)) for k in ("mel", "cnn", "lstm", "window")}
        parts["other"] = _r(total - sum(times.values()))
        out[mode] = {"pieces": pieces, "total_s": _r(total), "audio_s_per_s": _r(seconds / total),
                     "stages_s": parts}
        say(f"profile {mode}: {seconds:g} s in {total:.2f} s; " +
            ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))
    return out


def _instrument(det) -> dict[str, float]:
    times: dict[str, float] = {}

    def wrap(obj, attr: str, key: str) -> None:
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[key] = times.get(key, 0.0) + time.perf_counter() - t0

        setattr(obj, attr, timed)  # instance attribute: shadows the method for this object only

    wrap(det.scorer, "_frames", "mel")
    wrap(det.scorer, "_embed_all", "cnn")
    wrap(det.scorer, "_attend", "lstm")
    wrap(det, "highlight", "window")
    return times


# -------------------------------------------------------------------- streaming

def _streaming_phases(cfg: BenchConfig, detector, ckpt_path: Path, songs: list[Path],
                      work: Path, *, say: Callable[[str], None]) -> dict:
    import psutil

    from stream_app.broker import EmbeddedBroker, ensure_topics
    from stream_app.settings import load_settings

    out: dict = {}
    warm = _write_songs(work / "warmup", 1, WARMUP_SECONDS, seed0=99, prefix="warmup")[0]
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        say(f"broker at {broker.bootstrap}")
        broker_proc = psutil.Process(broker.pid)

        # -- throughput: the shipped stream settings
        settings = load_settings(None, bootstrap=broker.bootstrap)
        ensure_topics(broker.bootstrap, settings.topic_partitions())
        w = _Worker(settings, ckpt_path, work / "worker-throughput.log", app_id="hookstream-bench")
        try:
            w.start(say, torch_threads=cfg.torch_threads)
            w.warm_up(warm, "warmup-throughput", cfg, say)
            out["streaming"] = streaming_phase(w, songs, cfg, broker_proc, say=say)
        finally:
            w.stop()

        # -- latency and memory: provisional events unthrottled, topics of their own
        lat_yaml = work / "stream-latency.yaml"
        _write_settings_yaml(lat_yaml, load_settings(
            None, bootstrap=broker.bootstrap,
            topics={k: f"bench-lat.{v}" for k, v in
                    dataclasses.asdict(settings.topics).items()},
            stream={"provisional_min_interval_s": 0.0, "idle_timeout_s": 3600.0}))
        settings = load_settings(lat_yaml)
        ensure_topics(broker.bootstrap, settings.topic_partitions())
        w = _Worker(settings, ckpt_path, work / "worker-latency.log",
                    app_id="hookstream-bench-latency", config=lat_yaml)
        try:
            w.start(say, torch_threads=cfg.torch_threads)
            out["memory"] = {"rss_fresh_mb": _r(w.rss() / 2**20)}
            w.warm_up(warm, "warmup-latency", cfg, say)
            rt = _write_songs(work / "realtime", cfg.concurrency, cfg.realtime_seconds,
                              seed0=100, prefix="rt")
            out["latency"] = latency_phase(w, rt, cfg, say=say)
            out["memory"].update(memory_phase(w, songs, cfg, detector, say=say))
        finally:
            w.stop()
    say("worker and broker stopped")
    return out


class _Worker:
    """One ``hookstream worker`` child, its metrics endpoint and its settings."""

    def __init__(self, settings, ckpt_path: Path, log_path: Path, *, app_id: str,
                 config: Path | None = None):
        from stream_app.broker import free_port

        self.settings = settings
        self.port = free_port()
        self.log_path = log_path
        self.app_id = app_id
        self.extra = ["--checkpoint", str(ckpt_path), "--app-id", app_id]
        if config is not None:
            self.extra += ["--config", str(config)]
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


def run_tracks(worker: _Worker, paths: list[Path], track_ids: list[str], cfg: BenchConfig, *,
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


def streaming_phase(worker: _Worker, songs: list[Path], cfg: BenchConfig, broker_proc, *,
                    say: Callable[[str], None]) -> dict:
    """All songs at full speed; first chunk sent -> last final event received."""
    import psutil

    me = psutil.Process()
    before, cpu0 = worker.metrics(), _cpu(worker, broker_proc, me)
    ids = [f"stream-{i + 1:02d}" for i in range(len(songs))]
    log0 = _topic_totals(worker.settings, worker.changelog)
    results, events, sent, acked = run_tracks(worker, songs, ids, cfg, realtime=False)
    t_last = max(t for t, e in events if e["kind"] == "final")
    cpu1, after = _cpu(worker, broker_proc, me), worker.metrics()
    log1 = _topic_totals(worker.settings, worker.changelog)
    t_first = min(s.sent_at for s in sent)
    wall = t_last - t_first
    audio = sum(r.audio_s for r in results)
    d = _delta(after, before)
    batches = d.get(("hookstream_scorer_batch_seconds_count", ()), 0.0)
    scorer_s = d.get(("hookstream_scorer_batch_seconds_sum", ()), 0.0)
    cpu = {k: _r(cpu1[k] - cpu0[k]) for k in cpu0}
    out = {"tracks": len(songs), "audio_s": _r(audio), "chunks": len(sent), "wall_s": _r(wall),
           "audio_s_per_s": _r(audio / wall),
           "ingest_s": _r(acked - t_first), "ingest_audio_s_per_s": _r(audio / (acked - t_first)),
           "chunk_bytes": sum(s.nbytes for s in sent),
           "changelog_records": log1[0] - log0[0], "changelog_bytes": log1[1] - log0[1],
           "scorer_s": _r(scorer_s), "scorer_share_of_wall": _r(scorer_s / wall),
           "scorer_batches": int(batches),
           "mean_batch_tracks": _r(d.get(("hookstream_scorer_batch_tracks_sum", ()), 0) / batches)
           if batches else None,
           "mean_batch_chunks": _r(d.get(("hookstream_scorer_batch_chunk_events_sum", ()), 0)
                                   / batches) if batches else None,
           "cpu_s": cpu, "cpu_audio_s_per_cpu_s": _r(audio / sum(cpu.values()))}
    say(f"streaming: {audio:.0f} s of audio in {wall:.1f} s: {out['audio_s_per_s']:.0f}x real "
        f"time; scorer busy {scorer_s:.1f} s in {int(batches)} batches; CPU s {cpu}")
    return out


def _cpu(worker: _Worker, broker_proc, me) -> dict[str, float]:
    b, m = broker_proc.cpu_times(), me.cpu_times()
    return {"worker": worker.cpu_s(), "broker": b.user + b.system, "bench": m.user + m.system}


def latency_phase(worker: _Worker, paths: list[Path], cfg: BenchConfig, *,
                  say: Callable[[str], None]) -> dict:
    """K tracks in real time, concurrently: chunk published -> provisional event received."""
    before = worker.metrics()
    ids = [f"rt-{i + 1:02d}" for i in range(len(paths))]
    say(f"latency: {len(paths)} tracks of {cfg.realtime_seconds:g} s in real time")
    log0 = _topic_totals(worker.settings, worker.changelog)
    _, events, sent, _ = run_tracks(worker, paths, ids, cfg, realtime=True)
    log1 = _topic_totals(worker.settings, worker.changelog)
    after = worker.metrics()
    m = match_latencies(sent, events)
    hist = histogram_summary(_delta(after, before), "hookstream_chunk_to_provisional_seconds")
    out = {"tracks": len(paths), "track_s": _r(cfg.realtime_seconds), "chunks": len(sent),
           "chunk_bytes": sum(s.nbytes for s in sent),
           "provisional_events": sum(1 for _, e in events if e["kind"] == "provisional"),
           **m, "worker_histogram": hist,
           "changelog_records": log1[0] - log0[0], "changelog_bytes": log1[1] - log0[1]}
    say(f"latency: {m['matched']} of {len(sent)} chunks matched; p50 {m['p50_s']} s, "
        f"p95 {m['p95_s']} s, p99 {m['p99_s']} s; worker histogram p50 {hist['p50_s']} s")
    return out


def match_latencies(sent: list, events: list[tuple[float, dict]]) -> dict:
    """Per chunk: first provisional event of its track (in receipt order) with ``seq >= chunk seq``.

    ``direct`` counts chunks whose event has exactly their seq (the chunk
    itself led to the event); the others waited for a later chunk to change
    the span, or for the track's first complete 3 s scorer chunk. For direct
    matches the event's ``emitted_at`` (worker clock, same host) splits the
    latency into ``in`` (published -> event made: broker, worker consumer,
    batching, scoring) and ``out`` (event made -> received: worker producer,
    broker, subscriber).
    """
    by_track: dict[str, list[tuple[float, int, float]]] = {}
    for t, e in events:
        if e["kind"] == "provisional":
            made = _unix(e["emitted_at"])
            by_track.setdefault(e["track_id"], []).append((t, int(e["seq"]), made))
    lat, direct, lat_in, lat_out = [], [], [], []
    for s in sent:
        for t, seq, made in by_track.get(s.track_id, ()):
            if seq >= s.seq:
                lat.append(t - s.sent_at)
                if seq == s.seq:
                    direct.append(t - s.sent_at)
                    lat_in.append(made - s.sent_at)
                    lat_out.append(t - made)
                break
    p, dp = _percentiles(lat), _percentiles(direct)
    return {"matched": len(lat), "p50_s": p[0], "p95_s": p[1], "p99_s": p[2],
            "max_s": _r(max(lat)) if lat else None,
            "direct": len(direct), "direct_p50_s": dp[0], "direct_p95_s": dp[1],
            "direct_p99_s": dp[2],
            "direct_in_p50_s": _percentiles(lat_in)[0], "direct_in_p95_s": _percentiles(lat_in)[1],
            "direct_out_p50_s": _percentiles(lat_out)[0],
            "direct_out_p95_s": _percentiles(lat_out)[1]}


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def memory_phase(worker: _Worker, songs: list[Path], cfg: BenchConfig, detector, *,
                 say: Callable[[str], None]) -> dict:
    """RSS per open track, and the serialised record size, on a warm worker.

    Steps, each with the first half of a song per track, sent round-robin
    (see :func:`_send_tracks`): ``memory_tracks / 4`` tracks sent *with* an
    end chunk (closed once scored: the same kind of traffic, no state kept),
    then idle RSS; then ``memory_tracks`` tracks left open, in
    two groups, RSS after each. ``rss_per_track_kb`` = (RSS with all open -
    idle RSS) / tracks; ``rss_marginal_kb`` = growth over the second group /
    its tracks; ``rss_traffic_kb`` = growth over the closed tracks / their
    count (allocator retention from traffic alone).
    """
    from models.audio import decode
    from stream_app.ingest import check_chunk_seconds
    from stream_app.changelog_size import stored_bytes
    from stream_app.tracks import TrackRecord

    n_frames = check_chunk_seconds(cfg.chunk_seconds)
    decoded = [decode(p) for p in songs]
    half = max(1, math.ceil(len(decoded[0]) / n_frames) // 2)
    m = cfg.memory_tracks
    closed, first = max(1, m // 4), m // 2
    say(f"memory: {closed} closed tracks, then {m} open tracks, "
        f"{half * cfg.chunk_seconds:g} s each")
    time.sleep(1.0)
    before = _steady_rss(worker)
    _send_tracks(worker, decoded, [f"memc-{i + 1:03d}" for i in range(closed)], half, cfg,
                 close=True)
    idle = _steady_rss(worker)
    rss = {}
    for lo, hi in ((0, first), (first, m)):
        if hi > lo:
            _send_tracks(worker, decoded, [f"mem-{i + 1:03d}" for i in range(lo, hi)], half, cfg)
            rss[hi] = _steady_rss(worker)
    opened = rss[m]
    # The record the worker's table holds for such a track: same audio, same scorer.
    scorer = detector.scorer
    state = scorer.step([(scorer.init_state("mem-001"), decoded[0][: half * n_frames])])[0]
    record = TrackRecord("mem-001", next_seq=half, last_seen=time.time(), state=state)
    full = scorer.step([(scorer.init_state("full"), decoded[0][: len(decoded[0]) - n_frames])])[0]
    out = {"tracks": m, "open_audio_s": _r(half * cfg.chunk_seconds),
           "rss_before_mb": _r(before / 2**20), "rss_idle_mb": _r(idle / 2**20),
           "rss_open_mb": _r(opened / 2**20),
           "rss_per_track_kb": _r((opened - idle) / m / 1024),
           "rss_marginal_kb": _r((opened - rss[first]) / (m - first) / 1024) if first else None,
           "rss_traffic_kb": _r((idle - before) / closed / 1024),
           "record_bytes": stored_bytes(record, context_chunks=scorer.cfg.context_chunks),
           "record_bytes_full_track": stored_bytes(TrackRecord("full", state=full),
                                                   context_chunks=scorer.cfg.context_chunks),
           "full_track_s": _r(cfg.seconds - cfg.chunk_seconds)}
    say(f"memory: RSS idle {idle / 2**20:.0f} MB, {opened / 2**20:.0f} MB with {m} open tracks: "
        f"{out['rss_per_track_kb']:.0f} KB per track ({out['rss_marginal_kb']} KB marginal, "
        f"{out['rss_traffic_kb']} KB per closed track); record {out['record_bytes']:,} B")
    return out


def _send_tracks(worker: _Worker, decoded: list[np.ndarray], track_ids: list[str], half: int,
                 cfg: BenchConfig, *, close: bool = False) -> None:
    """Send the first ``half`` chunks of a song per track (the last one ``end`` if ``close``).

    In rounds of about ``ROUND_EVENTS`` chunk events (a few chunks of every
    track), each round sent once the worker has accepted the previous one
    (``hookstream_chunks_total``): many tracks streaming side by side, without
    a backlog. (At full speed Faust
    buffers thousands of 176 KB chunk events, and the allocator keeps that
    memory after they are scored, which would swamp the per-track figure.)
    Returns once every track is open (``hookstream_active_tracks``) or closed
    (``hookstream_tracks_finished_total``).
    """
    from stream_app.ingest import chunk_events, make_producer

    settings = worker.settings
    n_frames = round(cfg.chunk_seconds * 22_050)
    chunks_key = ("hookstream_chunks_total", ())
    done_key = (("hookstream_tracks_finished_total", (("how", "ended"),)) if close
                else ("hookstream_active_tracks", ()))
    per_round = max(1, ROUND_EVENTS // len(track_ids))
    before = worker.metrics()
    streams = []
    for i, tid in enumerate(track_ids):
        song = decoded[i % len(decoded)]
        # closed: the half song as a whole track (its last chunk is the end chunk);
        # open: the first half of the whole song's chunks, so no end chunk
        streams.append(chunk_events(tid, song[: half * n_frames] if close else song,
                                    chunk_seconds=cfg.chunk_seconds))
    producer = make_producer(settings)
    deadline = time.monotonic() + cfg.timeout_s
    try:
        sent = 0
        while sent < half:
            n = min(per_round, half - sent)
            for tid, values in zip(track_ids, streams):
                for _ in range(n):
                    producer.send(settings.topics.chunks, key=tid.encode(), value=next(values))
            producer.flush()
            sent += n
            _wait_metric(worker, chunks_key, before.get(chunks_key, 0.0) + sent * len(track_ids),
                         deadline, what=f"{sent} of {half} chunks per track")
    finally:
        producer.close(timeout=10)
    _wait_metric(worker, done_key, before.get(done_key, 0.0) + len(track_ids), deadline,
                 what=f"{len(track_ids)} tracks {'closed' if close else 'open'}")
    time.sleep(1.0)  # the last batch's table writes and changelog sends settle


def _wait_metric(worker: _Worker, key: tuple, target: float, deadline: float, *, what: str) -> None:
    while True:
        value = worker.metrics().get(key, 0.0)
        if value >= target:
            return
        worker.check_alive()
        if time.monotonic() > deadline:
            raise HookstreamError(f"memory phase: no {what} in time ({key[0]} = {value:g}, "
                                  f"waiting for {target:g}); worker log {worker.log_path}")
        time.sleep(0.05)


def _steady_rss(worker: _Worker, samples: int = 5) -> int:
    values = []
    for _ in range(samples):
        values.append(worker.rss())
        time.sleep(0.2)
    return int(np.median(values))


# ---------------------------------------------------------------------- metrics

def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> ``{(sample name, sorted label pairs): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _delta(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def histogram_summary(samples: dict[tuple[str, tuple], float], name: str) -> dict:
    """Count, mean and p50/p95/p99 (linear within buckets, as PromQL's histogram_quantile)."""
    buckets = sorted((float(dict(labels)["le"]), v) for (n, labels), v in samples.items()
                     if n == f"{name}_bucket")
    count = samples.get((f"{name}_count", ()), 0.0)
    total = samples.get((f"{name}_sum", ()), 0.0)
    out = {"count": int(count), "mean_s": _r(total / count) if count else None}
    for q in (0.5, 0.95, 0.99):
        out[f"p{round(q * 100)}_s"] = _r(bucket_quantile(q, buckets)) if count else None
    return out


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Quantile ``q`` of a histogram given as sorted (upper bound, cumulative count) pairs."""
    total = buckets[-1][1]
    rank = q * total
    lo_bound, lo_count = 0.0, 0.0
    for bound, cum in buckets:
        if cum >= rank:
            if math.isinf(bound):
                return lo_bound
            if cum == lo_count:
                return bound
            return lo_bound + (bound - lo_bound) * (rank - lo_count) / (cum - lo_count)
        lo_bound, lo_count = bound, cum
    return lo_bound


# ---------------------------------------------------------------------- helpers

def _topic_totals(settings, topic: str, *, idle_s: float = 0.5) -> tuple[int, int]:
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


def _own_cpu() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def _crc32c_impl() -> str:
    """Which CRC-32C kafka-python uses for record batches (the C one needs ``pip install crc32c``)."""
    try:
        from kafka.record import util
    except ImportError:
        return "unknown"
    return "c" if getattr(util, "crc32c_c", None) else "pure-python"


def _write_settings_yaml(path: Path, settings) -> None:
    import yaml

    data = json.loads(json.dumps(dataclasses.asdict(settings)))  # tuples -> lists
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _percentiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    p = np.percentile(np.asarray(values), [50, 95, 99])
    return _r(p[0]), _r(p[1]), _r(p[2])


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _r(x: float, digits: int = 4) -> float:
    """Round to ``digits`` significant digits (figures, not noise)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return round(float(x), max(0, digits - 1 - int(math.floor(math.log10(abs(x))))))


# ----------------------------------------------------------------------- report

def format_report(r: dict) -> str:
    """The results as the readable report ``hookstream bench`` prints."""
    c, mach, off, st = r["checkpoint"], r["machine"], r["offline"], r["streaming"]
    lat, mem, a = r["latency"], r["memory"], r["args"]
    hist = lat["worker_histogram"]
    mb = 2 ** 20
    lines = [
        f"hookstream bench: {c['name']} ({c['arch']}, {c['parameters'] / 1e6:.1f} M parameters, "
        f"{'trained' if c['trained'] else 'untrained'}) on {mach['device']}",
        f"  {mach['cpus']} CPUs, torch {mach['torch_threads']} threads, kafka-python CRC-32C "
        f"{mach['kafka_python_crc32c']}; load average {_fmt_load(mach.get('load_avg_start'))} "
        f"at start, {_fmt_load(mach.get('load_avg_end'))} at end",
        "",
        f"offline detect: {off['tracks']} tracks x {a['seconds']:g} s = {off['audio_s']:g} s of audio",
        f"  decode        {off['decode_s']:8.2f} s  {off['decode_audio_s_per_s']:8.0f} x real time",
        f"  score         {off['score_s']:8.2f} s  {off['score_audio_s_per_s']:8.0f} x real time",
        f"  decode+score  {off['decode_s'] + off['score_s']:8.2f} s  "
        f"{off['audio_s_per_s']:8.0f} x real time  (CPU {off['cpu_s']:.2f} s: "
        f"{off['audio_s_per_cpu_s']:.0f} audio s per CPU s)",
        "",
        f"streaming, full speed, 1 worker: {st['audio_s']:g} s of audio ({st['chunks']} chunks, "
        f"{st['chunk_bytes'] / mb:.0f} MB) in {st['wall_s']:.1f} s",
        f"  {st['audio_s_per_s']:.0f} x real time = {st['ratio_to_offline']:.2f} x offline "
        f"(CPU per audio second: {st['cpu_ratio_to_offline']:.2f} x offline)",
        f"  ingest (decode, encode, produce, acks) took {st['ingest_s']:.1f} s "
        f"({st['ingest_audio_s_per_s']:.0f} x real time)",
        f"  scorer busy {st['scorer_s']:.1f} s ({100 * st['scorer_share_of_wall']:.0f}% of wall) "
        f"in {st['scorer_batches']} batches of {st['mean_batch_tracks']} tracks / "
        f"{st['mean_batch_chunks']} chunk events on average",
        f"  CPU time: worker {st['cpu_s']['worker']:.1f} s, broker {st['cpu_s']['broker']:.1f} s, "
        f"bench (ingest, subscribe) {st['cpu_s']['bench']:.1f} s",
        f"  table changelog: {st['changelog_records']} records, "
        f"{st['changelog_bytes'] / mb:.1f} MB "
        f"({st['changelog_bytes'] / max(st['chunk_bytes'], 1):.2f} x the chunk bytes)",
        "",
        f"latency: {lat['tracks']} tracks x {lat['track_s']:g} s ingested in real time, "
        "provisional_min_interval_s 0",
        f"  chunk published -> first provisional event including it received: "
        f"p50 {_s(lat['p50_s'])}  p95 {_s(lat['p95_s'])}  p99 {_s(lat['p99_s'])}  "
        f"max {_s(lat['max_s'])}",
        f"    {lat['matched']} of {lat['chunks']} chunks matched an event "
        f"({lat['provisional_events']} provisional events)",
        f"  chunks whose own event it was ({lat['direct']}): p50 {_s(lat['direct_p50_s'])}  "
        f"p95 {_s(lat['direct_p95_s'])}  p99 {_s(lat['direct_p99_s'])}",
        f"    published -> event made (emitted_at): p50 {_s(lat['direct_in_p50_s'])}  "
        f"p95 {_s(lat['direct_in_p95_s'])}; made -> received: p50 {_s(lat['direct_out_p50_s'])}  "
        f"p95 {_s(lat['direct_out_p95_s'])}",
        f"  worker histogram hookstream_chunk_to_provisional_seconds (receipt -> event made): "
        f"n {hist['count']}, mean {_s(hist['mean_s'])}, p50 {_s(hist['p50_s'])}, "
        f"p95 {_s(hist['p95_s'])}, p99 {_s(hist['p99_s'])}",
        f"  table changelog: {lat['changelog_records']} records, "
        f"{lat['changelog_bytes'] / mb:.1f} MB"
        + (f" ({lat['changelog_bytes'] / lat['chunk_bytes']:.2f} x the chunk bytes)"
           if lat.get("chunk_bytes") else ""),
        "",
        f"memory: {mem['tracks']} open tracks of {mem['open_audio_s']:g} s each",
        f"  worker RSS fresh {mem['rss_fresh_mb']:.0f} MB, warm {mem['rss_before_mb']:.0f} MB, "
        f"idle after the same traffic in closed tracks {mem['rss_idle_mb']:.0f} MB "
        f"({_kb(mem['rss_traffic_kb'])}), open {mem['rss_open_mb']:.0f} MB",
        f"  (open - idle) / tracks: {mem['rss_per_track_kb']:.0f} KB per open track; "
        f"second half of the tracks alone: {_kb(mem['rss_marginal_kb'])}",
        f"  serialized TrackRecord: {mem['record_bytes']:,} B per open track "
        f"({mem['record_bytes_full_track']:,} B at {mem['full_track_s']:g} s)",
    ]
    if "profile" in r:
        p = r["profile"]
        lines += ["", f"profile: one {p['track_s']:g} s track through the scorer (seconds)",
                  f"  {'':<22}{'total':>8}{'mel':>8}{'cnn':>8}{'lstm':>8}{'window':>8}"
                  f"{'other':>8}{'x rt':>8}"]
        for mode, label in (("whole", "whole track"), ("streamed", "2 s pieces")):
            m = p[mode]
            stg = m["stages_s"]
            label = f"{label} ({m['pieces']})"
            lines.append(f"  {label:<22}{m['total_s']:8.2f}{stg['mel']:8.2f}{stg['cnn']:8.2f}"
                         f"{stg['lstm']:8.2f}{stg['window']:8.2f}{stg['other']:8.2f}"
                         f"{m['audio_s_per_s']:8.0f}")
    if "changelog" in r:
        from stream_app.changelog_size import report_lines
        lines += [""] + report_lines(r["changelog"])
    lines += ["", f"total {r['total_s']:.0f} s"]
    return "\n".join(lines)


def _kb(x) -> str:
    return "n/a" if x is None else f"{x:.0f} KB each"


def _s(x) -> str:
    return "n/a" if x is None else f"{x:.3f} s"


def _fmt_load(x) -> str:
    return "n/a" if not x else " ".join(f"{v:.2f}" for v in x)
