"""Checkpoints describe themselves and load without pickle."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from models import checkpoint, nets
from models.errors import CheckpointError

LABELS = ("a", "b", "c", "d", "e")


def test_roundtrip_rebuilds_same_model(tmp_path):
    ck = checkpoint.untrained(nets.tiny("cran"), LABELS, seed=3)
    path = checkpoint.save(ck, tmp_path / "m.safetensors")
    back = checkpoint.load(path)
    assert back.model == ck.model and back.labels == LABELS and back.mel == ck.mel
    assert back.name.startswith("untrained-") and not back.trained
    x = torch.randn(1, 2, 128, 130)
    with torch.inference_mode():
        a1, y1 = ck.build()(x, torch.tensor([2]))
        a2, y2 = back.build()(x, torch.tensor([2]))
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(y1, y2)


def test_metadata_is_plain_json(tmp_path):
    path = checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="np") as f:
        doc = json.loads(f.metadata()["hookstream"])
        assert set(f.keys()) >= {"norm.mean", "norm.std"}
    assert doc["model"]["arch"] == "huang" and doc["mel"]["n_mels"] == 128
    assert doc["provenance"]["trained"] is False


@pytest.mark.parametrize("content,reason", [
    (None, "checkpoint not found"),
    (b"not safetensors at all", "not a readable safetensors checkpoint"),
])
def test_bad_checkpoints(tmp_path, content, reason):
    path = tmp_path / "bad.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason):
        checkpoint.load(path)


def test_safetensors_without_metadata(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(path))
    with pytest.raises(CheckpointError, match="without hookstream metadata"):
        checkpoint.load(path)



def test_default_checkpoint_is_trained():
    ck = checkpoint.load(None)
    assert ck.trained, "the shipped default model must be a trained one"
    assert ck.provenance["metrics"] and ck.provenance["data"]


def test_filterbanks_are_stored_and_equal_librosa(tmp_path):
    import librosa

    ck = checkpoint.untrained(nets.tiny(), LABELS)
    back = checkpoint.load(checkpoint.save(ck, tmp_path / "m.safetensors"))
    m = back.mel
    want = librosa.filters.mel(sr=m.sample_rate, n_fft=m.n_fft, n_mels=m.n_mels, fmin=m.f_min, fmax=m.f_max)
    np.testing.assert_array_equal(back.filterbanks["mel"], want)
    for c in (back, checkpoint.load(None)):  # the shipped default carries them too
        assert set(c.filterbanks) == ({"mel", "chroma"} if c.model.n_chroma else {"mel"})
        np.testing.assert_array_equal(c.filterbanks["mel"], want)
        if c.model.n_chroma:
            np.testing.assert_array_equal(c.filterbanks["chroma"], librosa.filters.chroma(
                sr=m.sample_rate, n_fft=m.n_fft, n_chroma=c.model.n_chroma))
    assert not any(k.startswith("frontend.") for k in back.state_dict)  # banks are not weights


def _rewrite(path, change):
    from safetensors.numpy import load_file, save_file

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata=meta)


def test_a_file_without_stored_filterbanks_still_loads(tmp_path):
    path = checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS), tmp_path / "old.safetensors")
    _rewrite(path, lambda t: [t.pop(k) for k in list(t) if k.startswith("frontend.")])
    back = checkpoint.load(path)
    assert back.filterbanks == {}
    back.build()


def test_a_filterbank_of_the_wrong_shape_is_refused(tmp_path):
    path = checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS), tmp_path / "bad.safetensors")
    _rewrite(path, lambda t: t.update({"frontend.mel": np.ones((64, 1025), np.float32)}))
    with pytest.raises(CheckpointError, match=r"bad.safetensors: filterbank 'mel': shape \(64, 1025\)"):
        checkpoint.load(path)


def test_the_default_model_scores_without_importing_librosa():
    import subprocess
    import sys

    code = ("import sys\n"
            "from models import checkpoint\nfrom models.detect import Detector\n"
            "from models.config import load_detect_config\n"
            "Detector(load_detect_config(), checkpoint.load(None)).warm_up()\n"
            "print(sorted(m for m in ('librosa', 'scipy.signal') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out  # scipy.signal's import alone is ~1.5 s of a worker's start
