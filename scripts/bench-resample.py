"""Time one step of the streaming resampler on a 2 s stereo chunk (downmix included), per source rate.

PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/bench-resample.py
"""
import numpy as np, timeit
from models import resample as R
for src in (16000, 44100, 48000, 96000, 192000):
    r = R.resampler(src, 22050)
    x = (0.3*np.random.default_rng(0).standard_normal((2*src, 2))).astype(np.float32)
    st = r.init_state()
    def one():
        return r.step(st, x.mean(axis=1, dtype=np.float32))
    t = min(timeit.repeat(one, number=20, repeat=5)) / 20
    print(f"{src} Hz stereo 2 s chunk: {t*1e3:.2f} ms")
