"""A provisional head: another recurrent half that scores the provisional contexts.

It must read the same chunk vectors as the final model (one track state serves
both); provisional logits are then the head's, final results the final model's.
"""

import dataclasses

import numpy as np
import pytest
import torch

from models import checkpoint
from models.config import DetectConfig, ScorerConfig
from models.detect import Detector, provisional_head
from models.errors import ConfigError
from models.scorer import Scorer
from tests.models.test_scorer import TEST_DEVICE, song, stream, untrained_ckpt


def head_of(final: checkpoint.Checkpoint, seed: int = 7) -> checkpoint.Checkpoint:
    """``final`` with its recurrent half (everything but the CNN) drawn again."""
    other = checkpoint.untrained(final.model, final.labels, seed=seed).state_dict
    weights = {k: (v if k.startswith("conv.") else other[k]) for k, v in final.state_dict.items()}
    return dataclasses.replace(final, name="head", state_dict=weights)


@pytest.mark.parametrize("structure", [False, "links"])
def test_provisional_logits_come_from_the_head_and_finals_from_the_final_model(structure):
    final = untrained_ckpt(structure=structure)
    head = head_of(final)
    cfg = ScorerConfig(context_chunks=4)
    both = Scorer(final, cfg, device=TEST_DEVICE, provisional=head)
    x = song(31.0)
    cuts = np.arange(3, 31, 3) * 22050
    state, prov = stream(both, x, cuts)
    _, prov_head = stream(Scorer(head, cfg, device=TEST_DEVICE), x, cuts)
    final_alone = Scorer(final, cfg, device=TEST_DEVICE)
    _, prov_final = stream(final_alone, x, cuts)
    for p, q in zip(prov, prov_head):
        np.testing.assert_array_equal(p.attention, q.attention)
    assert not np.allclose(prov[-1].attention, prov_final[-1].attention)  # the head was used
    a, b = both.finalize([state])[0], final_alone.finalize([stream(final_alone, x, cuts)[0]])[0]
    np.testing.assert_array_equal(a.attention, b.attention)
    assert both.model_name == final.name and both.provisional_model_name == "head"


def test_a_head_that_reads_other_chunk_vectors_is_refused():
    final = untrained_ckpt(structure="links")
    other_cnn = dataclasses.replace(head_of(final), state_dict={
        k: (v + 1e-3 if k.startswith("conv.") and v.is_floating_point() else v)
        for k, v in head_of(final).state_dict.items()})
    with pytest.raises(ConfigError, match="provisional model head: other CNN weights"):
        Scorer(final, device=TEST_DEVICE, provisional=other_cnn)
    stats = dataclasses.replace(head_of(final), norm_std=final.norm_std * 2)
    assert checkpoint.chunk_vector_mismatch(final, stats) == "other z-score statistics"
    plain = untrained_ckpt(structure=True)
    assert "model.fine_slots" in checkpoint.chunk_vector_mismatch(final, plain)
    assert checkpoint.chunk_vector_mismatch(final, head_of(final)) is None


def test_auto_picks_the_shipped_head_for_the_default_model_only(tmp_path):
    default = checkpoint.load(None)
    head = provisional_head("auto", default)
    assert head is not None and head.name == "hookstream-chorus-pop909-v3-provisional"
    assert head.trained and head.provenance["config"]["prefix_crop"] > 0
    assert provisional_head("auto", untrained_ckpt(structure="links")) is None  # another CNN
    assert provisional_head(None, default) is None
    path = checkpoint.save(untrained_ckpt(structure="links"), tmp_path / "x.safetensors")
    with pytest.raises(ConfigError, match=r"provisional_checkpoint = '.*x.safetensors': .* than "
                                          r"the model hookstream-chorus-pop909-v3"):
        provisional_head(str(path), default)
    with pytest.raises(ConfigError, match="provisional_checkpoint"):
        DetectConfig(provisional_checkpoint="")


def test_detector_streams_provisional_from_the_head_and_detects_with_the_final_model():
    det = Detector(DetectConfig(device=TEST_DEVICE))
    assert det.scorer.provisional_model_name.endswith("-provisional")
    x = song(70.0)
    sc = det.scorer
    state = sc.init_state("t")
    for i in range(0, len(x), 3 * 22050):
        state = sc.step([(state, x[i:i + 3 * 22050])])[0]
    with torch.inference_mode():
        u, _ = sc.provisional_net.attend(torch.from_numpy(state.embeddings[None]),
                                         torch.tensor([len(state.embeddings)]))
    np.testing.assert_allclose(state.logits, u[0].numpy(), atol=1e-5)  # whole track < K chunks
    final, offline = det.highlight(sc.finalize([state])[0]), det.detect_samples("t", x).highlight
    assert (final.start_s, final.end_s) == (offline.start_s, offline.end_s)
    assert final.score == pytest.approx(offline.score, rel=1e-5)
