"""The offline trainer on eight synthetic songs: bright 'major' tones, dark 'minor' ones."""

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from models import checkpoint as ckpts
from models.config import REPO_ROOT, MelConfig
from models.errors import ConfigError
from models.training.features import cache_path, cached_features, norm_stats
from models.training.train import TrainConfig, crop, group_recall, load_config, resume_path, train

SR = 22_050
# (id, label, split, seconds, level): the val songs are louder, so their frames shift the stats.
SONGS = [
    ("b1", "major", "train", 7.0, 0.2), ("b2", "major", "train", 9.5, 0.3),
    ("b3", "major", "train", 6.5, 0.25), ("d1", "minor", "train", 8.0, 0.2),
    ("d2", "minor", "train", 10.0, 0.3), ("d3", "minor", "train", 6.5, 0.25),
    ("bv", "major", "val", 8.0, 0.9), ("dv", "minor", "val", 9.0, 0.9),
]


def _song(label: str, seconds: float, level: float, rng: np.random.Generator) -> np.ndarray:
    """Bursts of tones: above 2 kHz for 'major', below 300 Hz for 'minor', over faint noise."""
    t = np.arange(int(seconds * SR)) / SR
    low, high = (2000, 6000) if label == "major" else (60, 300)
    x = 0.01 * rng.standard_normal(len(t))
    for start in np.arange(0, seconds, 0.5):
        f = rng.uniform(low, high)
        on = (t >= start) & (t < start + 0.35)
        x[on] += level * np.sin(2 * np.pi * f * t[on])
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(0)
    lines = []
    for song_id, label, split, seconds, level in SONGS:
        sf.write(root / f"{song_id}.wav", _song(label, seconds, level, rng), SR)
        lines.append(json.dumps({"audio": f"{song_id}.wav", "id": song_id, "labels": [label],
                                 "split": split}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _cfg(dataset, out, **kw) -> TrainConfig:
    base = dict(manifest=str(dataset / "manifest.jsonl"), out=str(out), name="test-tiny",
                cache_dir=str(dataset / "cache"), model={"preset": "tiny-huang"},
                labels=["major", "minor"], label_groups=[["major", "minor"]], optimizer="adam",
                lr=0.01, batch_size=3, epochs=2, patience=5, seed=3, max_chunks=2,
                device="cpu", num_threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    """A 2-epoch run; shared by the tests below."""
    out = tmp_path_factory.mktemp("straight") / "model.safetensors"
    return train(_cfg(dataset, out), progress=False, command="pytest")


def test_checkpoint_describes_itself(straight):
    ckpt = ckpts.load(straight.checkpoint)
    assert ckpt.name == "test-tiny" and ckpt.labels == ("major", "minor") and ckpt.trained
    prov = ckpt.provenance
    assert prov["command"] == "pytest" and prov["torch"] == torch.__version__
    assert prov["data"]["n_train"] == 6 and prov["data"]["n_val"] == 2
    assert prov["data"]["label_counts"]["train"] == {"major": 3, "minor": 3}
    assert prov["config"]["model"] == {"preset": "tiny-huang"}
    metrics = prov["metrics"]
    assert metrics["best_epoch"] in (1, 2) and metrics["epochs_run"] == 2
    assert 0 <= metrics["val_auc"] <= 1 and set(metrics["val_recall"]) == {"major/minor"}
    assert metrics["train_loss"] > 0
    history = json.loads(straight.history.read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # Bright vs dark is learnable: the two val songs are ranked right (seeds 0-3 all do).
    assert history[1]["val_loss"] < history[0]["val_loss"] and metrics["val_auc"] == 1.0
    assert straight.plot.stat().st_size > 0
    y = ckpt.build()(torch.zeros(1, 2, 128, 130), torch.tensor([2]))[1]
    assert y.shape == (1, 2)


def test_norm_stats_come_from_the_train_split_only(straight, dataset):
    ckpt = ckpts.load(straight.checkpoint)
    mel = MelConfig()
    frames = {s[0]: cached_features(dataset / f"{s[0]}.wav", mel, dataset / "cache") for s in SONGS}
    train_mean, train_std = norm_stats(frames[s[0]] for s in SONGS if s[2] == "train")
    all_mean, _ = norm_stats(frames.values())
    np.testing.assert_array_equal(ckpt.norm_mean, train_mean)
    np.testing.assert_array_equal(ckpt.norm_std, train_std)
    assert np.abs(all_mean - train_mean).max() > 0.1


def test_same_seed_same_weights(straight, dataset, tmp_path):
    again = train(_cfg(dataset, tmp_path / "again.safetensors"), progress=False)
    a, b = ckpts.load(straight.checkpoint), ckpts.load(again.checkpoint)
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key


def test_resume_equals_a_straight_run(straight, dataset, tmp_path):
    out = tmp_path / "resumed.safetensors"
    first = train(_cfg(dataset, out, epochs=1), progress=False)
    assert first.epochs_run == 1 and resume_path(out).is_file()
    second = train(_cfg(dataset, out, epochs=2), resume=True, progress=False)
    assert second.epochs_run == 2
    a, b = ckpts.load(straight.checkpoint), ckpts.load(second.checkpoint)
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    assert json.loads(second.history.read_text())[1]["train_loss"] == \
        json.loads(straight.history.read_text())[1]["train_loss"]


def test_resume_refuses_another_runs_state(dataset, tmp_path, straight):
    out = tmp_path / "m.safetensors"
    train(_cfg(dataset, out, epochs=1), progress=False)
    with pytest.raises(ConfigError, match="lr"):
        train(_cfg(dataset, out, epochs=2, lr=0.5), resume=True, progress=False)


def test_sgd_and_cran_train(dataset, tmp_path, straight):
    result = train(_cfg(dataset, tmp_path / "c.safetensors", model={"preset": "tiny-cran"},
                        optimizer="sgd", lr=0.05, lr_decay=0.01, epochs=1), progress=False)
    assert ckpts.load(result.checkpoint).model.arch == "cran"


def test_feature_cache_is_reused_and_keyed_by_mel_config(dataset, straight, monkeypatch):
    wav = dataset / "b1.wav"
    mel = MelConfig()
    assert cache_path(wav, mel, dataset / "cache").is_file()
    monkeypatch.setattr("models.training.features.decode", lambda *a, **k: pytest.fail("recomputed"))
    cached_features(wav, mel, dataset / "cache")
    assert cache_path(wav, MelConfig(n_mels=64), dataset / "cache") != \
        cache_path(wav, mel, dataset / "cache")


def test_norm_stats_match_numpy_on_the_concatenation():
    rng = np.random.default_rng(1)
    arrays = [rng.normal(3.0, 2.0, (n, 4)).astype(np.float32) for n in (5, 1, 300, 0, 17)]
    mean, std = norm_stats(arrays)
    whole = np.concatenate(arrays).astype(np.float64)
    np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, whole.std(axis=0), rtol=1e-6)


def test_group_recall_counts_single_choice_songs():
    labels = ["major", "minor", "slow", "fast"]
    targets = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0]], np.float32)
    probs = np.array([[.9, .1, .4, .3], [.8, .3, .1, .9], [.2, .7, .6, .5], [1, 0, 1, 0]])
    out = group_recall(probs, targets, labels, [["major", "minor"], ["slow", "fast"]])
    assert out == {"major/minor": pytest.approx(2 / 3), "slow/fast": 1.0}


@pytest.mark.parametrize("change, key", [
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr": "fast"}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"model": {"preset": "huge"}}, "model.preset"),
    ({"model": {"preset": "huang", "lstm_size": 3}}, "model"),
    ({"label_groups": [["major", "blue"]]}, "label_groups"),
    ({"mel": {"n_mel": 3}}, "mel."),
    ({"prefix_crop": 1.5}, "prefix_crop"),
    ({"prefix_min_chunks": 0}, "prefix_min_chunks"),
])
def test_bad_config_names_the_key(dataset, tmp_path, change, key):
    with pytest.raises(ConfigError, match=key):
        _cfg(dataset, tmp_path / "x", **change)


def test_prefix_crops_start_at_the_song_and_keep_the_rest_reproducible():
    cf, n_frames = 130, 130 * 50 + 70  # 50 full chunks
    rng = np.random.default_rng(0)
    crops = [crop(n_frames, chunk_frames=cf, max_chunks=0, rng=rng, prefix=0.5, prefix_min=20)
             for _ in range(400)]
    prefixes = [(s, t) for s, t in crops if t < 50]
    assert 150 < len(prefixes) < 250  # about half the songs
    assert all(s < cf and 20 <= t for s, t in prefixes)  # from the start, on a jittered grid
    assert {t for _, t in prefixes} >= {20, 35, 49}
    assert all(s + t * cf <= n_frames for s, t in crops)
    # prefix = 0 draws exactly what it drew before the option existed
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    old = [(int(a.integers(0, n_frames - 50 * cf + 1)), 50) for _ in range(5)]
    assert [crop(n_frames, chunk_frames=cf, max_chunks=0, rng=b) for _ in range(5)] == old
    short = crop(130 * 15, chunk_frames=cf, max_chunks=0, rng=rng, prefix=1.0, prefix_min=20)
    assert short == (0, 15)  # too short to cut: whole


@pytest.mark.parametrize("name", ["chorus-pop909", "chorus-pop909-provisional", "chorus-pop909-v2", "huang-pop909", "cran-pop909", "tiny"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO_ROOT / "configs" / "train" / f"{name}.yaml")
    assert cfg.model_config(len(cfg.labels or ("x",))).n_labels == len(cfg.labels or ("x",))


def test_cli_trains_with_overrides(dataset, tmp_path, capsys, straight):
    from stream_app.commands import train as command

    config = tmp_path / "run.yaml"
    cfg = _cfg(dataset, tmp_path / "unused.safetensors").as_dict()
    config.write_text(yaml.safe_dump(cfg))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    out = tmp_path / "cli.safetensors"
    args = parser.parse_args(["train", "--config", str(config), "--epochs", "1", "--out", str(out),
                              "--no-progress"])
    assert args.func(args) == 0
    assert f"checkpoint: {out}" in capsys.readouterr().out
    assert ckpts.load(out).provenance["metrics"]["epochs_run"] == 1
