"""Profile phase: where the scorer's time goes, whole track and in 2 s pieces."""

from __future__ import annotations

import time
from typing import Callable

from stream_app.bench.config import PROFILE_PIECE_S, WARMUP_SECONDS
from stream_app.bench.figures import sig
from stream_app.bench.songs import synth_track


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
    out = {"track_s": sig(seconds)}
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
        parts = {k: sig(times.get(k, 0.0)) for k in ("mel", "cnn", "lstm", "window")}
        parts["other"] = sig(total - sum(times.values()))
        out[mode] = {"pieces": pieces, "total_s": sig(total), "audio_s_per_s": sig(seconds / total),
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
