"""A static review page for editors: ``hookstream detect ... --report DIR``.

``DIR/index.html`` lists every track with its path, a figure (log-mel
spectrogram with the window's score curve and the chosen span drawn over it)
and an audio player of the highlight clip, cut from the original file.
Everything the page uses lies in DIR (no server, no network, no CDN):

    DIR/index.html     the page: inline CSS and JavaScript
    DIR/tracks.js      the track list, ``window.HOOKSTREAM_TRACKS = [...]``
                       (a script, not JSON: browsers refuse fetch() on file://)
    DIR/img/*.png      one figure per track
    DIR/clips/*.ogg    one clip per track

The page sorts by score (either way) or path and shows ``PAGE_SIZE`` tracks
per page, with figures loaded lazily, so a few thousand tracks stay quick.
Tracks are written as they are detected; only their metadata is kept until
:meth:`Report.finish` writes the page.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

from models.clip import ClipOptions, check_out_dir, cut_clip
from models.detect import Detection, Detector
from models.errors import HookstreamError
from models.window import fused_curve

PAGE_SIZE = 50
FIG_SIZE_IN = (9.0, 2.4)
FIG_DPI = 80  # 720 x 192 px, about 35 KB a figure (64-colour PNG)


class Report:
    """Collects tracks into ``out_dir``; call :meth:`finish` to write the page."""

    def __init__(self, out_dir: str | Path, detector: Detector, *, title: str = "hookstream review"):
        self.dir = check_out_dir(out_dir)
        (self.dir / "img").mkdir(exist_ok=True)
        (self.dir / "clips").mkdir(exist_ok=True)
        self.detector = detector
        self.title = title
        self.tracks: list[dict] = []

    def add(self, path: str | Path, samples: np.ndarray, det: Detection) -> dict:
        """Write the figure and the clip of one detected track; returns its page entry.

        samples : the track's analysis signal, shape (n,), at the model's rate
        (what ``detect`` scored). A clip that cannot be cut leaves the entry
        without a player and with ``clip_error`` set.
        """
        name = f"{len(self.tracks):05d}-{_safe(det.track_id)}"
        h = det.highlight
        entry = {"path": str(path), "track_id": det.track_id, "start_s": h.start_s,
                 "end_s": h.end_s, "duration_s": round(det.scores.duration_s, 3),
                 "score": round(h.score, 6), "model": det.model,
                 "img": f"img/{name}.png", "clip": f"clips/{name}.ogg"}
        self._figure(self.dir / entry["img"], samples, det, Path(path).name)
        try:
            cut_clip(path, h.start_s, h.end_s, self.dir / entry["clip"],
                     options=ClipOptions(format="ogg"), overwrite=True)
        except HookstreamError as exc:
            entry["clip"], entry["clip_error"] = None, str(exc)
        self.tracks.append(entry)
        return entry

    def add_error(self, path: str | Path, error: str) -> None:
        """List a track that could not be detected, with its error."""
        self.tracks.append({"path": str(path), "error": error})

    def finish(self) -> Path:
        """Write ``tracks.js`` and ``index.html``; returns the page's path."""
        data = json.dumps(self.tracks, ensure_ascii=False, separators=(",", ":"))
        data = data.replace("</", "<\\/")  # never closes a script element
        (self.dir / "tracks.js").write_text(f"window.HOOKSTREAM_TRACKS = {data};\n", encoding="utf-8")
        page = self.dir / "index.html"
        page.write_text(_PAGE.replace("__TITLE__", _html(self.title))
                        .replace("__PAGE_SIZE__", str(PAGE_SIZE)), encoding="utf-8")
        return page

    def _figure(self, out: Path, samples: np.ndarray, det: Detection, name: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from models.mel import mel_frames

        mel_cfg = self.detector.ckpt.mel
        frames = mel_frames(samples, mel_cfg)
        att, energy = self.detector.slot_curves(det.scores)
        curve, _ = fused_curve(att, energy, self.detector.cfg.window.gamma)
        slot_s = self.detector.scorer.slot_seconds
        end = max(det.scores.duration_s, 1e-3)
        fig, ax = plt.subplots(figsize=FIG_SIZE_IN, dpi=FIG_DPI)
        ax.imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, len(frames) * mel_cfg.frame_seconds, 0, 1))
        h = det.highlight
        ax.axvspan(h.start_s, h.end_s, color="#39d353", alpha=0.25, lw=0)
        ax.axvline(h.start_s, color="#39d353", lw=1.5)
        ax.axvline(h.end_s, color="#39d353", lw=1.5)
        if len(curve):
            t = (np.arange(len(curve)) + 0.5) * slot_s
            ax.plot(t, 0.05 + 0.9 * curve, color="white", lw=1.2, label="score per slot")
        ax.set_xlim(0, end)
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.set_xlabel("time (s)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{name}: highlight {h.start_s:.1f}-{h.end_s:.1f} s, score {h.score:.3f}",
                     fontsize=9, loc="left")
        fig.tight_layout(pad=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        # A 64-colour palette: about 35 KB instead of 150 KB, no visible loss at this size.
        from PIL import Image

        buf.seek(0)
        with Image.open(buf) as im:
            im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(
                out, format="PNG", optimize=True)


def _safe(track_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", track_id)[:80] or "track"


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>__TITLE__</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 780px; padding: 0 12px 40px; color: #222; }
  header { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #ddd; }
  h1 { font-size: 20px; margin: 4px 0; }
  .controls { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
  nav button { margin: 0 2px; }
  .track { border-bottom: 1px solid #eee; padding: 10px 0; }
  .track h2 { font-size: 14px; margin: 0 0 2px; word-break: break-all; }
  .meta { color: #555; margin: 0 0 4px; }
  .track img { display: block; width: 720px; max-width: 100%; height: auto; aspect-ratio: 720 / 192; background: #111; }
  .track audio { width: 100%; margin-top: 4px; }
  .error { color: #a00; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <p id="summary"></p>
  <div class="controls">
    <label>Sort by
      <select id="sort">
        <option value="score-desc">score, highest first</option>
        <option value="score-asc">score, lowest first</option>
        <option value="path">path</option>
      </select>
    </label>
    <nav id="pager" aria-label="pages"></nav>
  </div>
</header>
<main id="tracks"></main>
<script src="tracks.js"></script>
<script>
"use strict";
(function () {
  const PAGE_SIZE = __PAGE_SIZE__;
  const all = window.HOOKSTREAM_TRACKS || [];
  const state = { sort: "score-desc", page: 0 };
  const mmss = s => Math.floor(s / 60) + ":" + (s % 60).toFixed(1).padStart(4, "0");
  const el = (tag, props, ...kids) => {
    const e = Object.assign(document.createElement(tag), props || {});
    kids.forEach(k => e.append(k));
    return e;
  };
  const orders = {
    "score-desc": (a, b) => (b.score ?? -1) - (a.score ?? -1) || a.path.localeCompare(b.path),
    "score-asc": (a, b) => (a.score ?? 2) - (b.score ?? 2) || a.path.localeCompare(b.path),
    "path": (a, b) => a.path.localeCompare(b.path),
  };
  function card(t) {
    const art = el("article", { className: "track" }, el("h2", { textContent: t.path }));
    art.dataset.path = t.path;
    if (t.error) {
      art.append(el("p", { className: "error", textContent: "error: " + t.error }));
      return art;
    }
    art.dataset.score = t.score;
    art.append(el("p", { className: "meta", textContent:
      `highlight ${mmss(t.start_s)}-${mmss(t.end_s)} of ${mmss(t.duration_s)}, score ${t.score.toFixed(3)}, ${t.model}` }));
    art.append(el("img", { src: t.img, loading: "lazy", width: 720, height: 192,
                          alt: "mel-spectrogram, score curve and highlight of " + t.path }));
    if (t.clip) {
      art.append(el("audio", { controls: true, preload: "none", src: t.clip }));
    } else {
      art.append(el("p", { className: "error", textContent: "no clip: " + t.clip_error }));
    }
    return art;
  }
  function render() {
    const sorted = all.slice().sort(orders[state.sort]);
    const pages = Math.max(1, Math.ceil(sorted.length / PAGE_SIZE));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const shown = sorted.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    document.getElementById("tracks").replaceChildren(...shown.map(card));
    const failed = all.filter(t => t.error).length;
    document.getElementById("summary").textContent =
      `${all.length} tracks` + (failed ? `, ${failed} failed` : "") +
      (pages > 1 ? ` \u2014 page ${state.page + 1} of ${pages}` : "");
    const pager = document.getElementById("pager");
    const button = (label, page, disabled) => {
      const b = el("button", { type: "button", textContent: label, disabled });
      b.dataset.page = page;
      b.addEventListener("click", () => { state.page = page; render(); save(); window.scrollTo(0, 0); });
      return b;
    };
    pager.replaceChildren();
    if (pages > 1) {
      pager.append(button("\u2039 previous", state.page - 1, state.page === 0));
      pager.append(el("span", { textContent: ` ${state.page + 1} / ${pages} ` }));
      pager.append(button("next \u203a", state.page + 1, state.page === pages - 1));
    }
  }
  function save() { history.replaceState(null, "", `#sort=${state.sort}&page=${state.page + 1}`); }
  function load() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (orders[h.get("sort")]) state.sort = h.get("sort");
    if (h.get("page")) state.page = (parseInt(h.get("page"), 10) || 1) - 1;
  }
  const select = document.getElementById("sort");
  load();
  select.value = state.sort;
  select.addEventListener("change", () => { state.sort = select.value; state.page = 0; render(); save(); });
  window.hookstreamReview = { state, render, pages: () => Math.max(1, Math.ceil(all.length / PAGE_SIZE)) };
  render();
})();
</script>
</body>
</html>
"""
