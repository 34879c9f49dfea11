"""Streaming rational resampling whose state is plain arrays and integers.

One implementation serves a whole file (:func:`resample`) and a stream fed in
pieces (:meth:`Resampler.step`, then :meth:`Resampler.flush`): ``resample(x)``
is literally ``step`` on all of ``x`` followed by ``flush``, and every output
sample is computed by the same matrix product whatever the cut points, so a
signal fed in pieces of any sizes gives the whole-signal output (equal to
float32 rounding; in practice bitwise).

Method
------
The rate ratio ``dst / src`` is reduced to ``up / down`` by their gcd. A
Kaiser-windowed sinc low-pass prototype at ``src * up`` Hz, cut at ``ROLLOFF``
of the lower of the two Nyquist frequencies (:func:`prototype`:
:func:`scipy.signal.firwin`'s design from numpy's ``kaiser`` and ``sinc``,
without importing ``scipy.signal``, which took 1.3 s of a worker's scorer
thread on its first track at another rate), is split into ``up`` polyphase
filters of ``taps`` input samples each. Output ``m`` sits at input position ``m * down / up``; it is the dot
product of the ``taps`` input samples around that position with the filter
of phase ``(m * down) % up``. Outputs are made ``block = k * up`` at a time
(``k`` chosen so a block spans about ``BLOCK_INPUT`` input samples): every
block has the same phase pattern, so one ``(block, window)`` matrix turns the
input windows of many blocks into their outputs in one float64 GEMM.

Alignment and length are those of :func:`scipy.signal.resample_poly`: the
input is taken as zero before its start and after its end, output ``m`` is
at time ``m / dst`` seconds, and ``n`` input samples give
``ceil(n * up / down)`` outputs.

State (:class:`ResampleState`): ``carry``, the input samples from the first
one the next block needs to the last one received; ``n_in``, samples received;
``n_out``, samples emitted (a multiple of ``block`` until the flush).
Latency: at most ``taps / 2 + block`` input samples.

Quality (defaults): pass band flat to ``ROLLOFF - transition / 2`` = 0.88 of
the lower Nyquist frequency, an alias attenuated by at least 90 dB
(``tests/models/test_resample.py`` measures it); soxr's HQ recipe has its
pass band to 0.91 and about 120 dB, torchaudio's default (Hann, 6 zero
crossings) about 60-70 dB.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from models.errors import InputError

ZERO_CROSSINGS = 48  # of the sinc on each side, at the lower of the two rates
ROLLOFF = 0.94  # cut-off (the -6 dB point) as a fraction of the lower Nyquist frequency
KAISER_BETA = 9.0  # ~90 dB stop band
BLOCK_INPUT = 64  # input samples a block of outputs advances by, at least

_f32 = np.float32


@dataclass(frozen=True)
class ResampleState:
    """Where a stream is: unconsumed input (``carry``) and counts of samples in and out."""

    carry: np.ndarray = field(default_factory=lambda: np.zeros(0, _f32))
    n_in: int = 0
    n_out: int = 0


class Resampler:
    """Resample mono float32 from ``src`` Hz to ``dst`` Hz, whole or piece by piece.

    ``step(state, x) -> (y, state)``, ``flush(state) -> y``; start from
    :meth:`init_state`. The filter bank is built once per rate pair
    (:func:`resampler` caches them).
    """

    def __init__(self, src: int, dst: int):
        for name, rate in (("source", src), ("target", dst)):
            if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
                raise InputError(f"resampler: {name} rate must be a positive integer (Hz), "
                                 f"got {rate!r}")
        self.src, self.dst = int(src), int(dst)
        g = math.gcd(self.src, self.dst)
        self.up, self.down = self.dst // g, self.src // g
        if self.up == self.down:
            self.half, self.taps, self.block, self.window = 0, 1, 1, 1
            self.matrix = np.ones((1, 1))
            return
        self.half = math.ceil(ZERO_CROSSINGS * max(self.up, self.down) / (ROLLOFF * self.up))
        self.taps = 2 * self.half + 1
        self.block = self.up * max(1, -(-BLOCK_INPUT // self.down))
        self.window = (self.block - 1) * self.down // self.up + self.taps
        self.matrix = self._block_matrix(self._phases())

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def _phases(self) -> np.ndarray:
        """(up, taps) float64: phase p's weights, oldest input first (gain ``up``)."""
        up, half = self.up, self.half
        proto = prototype(2 * half * up + 1, ROLLOFF / max(up, self.down)) * up
        padded = np.concatenate([proto, np.zeros(up)])
        # weight of input (position q - half + k) for phase p: proto[up * (2 half - k) + p]
        idx = up * (2 * half - np.arange(self.taps))[None, :] + np.arange(up)[:, None]
        return padded[idx]

    def _block_matrix(self, phases: np.ndarray) -> np.ndarray:
        """(block, window) float64: the outputs of one block from its input window."""
        m = np.zeros((self.block, self.window))
        for i in range(self.block):
            start = i * self.down // self.up
            m[i, start:start + self.taps] = phases[(i * self.down) % self.up]
        return m

    def init_state(self) -> ResampleState:
        # the first block's window starts ``half`` samples before the signal: zeros
        return ResampleState(carry=np.zeros(self.half, _f32))

    def n_output(self, n_in: int) -> int:
        """Samples that ``n_in`` input samples give once flushed: ceil(n_in * up / down)."""
        return -(-n_in * self.up // self.down)

    def step(self, state: ResampleState, x: np.ndarray) -> tuple[np.ndarray, ResampleState]:
        """Feed ``x`` (mono float32, shape (n,)); return the outputs now complete and the state.

        At equal rates the output is ``x`` itself (as float32), not a copy."""
        self._check(state)
        x = np.asarray(x, _f32)
        if x.ndim != 1:
            raise InputError(f"resampler: expected mono samples of shape (n,), got {x.shape}")
        if self.identity:
            return x, ResampleState(state.carry, state.n_in + len(x), state.n_out + len(x))
        buf = np.concatenate([state.carry, x])
        hop = self.block * self.down // self.up
        n_blocks = 0 if len(buf) < self.window else (len(buf) - self.window) // hop + 1
        y = self._blocks(buf, n_blocks)
        return y, ResampleState(buf[n_blocks * hop:].copy(), state.n_in + len(x),
                                state.n_out + len(y))

    def flush(self, state: ResampleState) -> np.ndarray:
        """The remaining outputs, the input taken as zero after its end."""
        self._check(state)
        left = self.n_output(state.n_in) - state.n_out
        if self.identity or left <= 0:
            return np.zeros(0, _f32)
        hop = self.block * self.down // self.up
        n_blocks = -(-left // self.block)
        need = (n_blocks - 1) * hop + self.window
        buf = np.concatenate([state.carry, np.zeros(max(0, need - len(state.carry)), _f32)])
        return self._blocks(buf, n_blocks)[:left]

    def _blocks(self, buf: np.ndarray, n_blocks: int) -> np.ndarray:
        if n_blocks == 0:
            return np.zeros(0, _f32)
        hop = self.block * self.down // self.up
        windows = np.lib.stride_tricks.sliding_window_view(buf, self.window)[::hop][:n_blocks]
        return (windows.astype(np.float64) @ self.matrix.T).astype(_f32).ravel()

    def _check(self, state: ResampleState) -> None:
        """The carry must be exactly the samples from the next block's window start."""
        first = (state.n_out // self.block) * self.block * self.down // self.up - self.half
        expected = state.n_in - first if not self.identity else 0
        if (state.n_in < 0 or state.n_out < 0 or state.carry.ndim != 1
                or (not self.identity and state.n_out % self.block) or len(state.carry) != expected):
            raise InputError(
                f"resampler {self.src} -> {self.dst} Hz: inconsistent state (carry of "
                f"{len(state.carry)} samples, {state.n_in} in, {state.n_out} out; expected a "
                f"carry of {expected})")


def prototype(numtaps: int, cutoff: float, beta: float = KAISER_BETA) -> np.ndarray:
    """The linear-phase low-pass FIR ``scipy.signal.firwin(numtaps, cutoff,
    window=("kaiser", beta))`` designs (``cutoff`` relative to Nyquist, unit
    gain at DC): a sinc cut at ``cutoff``, Kaiser-windowed, scaled to sum 1."""
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


@functools.lru_cache(maxsize=32)
def resampler(src: int, dst: int) -> Resampler:
    """The (cached, immutable) resampler from ``src`` to ``dst`` Hz."""
    return Resampler(src, dst)


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample a whole mono signal (shape (n,)) from ``src`` to ``dst`` Hz: step, then flush."""
    r = resampler(src, dst)
    y, state = r.step(r.init_state(), x)
    return np.concatenate([y, r.flush(state)])
