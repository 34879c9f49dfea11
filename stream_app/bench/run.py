"""``run_bench``: every phase in order, one broker, two workers, all shut down before it returns."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TextIO

from stream_app.bench.config import WARMUP_SECONDS, BenchConfig
from stream_app.bench.figures import crc32c_impl, loadavg, sig
from stream_app.bench.latency import latency_phase
from stream_app.bench.memory import memory_phase
from stream_app.bench.offline import offline_phase
from stream_app.bench.profile import profile_phase
from stream_app.bench.songs import write_songs
from stream_app.bench.streaming import streaming_phase
from stream_app.bench.worker import WorkerHandle, write_settings_yaml


def run_bench(cfg: BenchConfig, *, progress: TextIO = sys.stderr) -> dict:
    """Run every phase; return the results (see docs/performance.md for the keys)."""
    import torch

    from models.config import DetectConfig, load_yaml
    from models.detect import Detector

    t_start = time.monotonic()
    say = _Progress(progress, t_start)
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    work = Path(tempfile.mkdtemp(prefix="hookstream-bench-"))
    ok = False
    try:
        detect_yaml = _detect_yaml(cfg.device, work)
        detect_cfg = load_yaml(DetectConfig, detect_yaml)
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
                        "kafka_python_crc32c": crc32c_impl(),
                        "load_avg_start": loadavg()},
            "args": dataclasses.asdict(cfg),
        }
        songs = write_songs(work / "songs", cfg.tracks, cfg.seconds, seed0=0)
        say(f"wrote {len(songs)} songs of {cfg.seconds:g} s")
        if cfg.sweep:
            out["sweep"] = _sweep(cfg, ckpt_path, detect_yaml, work, say=say)
        elif "offline" in cfg.phases:
            out["offline"] = offline_phase(detector, songs, say=say)
        if not cfg.sweep and "profile" in cfg.phases and cfg.profile_seconds > 0:
            out["profile"] = profile_phase(detect_cfg, ckpt, cfg.profile_seconds, say=say)
        if not cfg.sweep and {"streaming", "latency", "memory"} & set(cfg.phases):
            out.update(_streaming_phases(cfg, detector, ckpt_path, detect_yaml, songs, work,
                                         say=say))
        if not cfg.sweep and "changelog" in cfg.phases:
            from stream_app.changelog_size import bench_phase

            out["changelog"] = bench_phase(detector, say=say)
        if "streaming" in out and "offline" in out:
            st, off = out["streaming"], out["offline"]
            st["ratio_to_offline"] = sig(st["audio_s_per_s"] / off["audio_s_per_s"])
            st["cpu_ratio_to_offline"] = sig(sum(st["cpu_s"].values()) / st["audio_s"]
                                             / (off["cpu_s"] / off["audio_s"]))
        out["machine"]["load_avg_end"] = loadavg()
        out["total_s"] = sig(time.monotonic() - t_start)
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


def _streaming_phases(cfg: BenchConfig, detector, ckpt_path: Path, detect_yaml: Path,
                      songs: list[Path], work: Path, *, say: Callable[[str], None]) -> dict:
    import psutil

    from stream_app.broker import EmbeddedBroker, ensure_topics
    from stream_app.settings import load_settings

    out: dict = {}
    warm = write_songs(work / "warmup", 1, WARMUP_SECONDS, seed0=99, prefix="warmup")[0]
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        say(f"broker at {broker.bootstrap}")
        broker_proc = psutil.Process(broker.pid)

        # -- throughput: the shipped stream settings
        settings = load_settings(None, bootstrap=broker.bootstrap)
        ensure_topics(broker.bootstrap, settings.topic_partitions())
        if "streaming" in cfg.phases:
            w = WorkerHandle(settings, ckpt_path, work / "worker-throughput.log",
                             app_id="hookstream-bench", detect_config=detect_yaml)
            try:
                w.start(say, torch_threads=cfg.torch_threads)
                w.warm_up(warm, "warmup-throughput", cfg, say)
                out["streaming"] = streaming_phase(w, songs, cfg, broker_proc, say=say)
            finally:
                w.stop()
        if not {"latency", "memory"} & set(cfg.phases):
            say("worker and broker stopped")
            return out

        # -- latency and memory: provisional events unthrottled, topics of their own
        lat_yaml = work / "stream-latency.yaml"
        write_settings_yaml(lat_yaml, load_settings(
            None, bootstrap=broker.bootstrap,
            topics={k: f"bench-lat.{v}" for k, v in
                    dataclasses.asdict(settings.topics).items()},
            stream={"provisional_min_interval_s": 0.0, "idle_timeout_s": 3600.0}))
        settings = load_settings(lat_yaml)
        ensure_topics(broker.bootstrap, settings.topic_partitions())
        w = WorkerHandle(settings, ckpt_path, work / "worker-latency.log",
                         app_id="hookstream-bench-latency", config=lat_yaml,
                         detect_config=detect_yaml)
        try:
            w.start(say, torch_threads=cfg.torch_threads)
            fresh = {"rss_fresh_mb": sig(w.rss() / 2**20)}
            w.warm_up(warm, "warmup-latency", cfg, say)
            if "latency" in cfg.phases:
                rt = write_songs(work / "realtime", cfg.concurrency, cfg.realtime_seconds,
                                 seed0=100, prefix="rt")
                out["latency"] = latency_phase(w, rt, cfg, say=say)
            if "memory" in cfg.phases:
                out["memory"] = {**fresh, **memory_phase(w, songs, cfg, detector, say=say)}
        finally:
            w.stop()
    say("worker and broker stopped")
    return out


def _detect_yaml(device: str, work: Path) -> Path:
    """``configs/detect.yaml`` with ``device`` set: this process and the workers read it.

    Raises HookstreamError when a CUDA device is asked for and torch sees none.
    """
    import torch
    import yaml

    from models.config import CONFIG_DIR, read_yaml
    from models.errors import HookstreamError

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HookstreamError(f"--device {device}: no CUDA device here "
                              f"(torch {torch.__version__}: torch.cuda.is_available() is False)")
    raw = read_yaml(CONFIG_DIR / "detect.yaml") or {}
    raw["device"] = device
    path = work / "detect.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _sweep(cfg: BenchConfig, ckpt_path: Path, detect_yaml: Path, work: Path, *,
           say: Callable[[str], None]) -> dict:
    """The capacity sweep on a broker and worker of its own (see :mod:`stream_app.bench.sweep`)."""
    import psutil

    from stream_app.bench.sweep import sweep_phase, sweep_worker
    from stream_app.broker import EmbeddedBroker
    from stream_app.settings import load_settings

    warm = write_songs(work / "warmup", 1, WARMUP_SECONDS, seed0=99, prefix="warmup")[0]
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        say(f"broker at {broker.bootstrap}")
        w = sweep_worker(load_settings(None), ckpt_path, detect_yaml, work, broker.bootstrap)
        try:
            w.start(say, torch_threads=cfg.torch_threads)
            w.warm_up(warm, "warmup-sweep", cfg, say)
            out = sweep_phase(w, cfg.sweep, cfg, cfg.sweep_seconds, say=say,
                              broker_proc=psutil.Process(broker.pid))
        finally:
            w.stop()
    say("worker and broker stopped")
    return out
