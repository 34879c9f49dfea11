"""``hookstream bench`` end to end with tiny arguments: keys present, figures positive, no leftovers.

No timing assertions: the figures depend on the machine. The helpers that
turn raw measurements into figures are checked with exact answers.
"""

import json
import types

import psutil
import pytest

from models import checkpoint, nets
from models.training.pop909 import LABELS
from stream_app import bench


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return checkpoint.save(checkpoint.untrained(nets.tiny(n_labels=len(LABELS)), LABELS), path)


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_bench_json_smoke(tiny_checkpoint, capsys):
    from stream_app.cli import main

    before = _children()
    rc = main(["bench", "--tracks", "2", "--concurrency", "2", "--seconds", "20",
               "--realtime-seconds", "10", "--memory-tracks", "4", "--profile-seconds", "12",
               "--checkpoint", str(tiny_checkpoint), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    r = json.loads(out.out)  # one JSON object, nothing else on stdout

    assert r["checkpoint"]["name"].startswith("untrained-huang")
    assert set(r) >= {"checkpoint", "machine", "args", "offline", "profile", "streaming",
                      "latency", "memory", "changelog", "total_s"}
    off = r["offline"]
    assert off["tracks"] == 2 and off["audio_s"] == pytest.approx(40.0, abs=0.01)
    for key in ("decode_s", "score_s", "audio_s_per_s", "score_audio_s_per_s"):
        assert off[key] > 0, key
    st = r["streaming"]
    assert st["audio_s"] == pytest.approx(40.0, abs=0.01) and st["chunks"] == 20
    for key in ("wall_s", "audio_s_per_s", "ratio_to_offline", "ingest_s", "scorer_s",
                "scorer_batches", "changelog_bytes"):
        assert st[key] > 0, key
    lat = r["latency"]
    assert lat["tracks"] == 2 and lat["chunks"] == 10
    assert 0 < lat["matched"] <= lat["chunks"]
    assert 0 < lat["p50_s"] <= lat["p95_s"] <= lat["p99_s"]
    assert lat["worker_histogram"]["count"] > 0 and lat["worker_histogram"]["p50_s"] > 0
    mem = r["memory"]
    assert mem["tracks"] == 4 and mem["open_audio_s"] == 10.0
    for key in ("rss_fresh_mb", "rss_idle_mb", "rss_open_mb", "record_bytes"):
        assert mem[key] > 0, key
    for mode in ("whole", "streamed"):
        assert r["profile"][mode]["total_s"] > 0
    per_min = r["changelog"]["bytes_per_audio_min"]
    assert set(per_min) == {"1", "5", "20"} and all(v > 0 for v in per_min.values())
    assert r["changelog"]["tracks"]["20"]["audio_s"] == 1200.0
    assert "bench [" in out.err and "worker and broker stopped" in out.err
    assert _children() <= before  # worker and broker are gone


def test_report_renders_every_section():
    sample = {
        "checkpoint": {"name": "m", "arch": "huang", "parameters": 3.7e6, "trained": False},
        "machine": {"cpus": 2, "torch_threads": 2, "device": "cpu",
                    "kafka_python_crc32c": "c", "load_avg_start": [1.0, 1.0, 1.0]},
        "args": {"seconds": 120.0},
        "offline": {"tracks": 1, "audio_s": 120.0, "decode_s": 0.1, "score_s": 1.0,
                    "cpu_s": 1.5, "audio_s_per_s": 109.0, "audio_s_per_cpu_s": 80.0,
                    "score_audio_s_per_s": 120.0, "decode_audio_s_per_s": 1200.0},
        "streaming": {"audio_s": 120.0, "chunks": 60, "chunk_bytes": 10**7, "wall_s": 4.0,
                      "audio_s_per_s": 30.0, "ratio_to_offline": 0.28,
                      "cpu_ratio_to_offline": 2.0, "ingest_s": 3.9,
                      "ingest_audio_s_per_s": 31.0, "scorer_s": 1.0,
                      "scorer_share_of_wall": 0.25, "scorer_batches": 6,
                      "mean_batch_tracks": 1.0, "mean_batch_chunks": 10.0,
                      "cpu_s": {"worker": 1.0, "broker": 0.1, "bench": 2.0},
                      "changelog_records": 6, "changelog_bytes": 5 * 10**5},
        "latency": {"tracks": 1, "track_s": 40.0, "chunks": 20, "provisional_events": 15,
                    "matched": 17, "p50_s": 0.5, "p95_s": 2.0, "p99_s": 2.5, "max_s": 2.6,
                    "direct": 15, "direct_p50_s": 0.4, "direct_p95_s": 0.9,
                    "direct_p99_s": 1.0, "direct_in_p50_s": 0.3, "direct_in_p95_s": 0.7,
                    "direct_out_p50_s": 0.1, "direct_out_p95_s": 0.2,
                    "worker_histogram": {"count": 15, "mean_s": 0.05, "p50_s": 0.05,
                                         "p95_s": 0.09, "p99_s": 0.1},
                    "changelog_records": 20, "changelog_bytes": 10**6},
        "memory": {"tracks": 4, "open_audio_s": 60.0, "rss_fresh_mb": 550.0,
                   "rss_before_mb": 700.0, "rss_idle_mb": 800.0, "rss_open_mb": 810.0,
                   "rss_per_track_kb": 2560.0, "rss_marginal_kb": None, "rss_traffic_kb": 10.0,
                   "record_bytes": 85880, "record_bytes_full_track": 54277,
                   "full_track_s": 118.0},
        "changelog": {"piece_s": 2.0, "bytes_per_audio_min": {"1": 1_520_000, "20": 1_440_000},
                      "tracks": {m: {"bytes": b, "writes": w, "max_head_bytes": 81_000,
                                     "segments": n}
                                 for m, b, w, n in (("1", 1_520_000, 30, 1),
                                                    ("20", 28_800_000, 600, 39))}},
        "total_s": 100.0,
    }
    text = bench.format_report(sample)
    for phrase in ("offline detect", "streaming, full speed", "latency:", "memory:",
                   "85,880 B", "n/a", "table changelog per track",
                   " 20 min:   1.44 MB per audio minute (28.8 MB in 600 writes"):
        assert phrase in text


# --- helpers, exact answers --------------------------------------------------------------

def test_bucket_quantile_interpolates_like_histogram_quantile():
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0)]
    assert bench.bucket_quantile(0.25, buckets) == pytest.approx(0.1)
    assert bench.bucket_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 10 / 20)
    assert bench.bucket_quantile(1.0, buckets) == pytest.approx(1.0)
    assert bench.bucket_quantile(0.5, [(0.1, 0.0), (float("inf"), 4.0)]) == 0.1


def test_histogram_summary_reads_prometheus_text():
    text = "\n".join([
        "# HELP h_seconds x", "# TYPE h_seconds histogram",
        'h_seconds_bucket{le="0.05"} 2.0', 'h_seconds_bucket{le="0.1"} 4.0',
        'h_seconds_bucket{le="+Inf"} 4.0', "h_seconds_count 4.0", "h_seconds_sum 0.2", ""])
    s = bench.histogram_summary(bench.parse_metrics(text), "h_seconds")
    assert s["count"] == 4 and s["mean_s"] == pytest.approx(0.05)
    assert s["p50_s"] == pytest.approx(0.05) and s["p95_s"] == pytest.approx(0.095)


def test_match_latencies_first_event_at_or_after_each_chunk():
    def chunk(seq, at):
        return types.SimpleNamespace(track_id="t", seq=seq, sent_at=at)

    def event(seq, made):
        return {"kind": "provisional", "track_id": "t", "seq": seq,
                "emitted_at": f"1970-01-01T00:00:{made:06.3f}Z"}

    # chunk:   0 (t=0)  1 (t=2)  2 (t=4)  3 (t=6, end)
    # event:            seq 1 made 2.3, received 2.5; seq 2 made 4.2, received 4.4
    sent = [chunk(0, 0.0), chunk(1, 2.0), chunk(2, 4.0), chunk(3, 6.0)]
    events = [(2.5, event(1, 2.3)), (4.4, event(2, 4.2)),
              (6.5, {"kind": "final", "track_id": "t", "seq": 3})]
    m = bench.match_latencies(sent, events)
    assert (m["matched"], m["direct"]) == (3, 2)  # chunk 3 has no provisional event
    assert m["max_s"] == pytest.approx(2.5)  # chunk 0 waited for chunk 1's event
    assert m["direct_p50_s"] == pytest.approx(0.45)  # 0.5 and 0.4
    assert m["direct_in_p50_s"] == pytest.approx(0.25)  # 0.3 and 0.2
    assert m["direct_out_p50_s"] == pytest.approx(0.2)


def test_synth_track_has_the_exact_length():
    assert len(bench.synth_track(3, 7.5)) == round(7.5 * 22_050)
    assert len(bench.synth_track(3, 130.0)) == 130 * 22_050


def test_config_rejects_bad_arguments():
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="--tracks"):
        bench.BenchConfig(tracks=0)
    with pytest.raises(ConfigError, match="--seconds"):
        bench.BenchConfig(seconds=3)


def test_config_rejects_bad_phases_device_and_sweep():
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="--phases: lat"):
        bench.BenchConfig(phases=("lat",))
    with pytest.raises(ConfigError, match="--device"):
        bench.BenchConfig(device="tpu")
    with pytest.raises(ConfigError, match="--sweep-seconds"):
        bench.BenchConfig(sweep=(10,), sweep_seconds=2.0)
    assert bench.BenchConfig(device="cuda:1", phases=("latency",)).device == "cuda:1"


# --- sweep --------------------------------------------------------------------------------

def test_parse_ks():
    from models.errors import ConfigError
    from stream_app.bench.sweep import parse_ks

    assert parse_ks("10,50, 100") == (10, 50, 100)
    for bad in ("10,x", "50,10", "0,5", "", "5,5"):
        with pytest.raises(ConfigError, match="--sweep"):
            parse_ks(bad)


def test_backlog_slope_fits_the_second_half():
    from stream_app.bench.sweep import backlog_slope

    t = [float(i) for i in range(10)]
    # flat for the first half (start-up), then growing by 3 chunks per second
    b = [5.0] * 5 + [5.0 + 3 * (i - 4) for i in range(5, 10)]
    assert backlog_slope(t, b) == pytest.approx(3.0)
    assert backlog_slope(t, [7.0] * 10) == pytest.approx(0.0)
    assert backlog_slope(t[:3], b[:3]) == 0.0  # too few samples to judge


def _row(k, p99, growing=False, cores=0.5):
    return {"tracks": k, "chunks": 10 * k, "p50_s": 0.1, "p95_s": 0.2, "p99_s": p99,
            "direct_p50_s": 0.1, "direct_p99_s": p99, "matched": 9 * k, "worker_cores": cores,
            "backlog_end": 0, "backlog_slope_per_s": 9.0 if growing else 0.0,
            "arrival_per_s": k / 2, "backlog_growing": growing, "drained": True,
            "send_lag_p50_s": 0.001, "send_lag_p99_s": 0.01,
            "held": p99 <= 1.0 and not growing}


def test_largest_held_table_and_plot(tmp_path):
    from stream_app.bench.sweep import largest_held, plot_sweep, sweep_lines

    rows = [_row(10, 0.2), _row(50, 0.4), _row(100, 0.9, growing=True), _row(200, 3.0)]
    assert largest_held(rows) == 50
    assert largest_held([_row(10, 2.0)]) is None
    sweep = {"seconds_per_k": 60.0, "p99_limit_s": 1.0, "growth_fraction": 0.05, "rows": rows,
             "largest_held": 50}
    text = "\n".join(sweep_lines(sweep))
    assert "largest K held: 50" in text and text.count(" no\n") + text.endswith("no") >= 2
    png = plot_sweep(sweep, tmp_path / "plots" / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_with_the_sweep_alone():
    sample = {"checkpoint": {"name": "m", "arch": "huang", "parameters": 3.7e5, "trained": True},
              "machine": {"cpus": 2, "torch_threads": 1, "device": "cpu",
                          "kafka_python_crc32c": "c"},
              "args": {}, "total_s": 10.0,
              "sweep": {"seconds_per_k": 60.0, "p99_limit_s": 1.0, "growth_fraction": 0.05,
                        "rows": [_row(10, 0.2)], "largest_held": 10}}
    text = bench.format_report(sample)
    assert "capacity sweep" in text and "offline detect" not in text


# --- device plumbing (CPU-only machine: resolution and the error; GPU: scripts/gpu-check.sh) --

def test_detect_yaml_sets_the_device(tmp_path):
    import torch

    from models.config import DetectConfig, load_yaml
    from models.errors import HookstreamError
    from stream_app.bench.run import _detect_yaml

    assert load_yaml(DetectConfig, _detect_yaml("cpu", tmp_path)).device == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(HookstreamError, match="--device cuda: no CUDA device"):
            _detect_yaml("cuda", tmp_path)


def test_auto_device_is_cuda_when_present(monkeypatch):
    import torch

    from models.detect import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_scorer_net_lives_on_its_device_and_returns_numpy(tiny_checkpoint):
    """Every tensor the scorer hands back is moved off its device (numpy on the host)."""
    import numpy as np

    from models.config import ScorerConfig
    from models.scorer import Scorer

    ckpt = checkpoint.load(tiny_checkpoint)
    scorer = Scorer(ckpt, ScorerConfig(), device="cpu")
    assert {p.device.type for p in scorer.net.parameters()} == {"cpu"}
    state = scorer.step([(scorer.init_state("t"), bench.synth_track(1, 8.0))])[0]
    assert isinstance(state.embeddings, np.ndarray)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_sweep_smoke(tiny_checkpoint, capsys, tmp_path):
    from stream_app.cli import main

    before = _children()
    png = tmp_path / "sweep.png"
    rc = main(["bench", "--sweep", "2,4", "--sweep-seconds", "10", "--torch-threads", "1",
               "--checkpoint", str(tiny_checkpoint), "--plot", str(png), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    s = json.loads(out.out)["sweep"]
    assert [r["tracks"] for r in s["rows"]] == [2, 4]
    for r in s["rows"]:
        assert r["chunks"] == r["tracks"] * 5 and r["drained"]
        assert 0 < r["direct_p50_s"] <= r["direct_p99_s"] and r["worker_cores"] > 0
        assert r["send_lag_p99_s"] >= 0
    assert png.stat().st_size > 0
    assert _children() <= before
