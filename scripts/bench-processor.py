"""CPU per chunk event in the worker's Processor alone (no broker, no Faust), shipped model, one thread.

K tracks of 2 s chunk events (synthetic songs), sent round-robin in batches of B events, as a
real-time worker sees them (provisional_min_interval_s 0: every track refreshed at every step).
Prints the CPU per chunk and how many real-time tracks one core would hold at that rate.

PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/bench-processor.py [K=40] [CHUNKS=15] [B=5] [--cprofile]
"""
import cProfile
import pstats
import sys
import time

import torch
from prometheus_client import CollectorRegistry

import hookstream
from models.examples import synth_song
from stream_app.events import encode_chunk
from stream_app.metrics import Metrics
from stream_app.processor import Incoming, Processor
from stream_app.settings import StreamSettings

torch.set_num_threads(1)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
K, C, B = (int(v) for v in (args + ["40", "15", "5"][len(args):]))
det = hookstream.load()
sr = det.scorer.mel_cfg.sample_rate
songs = [synth_song(s)[0] for s in range(4)]


def chunk(tid, song, c, last):
    return encode_chunk(tid, c, song[c * 2 * sr:(c + 1) * 2 * sr], sample_rate=sr, end=c == last)


vals = [[chunk(f"t{k}", songs[k % 4], c, C - 1) for c in range(C)] for k in range(K)]
proc = Processor(det, StreamSettings(provisional_min_interval_s=0.0), Metrics(CollectorRegistry()))
records = {}
warm = {}
for c in range(4):  # warm-up track: lazy imports, filterbanks
    out = proc.process([Incoming(b"w", chunk("w", songs[0], c, 3), "chunks", 0, c, time.monotonic())],
                       {"w": warm.get("w")})
    warm.update(out.records)
order = [(k, c) for c in range(C) for k in range(K)]


def run():
    for i in range(0, len(order), B):
        part = order[i:i + B]
        batch = [Incoming(f"t{k}".encode(), vals[k][c], "chunks", 0, i + j, time.monotonic())
                 for j, (k, c) in enumerate(part)]
        out = proc.process(batch, {f"t{k}": records.get(f"t{k}") for k, _ in part})
        assert not out.dead_letters, out.dead_letters[:1]
        records.update(out.records)


t0, c0 = time.perf_counter(), time.process_time()
if "--cprofile" in sys.argv:
    profile = cProfile.Profile()
    profile.runcall(run)
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)
else:
    run()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
n = K * C
print(f"K={K} chunks={n} batch={B}: wall {wall:.2f} s, cpu {cpu:.2f} s, {cpu / n * 1000:.2f} ms CPU "
      f"per 2 s chunk -> one core holds {2 / (cpu / n):.0f} real-time tracks")
