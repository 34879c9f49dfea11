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
