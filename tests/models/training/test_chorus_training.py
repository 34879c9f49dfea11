"""Chorus-supervised training: per-chunk targets, two renders, chorus selection, detect reads it."""

import json

import numpy as np
import pytest
import soundfile as sf

from models import checkpoint as ckpts
from models.config import DetectConfig, MelConfig
from models.detect import Detector
from models.errors import ConfigError
from models.examples import SR, synth_song
import torch
import torch.nn.functional as F

from models.training.train import (SECTION_KINDS, TrainConfig, _SongArrays, chorus_frames,
                                   chorus_loss, chunk_values, section_frames, train)

# models.examples.synth_song's plan, as POP909 phrase labels (bar_s = 1).
PLAN = [("i", 4), ("A", 8), ("B", 8), ("A", 8), ("B", 8), ("x", 4), ("B", 8), ("o", 4)]


def plan_sections(bar_s=1.0):
    out, t = [], 0.0
    for label, bars in PLAN:
        out.append([label, t, t + bars * bar_s])
        t += bars * bar_s
    return out


def test_chorus_targets_are_the_share_of_chorus_frames():
    mel = MelConfig()
    frames = chorus_frames(400, [(3.0, 6.0)], mel)
    centres = (np.arange(400) * mel.hop_length + mel.n_fft / 2) / mel.sample_rate
    np.testing.assert_array_equal(frames, ((centres >= 3.0) & (centres < 6.0)).astype(np.float32))
    shares = chunk_values(frames, 0, [130, 130, 130, 10])
    assert shares[0] == pytest.approx(frames[:130].mean()) and 0 < shares[0] < 1
    assert shares[1] == pytest.approx(frames[130:260].mean())
    assert shares[3] == 0.0 and len(shares) == 4


def test_section_kinds_per_frame():
    kinds = section_frames(2000, plan_sections(), MelConfig())
    assert set(np.unique(kinds)) == {0, 1, 2}  # intro/bridge/outro, A, B; no later material
    frame_at = lambda t: int((t * 22050 - 1024) / 512)  # the frame centred at t seconds
    assert kinds[frame_at(2.0)] == 0 and kinds[frame_at(8.0)] == 1  # intro, first A (4-12 s)
    assert kinds[frame_at(15.0)] == 2 and kinds[frame_at(23.0)] == 1  # B (12-20 s), A again


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Six synthetic verse/chorus songs in two 'renders' (the second quieter and brighter)."""
    root = tmp_path_factory.mktemp("chorus")
    manifests = []
    for render, (gain, tilt) in {"a": (1.0, 0.0), "b": (0.4, 0.6)}.items():
        (root / render).mkdir()
        lines = []
        for i in range(6):
            x, chorus = synth_song(seed=i, bar_s=1.0)
            if tilt:  # a first difference: another "timbre"
                x = np.concatenate([[0.0], x[1:] - tilt * x[:-1]]).astype(np.float32)
            sf.write(root / render / f"s{i}.wav", gain * x, SR)
            lines.append(json.dumps({"audio": f"s{i}.wav", "id": f"s{i}", "labels": ["major"],
                                     "chorus": chorus, "sections": plan_sections(),
                                     "split": "val" if i >= 4 else "train"}))
        (root / render / "manifest.jsonl").write_text("\n".join(lines) + "\n")
        manifests.append(str(root / render / "manifest.jsonl"))
    return root, manifests


def _cfg(root, manifests, out, **kw):
    base = dict(manifest=manifests[0], extra_manifests=manifests[1:], out=str(out),
                name="test-chorus", cache_dir=str(root / "cache"),
                model={"preset": "tiny-huang", "n_chroma": 12, "n_repetition": 7,
                       "track_norm": True, "chorus_logits": True, "n_sections": 4},
                labels=["major", "minor"], optimizer="adam", lr=0.01, batch_size=4, epochs=4,
                patience=5, seed=0, max_chunks=0, device="cpu", num_threads=1,
                chorus_weight=1.0, section_weight=0.5, gain_db=3.0, select_on="chorus")
    base.update(kw)
    return TrainConfig(**base)


def test_chorus_model_trains_on_two_renders_and_detect_reads_its_chorusness(renders, tmp_path):
    root, manifests = renders
    result = train(_cfg(root, manifests, tmp_path / "m.safetensors"), progress=False,
                   command="pytest")
    ckpt = ckpts.load(result.checkpoint)
    assert ckpt.model.chorus_logits and ckpt.model.n_chroma == 12
    model_card = ckpt.provenance["model_card"]
    assert "chorus positions" in model_card["supervision"] and model_card["limits"]
    text = (tmp_path / "m.card.md").read_text()
    assert text.startswith("# Model card: test-chorus") and "c50" in text
    data = ckpt.provenance["data"]
    assert data["n_train"] == 8 and data["n_val"] == 4 and data["n_train_annotated"] == 8
    history = json.loads(result.history.read_text())
    assert all("val_chorus" in h and set(h["val_chorus_per_render"]) == set(manifests)
               for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # the joint loss goes down
    best = result.metrics["val_chorus"]
    assert 0 <= best["c50"] <= 1 and 0 <= best["precision"] <= 1 and best["songs"] == 4
    # Detection reads the chorusness (sigmoid of the logits), not the softmax attention.
    det = Detector(DetectConfig(device="cpu"), ckpt)
    x, _ = synth_song(seed=5, bar_s=1.0)
    d = det.detect_samples("s5", x)
    assert d.scores.chorusness is not None
    c, a = d.scores.chorusness, d.scores.attention
    assert len(c) == len(a) and np.all((c > 0) & (c < 1))
    # sigmoid and softmax of the same logits: log(c / (1 - c)) - log(a) is one constant.
    np.testing.assert_allclose(np.log(c / (1 - c)) - np.log(a), np.log(c[0] / (1 - c[0])) - np.log(a[0]),
                               atol=1e-3)


def test_chorus_weight_needs_chorus_logits(renders, tmp_path):
    root, manifests = renders
    with pytest.raises(ConfigError, match="chorus_logits"):
        _cfg(root, manifests, tmp_path / "m.safetensors", model={"preset": "tiny-huang"})
    with pytest.raises(ConfigError, match="n_sections"):
        _cfg(root, manifests, tmp_path / "m.safetensors",
             model={"preset": "tiny-huang", "chorus_logits": True})
    with pytest.raises(ConfigError, match="select_on"):
        _cfg(root, manifests, tmp_path / "m.safetensors", select_on="loss")


def test_later_weight_weighs_later_material_as_hard_negatives():
    later = SECTION_KINDS.index("later")
    section = np.array([0, 1, 2, 2, later, later], np.int64)
    target = np.array([0, 0, 1, 1, 0, 0], np.float32)
    song = _SongArrays(np.zeros((6, 1, 1), np.float32), None, None, target, section)
    plain = _SongArrays(np.zeros((4, 1, 1), np.float32), None, None, target[:4], None)
    u = torch.tensor([[0.5, -1.0, 2.0, 0.3, 1.5, 0.7], [0.1, 0.2, -0.4, 0.9, 0.0, 0.0]])
    t = torch.from_numpy(np.concatenate([target, target[:4]]))
    z = torch.cat([u[0], u[1, :4]])
    assert torch.allclose(chorus_loss(u, [song, plain]), F.binary_cross_entropy_with_logits(z, t))
    w = torch.tensor([1, 1, 1, 1, 3, 3, 1, 1, 1, 1], dtype=torch.float32)
    weighted = (F.binary_cross_entropy_with_logits(z, t, reduction="none") * w).sum() / w.sum()
    assert torch.allclose(chorus_loss(u, [song, plain], later_weight=3.0), weighted)
    # the later chunks' logits (1.5, 0.7) are wrong; weighting them raises the loss
    assert chorus_loss(u, [song, plain], later_weight=3.0) > chorus_loss(u, [song, plain])


def test_init_checkpoint_starts_from_its_weights_and_statistics(renders, tmp_path):
    root, manifests = renders
    first = ckpts.load(train(_cfg(root, manifests, tmp_path / "a.safetensors", epochs=1),
                             progress=False, command="pytest").checkpoint)
    # lr ~ 0: one more epoch from the first run's weights leaves them where they were
    tuned = ckpts.load(train(_cfg(root, manifests, tmp_path / "b.safetensors", epochs=1, lr=1e-12,
                                  later_weight=3.0, init_checkpoint=str(tmp_path / "a.safetensors")),
                             progress=False, command="pytest").checkpoint)
    for key, value in first.state_dict.items():
        torch.testing.assert_close(tuned.state_dict[key], value, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(tuned.norm_mean, first.norm_mean)
    assert tuned.provenance["config"]["init_checkpoint"] == str(tmp_path / "a.safetensors")
    fresh = ckpts.load(train(_cfg(root, manifests, tmp_path / "c.safetensors", epochs=1, lr=1e-12,
                                  seed=3), progress=False, command="pytest").checkpoint)
    assert not all(torch.equal(fresh.state_dict[k], v) for k, v in first.state_dict.items())
    with pytest.raises(ConfigError, match="init_checkpoint.*differ"):
        train(_cfg(root, manifests, tmp_path / "d.safetensors", epochs=1,
                   model={"preset": "tiny-huang", "n_chroma": 12, "n_repetition": 4,
                          "track_norm": True, "chorus_logits": True, "n_sections": 4},
                   init_checkpoint=str(tmp_path / "a.safetensors")), progress=False)
    with pytest.raises(ConfigError, match="later_weight"):
        _cfg(root, manifests, tmp_path / "e.safetensors", later_weight=0)


LINKS_MODEL = {"preset": "tiny-huang", "n_chroma": 12, "n_repetition": 7, "track_norm": True,
               "chorus_logits": True, "n_sections": 4, "fine_slots": 10, "phrase_links": True,
               "lstm2_hidden": 8, "dropout_in": 0.3}


def test_phrase_links_model_on_another_models_frozen_cnn(renders, tmp_path):
    root, manifests = renders
    base = ckpts.load(train(_cfg(root, manifests, tmp_path / "a.safetensors", epochs=1),
                            progress=False, command="pytest").checkpoint)
    result = train(_cfg(root, manifests, tmp_path / "l.safetensors", epochs=2, model=LINKS_MODEL,
                        cnn_from=str(tmp_path / "a.safetensors"), freeze_cnn=True),
                   progress=False, command="pytest")
    links = ckpts.load(result.checkpoint)
    assert links.model.phrase_links and links.model.fine_slots == 10
    conv = [k for k in base.state_dict if k.startswith("conv.")]
    assert conv and all(torch.equal(links.state_dict[k], base.state_dict[k]) for k in conv)
    np.testing.assert_array_equal(links.norm_mean, base.norm_mean)  # the CNN's own statistics
    np.testing.assert_array_equal(links.norm_std, base.norm_std)
    assert "lstm2.weight_ih_l0" in links.state_dict and "sections1.weight" in links.state_dict
    assert result.metrics["val_chorus"]["songs"] == 4
    # the trained model streams: its final highlight is offline detection's
    det = Detector(DetectConfig(device="cpu"), links)
    x, _ = synth_song(seed=5, bar_s=1.0)
    whole = det.detect_samples("s5", x)
    assert whole.scores.chorusness is not None and len(whole.scores.chorusness) > 0
    unfrozen = ckpts.load(train(_cfg(root, manifests, tmp_path / "u.safetensors", epochs=1,
                                     model=LINKS_MODEL, cnn_from=str(tmp_path / "a.safetensors")),
                                progress=False, command="pytest").checkpoint)
    assert not all(torch.equal(unfrozen.state_dict[k], base.state_dict[k]) for k in conv)


def test_cnn_from_and_freeze_cnn_are_checked(renders, tmp_path):
    root, manifests = renders
    with pytest.raises(ConfigError, match="freeze_cnn.*needs cnn_from or init_checkpoint"):
        _cfg(root, manifests, tmp_path / "m.safetensors", freeze_cnn=True)
    with pytest.raises(ConfigError, match="cnn_from.*exclude each other"):
        _cfg(root, manifests, tmp_path / "m.safetensors", cnn_from="a", init_checkpoint="b")
    train(_cfg(root, manifests, tmp_path / "a.safetensors", epochs=1), progress=False)
    wide = dict(LINKS_MODEL, conv_channels=[8, 8, 8, 32])  # not the tiny CNN's widths
    with pytest.raises(ConfigError, match=r"cnn_from .*a.safetensors: its CNN .* does not fit"):
        train(_cfg(root, manifests, tmp_path / "w.safetensors", epochs=1, model=wide,
                   cnn_from=str(tmp_path / "a.safetensors")), progress=False)


def test_prefix_crops_train_and_the_card_says_so(renders, tmp_path):
    root, manifests = renders
    result = train(_cfg(root, manifests, tmp_path / "p.safetensors", epochs=1, prefix_crop=1.0,
                        prefix_min_chunks=2), progress=False, command="pytest")
    card = ckpts.load(result.checkpoint).provenance["model_card"]
    assert card["training_crops"].startswith("100% cut to a random prefix of at least 2 chunks")
    assert "training songs: 100% cut to a random prefix" in (tmp_path / "p.card.md").read_text()
    plain = ckpts.load(train(_cfg(root, manifests, tmp_path / "w.safetensors", epochs=1),
                             progress=False, command="pytest").checkpoint)
    assert plain.provenance["model_card"]["training_crops"] is None
