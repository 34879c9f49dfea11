"""Streaming scorer: chunk-by-chunk equals the whole-track pass; batched equals single."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from models import checkpoint, mel, nets
from models.config import ScorerConfig
from models.errors import InputError
from models.resample import resample
from models.scorer import STATE_VERSION, Scorer, TrackState, whole_track_chunks

TEST_DEVICE = os.environ.get("HOOKSTREAM_TEST_DEVICE", "cpu")  # scripts/gpu-check.sh: cuda; tests/conftest.py checks it
LABELS = ("major", "minor", "slow", "medium", "fast")


STRUCTURE = dict(n_chroma=12, n_repetition=7, track_norm=True, chorus_logits=True)
# The default model's kind: slot chroma in the chunk vectors, phrase links, a second Bi-LSTM.
LINKS = dict(STRUCTURE, fine_slots=10, phrase_links=True, n_sections=4, lstm2_hidden=8)


def untrained_ckpt(arch="huang", full=False, structure=False):
    """An untrained checkpoint (tiny unless ``full``); ``structure``: True for chunk chroma,
    "links" for the default model's kind."""
    model = (nets.huang(5) if arch == "huang" else nets.cran(5)) if full else nets.tiny(arch)
    if structure:
        model = dataclasses.replace(model, **(LINKS if structure == "links" else STRUCTURE))
    ckpt = checkpoint.untrained(model, LABELS, seed=1)
    return checkpoint.Checkpoint(**{**ckpt.__dict__, "norm_mean": np.full(128, -3.0, np.float32),
                                    "norm_std": np.full(128, 4.0, np.float32)})


def make_scorer(arch="huang", full=False, structure=False, **cfg):
    return Scorer(untrained_ckpt(arch, full, structure), ScorerConfig(**cfg), device=TEST_DEVICE)


def song(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 22050)) / 22050
    env = 0.5 + 0.5 * np.sin(2 * np.pi * t / 17.0)
    x = env * np.sin(2 * np.pi * (220 + 50 * np.sin(t)) * t) + 0.05 * rng.standard_normal(len(t))
    return (0.3 * x).astype(np.float32)


def reference(scorer, samples):
    """The model's whole-track forward pass on the whole signal (no scorer code)."""
    logmel, chroma = mel.features(samples, scorer.mel_cfg)
    frames = (logmel - scorer.mean) / scorer.std
    chunks = whole_track_chunks(frames, scorer.cfg, scorer.min_tail)
    cf = scorer.cfg.chunk_frames
    rows = []
    for i in range(len(chunks)):  # slot means (fine models; empty slots of a partial chunk 0), mean
        frames_i = chroma[i * cf:(i + 1) * cf]
        slots = scorer.ckpt.model.fine_slots
        width = cf // slots if slots else cf
        fine = [frames_i[k:k + width].mean(axis=0) if k < len(frames_i) else np.zeros(12)
                for k in range(0, cf, width)] if slots else []
        rows.append(np.concatenate(fine + [frames_i.mean(axis=0)]))
    chunk_chroma = torch.tensor(np.array(rows, np.float32))[None]
    with torch.inference_mode():
        if all(c.shape[1] == cf for c in chunks):
            x = torch.from_numpy(np.stack(chunks)[None])
            att, y = scorer.net(x, torch.tensor([len(chunks)]),
                                chunk_chroma if scorer.n_chroma else None)
        else:  # partial final chunk: embed separately, attend over all
            emb = torch.cat([scorer.net.embed(torch.from_numpy(np.ascontiguousarray(c[None])))
                             for c in chunks])[None]
            if scorer.n_chroma:
                emb = torch.cat([emb, chunk_chroma], dim=2)
            u, y = scorer.net.attend(emb, torch.tensor([len(chunks)]))
            att = torch.softmax(u, dim=1)
    return att[0].numpy(), y[0].numpy()


def stream(scorer, samples, cuts, track_id="t"):
    state = scorer.init_state(track_id)
    provisional = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(samples)]):
        state = scorer.step([(state, samples[a:b])])[0]
        provisional.append(scorer.provisional(state))
    return state, provisional


# phrase links are a Huang-architecture option (ModelConfig refuses cran)
@pytest.mark.parametrize("arch, structure", [("huang", False), ("huang", True), ("huang", "links"),
                                             ("cran", False), ("cran", True)])
@pytest.mark.parametrize("seconds", [40.0, 31.7, 2.5])
def test_streaming_final_equals_whole_track(arch, seconds, structure, seed):
    scorer = make_scorer(arch, structure=structure)
    x = song(seconds)
    cuts = np.sort(np.random.default_rng(3).integers(0, len(x), 12))
    state, _ = stream(scorer, x, cuts)
    final = scorer.finalize([state])[0]
    att, y = reference(scorer, x)
    assert final.final and len(final.attention) == len(att)
    np.testing.assert_allclose(final.attention, att, atol=1e-5)
    np.testing.assert_allclose(list(final.labels.values()), y, atol=1e-5)
    if structure:  # the window reads sigmoid(logits): same order as the attention
        assert final.chorusness is not None and len(final.chorusness) == len(att)
        assert np.all((final.chorusness > 0) & (final.chorusness < 1))
        logit = np.log(final.chorusness / (1 - final.chorusness))  # sigmoid^-1
        shift = logit - np.log(final.attention)  # softmax of the same logits: a constant
        np.testing.assert_allclose(shift, shift[0], atol=1e-3)
    else:
        assert final.chorusness is None


def test_full_size_huang_streaming_equals_whole_track(seed):
    scorer = make_scorer("huang", full=True)
    x = song(50.0)
    state, _ = stream(scorer, x, np.arange(1, 50) * 22050)
    final = scorer.finalize([state])[0]
    att, _ = reference(scorer, x)
    assert np.max(np.abs(final.attention - att)) <= 1e-5


def test_provisional_after_every_chunk_and_bounded_context(seed):
    scorer = make_scorer(context_chunks=4)
    x = song(30.0)
    state, prov = stream(scorer, x, np.arange(1, 30) * 22050)
    counts = [len(p.attention) for p in prov]
    assert counts == sorted(counts) and counts[-1] == 9  # 30 s = 9 full chunks + tail
    assert all(abs(p.attention.sum() - 1) < 1e-5 for p in prov if len(p.attention))
    # Provisional scores of the newest chunks were computed from at most 4 chunks of context:
    # recomputing them that way gives the same logits.
    ctx = torch.from_numpy(state.embeddings[-4:][None])
    with torch.inference_mode():
        u, _ = scorer.net.attend(ctx, torch.tensor([4]))
    np.testing.assert_allclose(state.logits[-4:], u[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("structure", [False, True, "links"])
def test_batched_equals_single(structure, seed):
    scorer = make_scorer(structure=structure)
    tracks = {f"t{i}": song(s, seed=i) for i, s in enumerate([7.0, 33.0, 12.5, 0.5, 20.0])}
    single = {}
    for tid, x in tracks.items():
        state, _ = stream(scorer, x, np.arange(1, int(len(x) / 22050)) * 22050, tid)
        single[tid] = scorer.finalize([state])[0]
    states = {tid: scorer.init_state(tid) for tid in tracks}
    step = 30000  # samples per step, not aligned with chunks
    for start in range(0, max(len(x) for x in tracks.values()), step):
        items = [(states[t], x[start:start + step]) for t, x in tracks.items() if start < len(x)]
        for s in scorer.step(items):
            states[s.track_id] = s
    batched = {s.track_id: s for s in scorer.finalize(list(states.values()))}
    for tid in tracks:
        np.testing.assert_allclose(batched[tid].attention, single[tid].attention, atol=1e-5)
        np.testing.assert_allclose(batched[tid].slot_energy, single[tid].slot_energy, atol=1e-6)
        assert batched[tid].duration_s == single[tid].duration_s


@pytest.mark.parametrize("structure", [False, True, "links"])
def test_state_roundtrip_reproduces_output(structure, seed):
    scorer = make_scorer(structure=structure)
    x = song(20.0)
    state = scorer.step([(scorer.init_state("a/b"), x[:200_000])])[0]
    restored = TrackState.from_bytes(state.to_bytes())
    assert restored.track_id == "a/b" and restored.n_samples == state.n_samples
    a = scorer.finalize(scorer.step([(state, x[200_000:])]))[0]
    b = scorer.finalize(scorer.step([(restored, x[200_000:])]))[0]
    np.testing.assert_array_equal(a.attention, b.attention)
    if structure:
        np.testing.assert_array_equal(restored.pending_chroma, state.pending_chroma)


def test_state_rejects_garbage_and_other_versions():
    with pytest.raises(InputError, match="not a serialised TrackState"):
        TrackState.from_bytes(b"garbage-bytes-here")
    scorer = make_scorer()
    good = scorer.init_state("x").to_bytes()
    v = f'"version":"{STATE_VERSION}"'.encode()
    assert v in good
    with pytest.raises(InputError, match="version 9"):
        TrackState.from_bytes(good.replace(v, b'"version":"9"'))
    # A state written by the previous release (version 2, no resampler) is refused, not misread.
    with pytest.raises(InputError, match=f"version 2, this hookstream reads version {STATE_VERSION}"):
        TrackState.from_bytes(good.replace(v, b'"version":"2"'))
    # Version 3 (before slot chroma joined the chunk vectors) is refused too.
    with pytest.raises(InputError, match=f"version 3, this hookstream reads version {STATE_VERSION}"):
        TrackState.from_bytes(good.replace(v, b'"version":"3"'))


def test_a_state_from_another_models_chunk_vectors_is_refused():
    links, plain = make_scorer(structure="links"), make_scorer(structure=True)
    x = song(8.0)
    state = links.step([(links.init_state("t"), x)])[0]
    assert state.embeddings.shape[1] == 16 + 120 + 12  # tiny CNN, slot chroma, chunk chroma
    for call in (lambda: plain.step([(state, x[:100])]), lambda: plain.finalize([state])):
        with pytest.raises(InputError, match=r"track 't': its state holds chunk vectors of width "
                                             r"148, this model .* makes 28"):
            call()


def pieces(x, sizes):
    out, i, k = [], 0, 0
    while i < len(x):
        out.append(x[i:i + sizes[k % len(sizes)]])
        i, k = i + sizes[k % len(sizes)], k + 1
    return out


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000, 96000, 192000])
def test_native_rate_stream_equals_resampled_whole(rate, seed):
    """A track streamed at its own rate scores as the whole signal resampled once (offline)."""
    scorer = make_scorer(structure=True)
    x = resample(song(14.0), 22050, rate)
    state = scorer.init_state("r", sample_rate=rate)
    for piece in pieces(x, [9973, 1, 40_009, 17]):
        state = scorer.step([(state, piece)])[0]
    streamed = scorer.finalize([state])[0]
    offline = scorer.finalize(scorer.step([(scorer.init_state("r"), resample(x, rate, 22050))]))[0]
    assert streamed.duration_s == offline.duration_s
    np.testing.assert_allclose(streamed.attention, offline.attention, atol=1e-6)
    np.testing.assert_allclose(streamed.slot_energy, offline.slot_energy, atol=1e-5)


def test_state_roundtrip_mid_stream_keeps_the_resampler(seed):
    scorer = make_scorer()
    x = resample(song(12.0), 22050, 44100)
    state = scorer.step([(scorer.init_state("t", sample_rate=44100), x[:123_457])])[0]
    assert len(state.resampler.carry) > 0
    restored = TrackState.from_bytes(state.to_bytes())
    assert restored.sample_rate == 44100 and restored.received_samples == 123_457
    np.testing.assert_array_equal(restored.resampler.carry, state.resampler.carry)
    a = scorer.finalize(scorer.step([(state, x[123_457:])]))[0]
    b = scorer.finalize(scorer.step([(restored, x[123_457:])]))[0]
    np.testing.assert_array_equal(a.attention, b.attention)
    np.testing.assert_array_equal(a.slot_energy, b.slot_energy)


def test_short_track_without_chunks_and_too_long_track():
    scorer = make_scorer(max_duration_s=5.0)
    state = scorer.step([(scorer.init_state("s"), song(0.5))])[0]
    final = scorer.finalize([state])[0]
    assert len(final.attention) == 0 and final.labels is None
    assert final.duration_s == pytest.approx(0.5)
    with pytest.raises(InputError, match="longer than the maximum"):
        scorer.step([(state, song(5.0))])


def test_state_keeps_no_view_of_the_callers_samples():
    """The caller may reuse its buffer after a step (the identity resampler passes it on)."""
    scorer = make_scorer()
    x = song(7.3)
    buf = x[:50_000].copy()
    state = scorer.step([(scorer.init_state("v"), buf)])[0]
    buf[:] = 1.0  # the caller overwrites its buffer
    state = scorer.step([(state, x[50_000:])])[0]
    want = scorer.step([(scorer.init_state("v"), x)])[0]
    np.testing.assert_array_equal(state.tail, want.tail)
    np.testing.assert_array_equal(scorer.finalize([state])[0].attention,
                                  scorer.finalize([want])[0].attention)


def test_rejects_nonfinite_samples_and_duplicate_tracks():
    scorer = make_scorer()
    bad = song(1.0)
    bad[10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        scorer.step([(scorer.init_state("n"), bad)])
    s = scorer.init_state("d")
    with pytest.raises(InputError, match="twice"):
        scorer.step([(s, song(1.0)), (s, song(1.0))])


def _stream(scorer, samples, piece, due):
    """Feed ``samples`` in pieces; ``due(i)`` says whether step i refreshes; return the states."""
    state = scorer.init_state("lazy")
    states = []
    for i, a in enumerate(range(0, len(samples), piece)):
        state = scorer.step([(state, samples[a:a + piece])], refresh=[due(i)])[0]
        states.append(state)
    return states


@pytest.mark.parametrize("every", [3, 7, 50])
def test_lazy_refresh_equals_always_refreshing(every):
    """A track refreshed every ``every`` 2 s steps: each refreshed step's provisional logits
    equal (to float rounding) those of a scorer refreshing at every step (context 5 chunks, so chunks leave the
    context between refreshes); its final is exact either way."""
    from models import checkpoint as ckpts
    from models.config import ScorerConfig
    from models.examples import synth_song

    ckpt = ckpts.load(None)
    scorer = Scorer(ckpt, ScorerConfig(context_chunks=5))
    samples = synth_song(3)[0][: 22050 * 60]
    piece = 2 * 22050
    always = _stream(scorer, samples, piece, lambda i: True)
    lazy = _stream(scorer, samples, piece, lambda i: i % every == every - 1)
    for i, (a, b) in enumerate(zip(always, lazy)):
        if i % every == every - 1:
            assert b.n_chunks == a.n_chunks
            # equal up to float rounding: the catch-up contexts run in one batched call
            np.testing.assert_allclose(b.logits, a.logits, rtol=1e-5, atol=1e-6)
        else:
            assert b.n_chunks <= a.n_chunks
    fa, fb = scorer.finalize([always[-1]])[0], scorer.finalize([lazy[-1]])[0]
    np.testing.assert_array_equal(fa.attention, fb.attention)
    assert any(b.n_chunks < a.n_chunks for a, b in zip(always, lazy))  # some were skipped
