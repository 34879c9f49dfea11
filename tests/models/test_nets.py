"""The attention networks: input dropout is a training-only regulariser."""

import pytest
import torch

from models import nets
from models.errors import ConfigError


@pytest.mark.parametrize("arch", ["huang", "cran"])
def test_input_dropout_acts_in_training_only(arch):
    torch.manual_seed(0)
    cfg = nets.tiny(arch)
    net = nets.build(nets.ModelConfig(**{**cfg.__dict__, "dropout_in": 0.5, "n_chroma": 12,
                                         "n_repetition": 7}))
    plain = nets.build(nets.ModelConfig(**{**cfg.__dict__, "n_chroma": 12, "n_repetition": 7}))
    assert set(net.state_dict()) == set(plain.state_dict())  # no weights: old checkpoints load
    plain.load_state_dict(net.state_dict())
    chunks = torch.randn(2, 6, cfg.n_mels, 130)
    chroma = torch.rand(2, 6, 12)
    lengths = torch.tensor([6, 4])
    net.eval(), plain.eval()
    with torch.no_grad():
        a, y = net(chunks, lengths, chroma)
        b, z = plain(chunks, lengths, chroma)
    torch.testing.assert_close(a, b) and torch.testing.assert_close(y, z)
    net.train()
    with torch.no_grad():
        c, w = net(chunks, lengths, chroma)
    assert not (torch.allclose(c, a) and torch.allclose(w, y))


def test_dropout_out_of_range_is_refused():
    with pytest.raises(ConfigError, match=r"model.dropout_in = 1.0: must be in \[0, 1\)"):
        nets.huang(5, dropout_in=1.0)


def _phrase_track(seed=0, chunks=20, slots=10, shift=3):
    """Random slot chroma, with slots 20-79 (chunks 2-7) heard again ``80 + shift`` slots later."""
    x = torch.rand(chunks * slots, 12, generator=torch.Generator().manual_seed(seed))
    x[100 + shift:160 + shift] = x[20:80]
    return x.reshape(1, chunks, slots * 12)


def test_phrase_similarity_finds_a_repeat_off_the_chunk_grid():
    sim = nets.phrase_similarity(_phrase_track(), torch.tensor([20]), 10)[0]
    # chunk 4's phrase (chunks 3-6: slots 30-69) is heard again at slots 113-152, 3 slots past
    # chunk 12's (slots 110-149): within the tolerance of 5 slots, the same slots exactly
    assert sim[12, 4] == pytest.approx(1.0, abs=1e-5) and sim[4, 12] == pytest.approx(1.0, abs=1e-5)
    assert sim[12, 16] < 0.5 and sim[2, 17] < 0.5  # unrelated passages
    far = _phrase_track(shift=7)  # 7 slots off: beyond the tolerance
    assert nets.phrase_similarity(far, torch.tensor([20]), 10)[0, 12, 4] < 0.9


def test_phrase_similarity_and_features_ignore_padding():
    x = _phrase_track()
    sim = nets.phrase_similarity(x, torch.tensor([20]), 10)
    padded = torch.cat([x, torch.rand(1, 5, 120)], dim=1)
    both = torch.cat([padded, torch.cat([x[:, :9], torch.zeros(1, 16, 120)], dim=1)])
    sims = nets.phrase_similarity(both, torch.tensor([20, 9]), 10)
    torch.testing.assert_close(sims[0, :20, :20], sim[0])
    assert torch.all(sims[0, 20:] == -1) and torch.all(sims[1, 9:] == -1)
    f = nets.phrase_features(sims, torch.tensor([20, 9]))
    assert f.shape == (2, 25, nets.N_PHRASE) and torch.all(f[1, 9:] == 0)
    best_past, best_future, first, heard = f[0, :20].T
    assert heard[12] == 1 and first[12] <= 5 / 19 and best_past[12] > 0.99  # heard at chunk <= 5
    assert heard[3] == 0 and first[3] == pytest.approx(3 / 19)  # first hearing: itself
    assert best_future[4] > 0.99


def test_phrase_links_need_fine_slots_and_fine_slots_need_chroma():
    with pytest.raises(ConfigError, match="fine_slots = 10: must be >= 0, and > 0 only with n_chroma"):
        nets.huang(5, fine_slots=10)
    with pytest.raises(ConfigError, match="phrase_links: needs fine_slots > 0 and arch huang"):
        nets.huang(5, n_chroma=12, phrase_links=True)
    cfg = nets.huang(5, n_chroma=12, fine_slots=10)
    assert cfg.n_fine == 120 and cfg.n_extra == 132 and cfg.n_structure == 4 + nets.N_PHRASE
