"""Streaming resampler: pieces equal the whole signal; scipy's polyphase reference; alias attenuation."""

import numpy as np
import pytest
from scipy.signal import firwin, resample_poly

from models import resample as rs
from models.errors import InputError

RATES = (8000, 16000, 22050, 44100, 48000, 96000, 192000)
PRIMES = (1, 2, 3, 7, 97, 331, 1009, 4099, 7919)


def noise(n, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def feed(r, x, sizes):
    """Feed ``x`` in pieces of ``sizes`` (cycled), then flush."""
    state, out, i, k = r.init_state(), [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        y, state = r.step(state, x[i:i + n])
        out.append(y)
        i, k = i + n, k + 1
    out.append(r.flush(state))
    return np.concatenate(out)


@pytest.mark.parametrize("src", RATES)
def test_pieces_equal_whole(src):
    r = rs.resampler(src, 22050)
    x = noise(int(1.3 * src) + 11, seed=src)
    whole = rs.resample(x, src, 22050)
    assert len(whole) == r.n_output(len(x)) == -(-len(x) * 22050 // src)
    for sizes in (PRIMES, list(np.random.default_rng(src).integers(1, 3 * src // 10, 40)), [len(x)]):
        pieces = feed(r, x, [int(s) for s in sizes])
        assert pieces.dtype == np.float32 and len(pieces) == len(whole)
        assert np.abs(pieces - whole).max() <= 1e-6
        assert np.array_equal(pieces, whole)  # one code path: bitwise in practice


@pytest.mark.parametrize("src", [r for r in RATES if r != 22050])
def test_equals_scipy_polyphase_with_the_same_filter(src):
    """The same prototype through scipy.signal.resample_poly (float64): same alignment and length."""
    r = rs.resampler(src, 22050)
    x = noise(src + 5, seed=1)
    proto = firwin(2 * r.half * r.up + 1, rs.ROLLOFF / max(r.up, r.down),
                   window=("kaiser", rs.KAISER_BETA))
    ref = resample_poly(x.astype(np.float64), r.up, r.down, window=proto)
    y = rs.resample(x, src, 22050)
    assert len(y) == len(ref)
    assert np.abs(y - ref).max() < 1e-6


def tone_db(src, freq, dst=22050, seconds=2.0):
    """Output RMS of a unit sine at ``freq`` Hz, in dB relative to the input's (edges cut)."""
    t = np.arange(int(seconds * src)) / src
    y = rs.resample(np.sin(2 * np.pi * freq * t).astype(np.float32), src, dst)[2000:-2000]
    return 20 * np.log10(np.sqrt(np.mean(np.square(y, dtype=np.float64)) / 0.5))


@pytest.mark.parametrize("src,freq", [(44100, 11600), (44100, 13000), (48000, 12000),
                                      (96000, 30000), (192000, 40000)])
def test_aliases_attenuated(src, freq):
    """A tone above the target's Nyquist frequency (11,025 Hz) would alias into the band."""
    assert tone_db(src, freq) < -90


@pytest.mark.parametrize("src,freq", [(44100, 1000), (44100, 9000), (48000, 9500), (8000, 3000),
                                      (16000, 5000)])
def test_pass_band_flat(src, freq):
    assert abs(tone_db(src, freq)) < 0.01


def test_upsampled_tone_lands_at_its_frequency():
    y = rs.resample(np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000).astype(np.float32),
                    16000, 22050)
    spectrum = np.abs(np.fft.rfft(y[1000:1000 + 22050]))  # 1 s: bin k is k Hz
    assert np.argmax(spectrum) == 1000


def test_same_rate_is_identity():
    x = noise(1000)
    r = rs.resampler(22050, 22050)
    assert r.identity
    assert np.array_equal(feed(r, x, [7, 13]), x)


def test_state_is_plain_and_checked():
    r = rs.resampler(44100, 22050)
    _, state = r.step(r.init_state(), noise(5000))
    assert isinstance(state.carry, np.ndarray) and isinstance(state.n_in, int)
    bad = rs.ResampleState(state.carry[1:], state.n_in, state.n_out)
    with pytest.raises(InputError, match="inconsistent state"):
        r.step(bad, noise(10))


@pytest.mark.parametrize("rate", [0, -8000, 44100.0, True])
def test_bad_rate_named(rate):
    with pytest.raises(InputError, match="rate must be a positive integer"):
        rs.Resampler(rate, 22050)


@pytest.mark.parametrize("src", [r for r in RATES if r != 22050])
def test_prototype_is_firwins_design(src):
    r = rs.resampler(src, 22050)
    n, cutoff = 2 * r.half * r.up + 1, rs.ROLLOFF / max(r.up, r.down)
    want = firwin(n, cutoff, window=("kaiser", rs.KAISER_BETA))
    assert np.allclose(rs.prototype(n, cutoff), want, rtol=0, atol=1e-15 * np.abs(want).max())


def test_resampling_does_not_import_scipy_signal():
    import subprocess
    import sys

    code = ("import sys\nimport numpy as np\nfrom models.resample import resample\n"
            "for src in (44100, 48000, 16000):\n    resample(np.ones(4000, np.float32), src, 22050)\n"
            "print('scipy.signal' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out  # its import took 1.5 s of the scorer thread
