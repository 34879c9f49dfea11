"""The readable report ``hookstream bench`` prints."""

from __future__ import annotations


def format_report(r: dict) -> str:
    """The results as the readable report ``hookstream bench`` prints."""
    c, mach, a = r["checkpoint"], r["machine"], r["args"]
    mb = 2 ** 20
    lines = [
        f"hookstream bench: {c['name']} ({c['arch']}, {c['parameters'] / 1e6:.1f} M parameters, "
        f"{'trained' if c['trained'] else 'untrained'}) on {mach['device']}",
        f"  {mach['cpus']} CPUs, torch {mach['torch_threads']} threads, kafka-python CRC-32C "
        f"{mach['kafka_python_crc32c']}; load average {_fmt_load(mach.get('load_avg_start'))} "
        f"at start, {_fmt_load(mach.get('load_avg_end'))} at end",
    ]
    if "offline" in r:
        off = r["offline"]
        lines += [
        "",
        f"offline detect: {off['tracks']} tracks x {a['seconds']:g} s = {off['audio_s']:g} s of audio",
        f"  decode        {off['decode_s']:8.2f} s  {off['decode_audio_s_per_s']:8.0f} x real time",
        f"  score         {off['score_s']:8.2f} s  {off['score_audio_s_per_s']:8.0f} x real time",
        f"  decode+score  {off['decode_s'] + off['score_s']:8.2f} s  "
        f"{off['audio_s_per_s']:8.0f} x real time  (CPU {off['cpu_s']:.2f} s: "
        f"{off['audio_s_per_cpu_s']:.0f} audio s per CPU s)",
        ]
    if "streaming" in r:
        st = r["streaming"]
        lines += [
        "",
        f"streaming, full speed, 1 worker: {st['audio_s']:g} s of audio ({st['chunks']} chunks, "
        f"{st['chunk_bytes'] / mb:.0f} MB) in {st['wall_s']:.1f} s",
        f"  ingest (decode, encode, produce, acks) took {st['ingest_s']:.1f} s "
        f"({st['ingest_audio_s_per_s']:.0f} x real time)",
        f"  scorer busy {st['scorer_s']:.1f} s ({100 * st['scorer_share_of_wall']:.0f}% of wall) "
        f"in {st['scorer_batches']} batches of {st['mean_batch_tracks']} tracks / "
        f"{st['mean_batch_chunks']} chunk events on average",
        f"  CPU time: worker {st['cpu_s']['worker']:.1f} s, broker {st['cpu_s']['broker']:.1f} s, "
        f"bench (ingest, subscribe) {st['cpu_s']['bench']:.1f} s",
        f"  table changelog: {st['changelog_records']} records, "
        f"{st['changelog_bytes'] / mb:.1f} MB "
        f"({st['changelog_bytes'] / max(st['chunk_bytes'], 1):.2f} x the chunk bytes)",
        ]
        if "ratio_to_offline" in st:
            lines.append(f"  {st['audio_s_per_s']:.0f} x real time = {st['ratio_to_offline']:.2f} x "
                         f"offline (CPU per audio second: {st['cpu_ratio_to_offline']:.2f} x offline)")
    if "latency" in r:
        lines += latency_lines(r["latency"])
    if "memory" in r:
        mem = r["memory"]
        lines += [
        "",
        f"memory: {mem['tracks']} open tracks of {mem['open_audio_s']:g} s each",
        f"  worker RSS fresh {mem['rss_fresh_mb']:.0f} MB, warm {mem['rss_before_mb']:.0f} MB, "
        f"idle after the same traffic in closed tracks {mem['rss_idle_mb']:.0f} MB "
        f"({_kb(mem['rss_traffic_kb'])}), open {mem['rss_open_mb']:.0f} MB",
        f"  (open - idle) / tracks: {mem['rss_per_track_kb']:.0f} KB per open track; "
        f"second half of the tracks alone: {_kb(mem['rss_marginal_kb'])}",
        f"  serialized TrackRecord: {mem['record_bytes']:,} B per open track "
        f"({mem['record_bytes_full_track']:,} B at {mem['full_track_s']:g} s)",
        ]
    if "sweep" in r:
        from stream_app.bench.sweep import sweep_lines

        lines += sweep_lines(r["sweep"])
    if "profile" in r:
        p = r["profile"]
        lines += ["", f"profile: one {p['track_s']:g} s track through the scorer (seconds)",
                  f"  {'':<22}{'total':>8}{'mel':>8}{'cnn':>8}{'lstm':>8}{'window':>8}"
                  f"{'other':>8}{'x rt':>8}"]
        for mode, label in (("whole", "whole track"), ("streamed", "2 s pieces")):
            m = p[mode]
            stg = m["stages_s"]
            label = f"{label} ({m['pieces']})"
            lines.append(f"  {label:<22}{m['total_s']:8.2f}{stg['mel']:8.2f}{stg['cnn']:8.2f}"
                         f"{stg['lstm']:8.2f}{stg['window']:8.2f}{stg['other']:8.2f}"
                         f"{m['audio_s_per_s']:8.0f}")
    if "changelog" in r:
        from stream_app.changelog_size import report_lines

        lines += [""] + report_lines(r["changelog"])
    lines += ["", f"total {r['total_s']:.0f} s"]
    return "\n".join(lines)


def latency_lines(lat: dict) -> list[str]:
    """The latency section: end to end, split at the worker, and the worker's own histogram."""
    hist = lat["worker_histogram"]
    mb = 2 ** 20
    return [
        "",
        f"latency: {lat['tracks']} tracks x {lat['track_s']:g} s ingested in real time, "
        "provisional_min_interval_s 0",
        f"  chunk published -> first provisional event including it received: "
        f"p50 {_s(lat['p50_s'])}  p95 {_s(lat['p95_s'])}  p99 {_s(lat['p99_s'])}  "
        f"max {_s(lat['max_s'])}",
        f"    {lat['matched']} of {lat['chunks']} chunks matched an event "
        f"({lat['provisional_events']} provisional events)",
        f"  chunks whose own event it was ({lat['direct']}): p50 {_s(lat['direct_p50_s'])}  "
        f"p95 {_s(lat['direct_p95_s'])}  p99 {_s(lat['direct_p99_s'])}",
        f"    published -> event made (emitted_at): p50 {_s(lat['direct_in_p50_s'])}  "
        f"p95 {_s(lat['direct_in_p95_s'])}; made -> received: p50 {_s(lat['direct_out_p50_s'])}  "
        f"p95 {_s(lat['direct_out_p95_s'])}",
        f"  worker histogram hookstream_chunk_to_provisional_seconds (receipt -> event made): "
        f"n {hist['count']}, mean {_s(hist['mean_s'])}, p50 {_s(hist['p50_s'])}, "
        f"p95 {_s(hist['p95_s'])}, p99 {_s(hist['p99_s'])}",
        f"  table changelog: {lat['changelog_records']} records, "
        f"{lat['changelog_bytes'] / mb:.1f} MB"
        + (f" ({lat['changelog_bytes'] / lat['chunk_bytes']:.2f} x the chunk bytes)"
           if lat.get("chunk_bytes") else ""),
    ]


def _kb(x) -> str:
    return "n/a" if x is None else f"{x:.0f} KB each"


def _s(x) -> str:
    return "n/a" if x is None else f"{x:.3f} s"


def _fmt_load(x) -> str:
    return "n/a" if not x else " ".join(f"{v:.2f}" for v in x)
