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
