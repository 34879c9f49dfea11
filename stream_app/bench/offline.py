"""Offline phase: decode and score files in this process, as ``hookstream detect`` does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from stream_app.bench.config import WARMUP_SECONDS
from stream_app.bench.figures import own_cpu, sig
from stream_app.bench.songs import synth_track


def offline_phase(detector, paths: list[Path], *, say: Callable[[str], None]) -> dict:
    """Decode and score each file as ``hookstream detect`` does; decode and score timed apart."""
    from models.audio import decode
    from models.detect import track_id_for

    sr = detector.ckpt.mel.sample_rate
    max_s = detector.cfg.scorer.max_duration_s
    detector.detect_samples("warmup", synth_track(99, WARMUP_SECONDS))  # lazy imports, caches
    decode_s = score_s = audio_s = 0.0
    cpu0 = own_cpu()
    for path in paths:
        t0 = time.perf_counter()
        samples = decode(path, sr=sr, max_duration_s=max_s)
        t1 = time.perf_counter()
        detector.detect_samples(track_id_for(path), samples)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        score_s += t2 - t1
        audio_s += len(samples) / sr
    cpu = own_cpu() - cpu0
    out = {"tracks": len(paths), "audio_s": sig(audio_s), "decode_s": sig(decode_s),
           "score_s": sig(score_s), "cpu_s": sig(cpu),
           "audio_s_per_s": sig(audio_s / (decode_s + score_s)),
           "audio_s_per_cpu_s": sig(audio_s / cpu),
           "score_audio_s_per_s": sig(audio_s / score_s),
           "decode_audio_s_per_s": sig(audio_s / decode_s)}
    say(f"offline: {audio_s:.0f} s of audio, decode {decode_s:.2f} s, score {score_s:.2f} s: "
        f"{out['audio_s_per_s']:.0f}x real time")
    return out
