"""``hookstream detect --report DIR``: the files it writes, and the page in a real headless Chromium.

The browser is Debian's ``chromium`` (scripts/apt-packages.txt), driven over
the DevTools protocol (a websocket, with aiohttp, which Faust already
brings): the page is loaded from file://, every console message, uncaught
exception and failed resource load is collected, the DOM is read through the
page's own pager, one clip is decoded by the browser, and a screenshot is
taken and checked.
"""

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models import checkpoint, nets
from models.examples import synth_song
from stream_app.cli import main

LABELS = ("major", "minor", "slow", "medium", "fast")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`, listed in "
                             "scripts/apt-packages.txt; CI installs it)")


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS), d / "tiny.safetensors")
    paths = []
    for i in range(4):
        x, _ = synth_song(i, bar_s=0.5 + 0.25 * i)  # 26-65 s
        p = d / f"song <{i}> & \"q\".wav" if i == 3 else d / f"song-{i}.wav"  # HTML-hostile name
        sf.write(p, x, 22050)
        paths.append(p)
    import soxr

    hi = d / "stereo-44k.flac"
    x = soxr.resample(synth_song(7, bar_s=0.5)[0], 22050, 44100)
    sf.write(hi, np.stack([x, 0.5 * x], 1), 44100)  # rate and channels of the clip follow the source
    paths.append(hi)
    bad = d / "broken.wav"
    bad.write_text("not audio\n" * 10)
    return d, ckpt, paths, bad


@pytest.fixture(scope="module")
def report(songs, tmp_path_factory):
    d, ckpt, paths, bad = songs
    out = tmp_path_factory.mktemp("page") / "review"
    rc = main(["detect", *map(str, paths), str(bad), "--json", "--checkpoint", str(ckpt),
               "--report", str(out)])
    assert rc == 1  # the broken file
    return out


def tracks_of(page_dir: Path) -> list[dict]:
    text = (page_dir / "tracks.js").read_text()
    return json.loads(re.fullmatch(r"window\.HOOKSTREAM_TRACKS = (.*);\n", text, re.S).group(1))


def test_report_files_are_all_local(report, songs):
    _, _, paths, bad = songs
    tracks = tracks_of(report)
    assert [t["path"] for t in tracks] == [str(p) for p in paths] + [str(bad)]
    assert "corrupt or not an audio file" in tracks[-1]["error"]
    for t in tracks[:-1]:
        assert (report / t["img"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        info = sf.info(str(report / t["clip"]))
        assert info.duration == pytest.approx(t["end_s"] - t["start_s"], abs=0.05)
    assert sf.info(str(report / tracks[-2]["clip"])).samplerate == 44100
    html = (report / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # no CDN, no network
    assert 'src="tracks.js"' in html


def test_report_into_a_non_writable_folder_is_a_clear_error(songs, tmp_path, capsys):
    _, ckpt, paths, _ = songs
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["detect", str(paths[0]), "--checkpoint", str(ckpt), "--report",
                 str(blocker / "review")]) == 1  # bad input, not a usage error
    assert f"{blocker / 'review'}: output folder is not writable" in capsys.readouterr().err


# --- the browser -------------------------------------------------------------------------

class Chromium:
    """A headless Chromium and one page, driven over the DevTools protocol."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--mute-audio", "--remote-debugging-port=0", "--window-size=1000,1300")

    def __init__(self, profile: Path):
        self.profile = profile
        self.proc = None
        self.errors: list[str] = []
        self.console: list[str] = []

    async def __aenter__(self):
        import aiohttp

        self.proc = subprocess.Popen([CHROMIUM, *self.FLAGS, f"--user-data-dir={self.profile}",
                                      "about:blank"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.profile.parent / "chromium.log", "wb"))
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start; see chromium.log")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as r:
            target = next(t for t in await r.json() if t["type"] == "page")
        self.ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        self.next_id, self.pending, self.waiters = 0, {}, []
        self.reader = asyncio.create_task(self._read())
        for domain in ("Runtime", "Log", "Page"):
            await self.send(f"{domain}.enable")
        return self

    async def __aexit__(self, *exc):
        self.reader.cancel()
        await self.ws.close()
        await self.http.close()
        self.proc.terminate()
        self.proc.wait(10)

    async def _read(self):
        async for msg in self.ws:
            m = json.loads(msg.data)
            if "id" in m:
                self.pending.pop(m["id"]).set_result(m)
                continue
            method, p = m.get("method"), m.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
                self.console.append(f"{p['type']}: {text}")
                if p["type"] in ("error", "assert", "warning"):
                    self.errors.append(f"console.{p['type']}: {text}")
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                self.errors.append(f"exception: {d.get('exception', {}).get('description', d['text'])}")
            elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                e = p["entry"]
                self.errors.append(f"log {e['level']}: {e['text']} {e.get('url', '')}")
            for want, fut in list(self.waiters):
                if want == method and not fut.done():
                    fut.set_result(p)

    async def send(self, method, **params):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def open(self, url: str):
        loaded = asyncio.get_running_loop().create_future()
        self.waiters.append(("Page.loadEventFired", loaded))
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, 30)

    async def js(self, expression: str):
        r = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                            returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def shown(self) -> list[dict]:
        return await self.js("[...document.querySelectorAll('article.track')].map(a => "
                             "({path: a.dataset.path, score: a.dataset.score === undefined ? null "
                             ": Number(a.dataset.score)}))")

    async def all_pages(self) -> list[dict]:
        """Every track, page after page, through the page's own 'next' button."""
        seen = await self.shown()
        for _ in range(10_000):
            more = await self.js("(() => { const b = [...document.querySelectorAll('#pager button')]"
                                 ".find(b => b.textContent.startsWith('next')); "
                                 "if (!b || b.disabled) return false; b.click(); return true; })()")
            if not more:
                return seen
            seen += await self.shown()
        raise AssertionError("pager does not end")

    async def images_loaded(self) -> bool:
        """Scroll every lazy figure into view; true when all decoded."""
        await self.js("window.scrollTo(0, document.body.scrollHeight)")
        for _ in range(100):
            ok = await self.js("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            if ok:
                return True
            await asyncio.sleep(0.1)
        return False


def browse(tmp_path, check):
    async def go():
        async with Chromium(tmp_path / "profile") as browser:
            return await check(browser)

    return asyncio.run(go())


@needs_chromium
def test_page_in_headless_chromium(report, songs, tmp_path):
    _, _, paths, bad = songs
    tracks = tracks_of(report)

    async def check(b):
        await b.open(report.joinpath("index.html").as_uri())
        shown = await b.shown()
        summary = await b.js("document.getElementById('summary').textContent")
        loaded = await b.images_loaded()
        duration = await b.js("""new Promise((ok, fail) => {
            const a = document.querySelector('audio');
            a.addEventListener('loadedmetadata', () => ok(a.duration));
            a.addEventListener('error', () => fail('audio error ' + a.error.code));
            a.preload = 'auto'; a.load(); })""")
        await b.js("window.scrollTo(0, 0)")
        box = await b.js("(() => { const r = document.querySelector('article img')"
                         ".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]"
                         ".map(Math.round); })()")
        shot = await b.send("Page.captureScreenshot", format="png")
        await b.js("(() => { const s = document.getElementById('sort'); s.value = 'score-asc'; "
                   "s.dispatchEvent(new Event('change')); })()")
        ascending = await b.shown()
        return shown, summary, loaded, duration, shot, box, ascending, b.errors

    shown, summary, loaded, duration, shot, box, ascending, errors = browse(tmp_path, check)
    assert errors == []
    assert sorted(t["path"] for t in shown) == sorted([str(p) for p in paths] + [str(bad)])
    scores = [t["score"] for t in shown if t["score"] is not None]
    assert scores == sorted(scores, reverse=True) and len(scores) == len(paths)
    assert shown[-1]["path"] == str(bad)  # a failed track sorts last
    asc = [t["score"] for t in ascending if t["score"] is not None]
    assert asc == sorted(asc)
    assert summary == f"{len(tracks)} tracks, 1 failed"
    assert loaded
    best = max(tracks[:-1], key=lambda t: t["score"])
    assert duration == pytest.approx(best["end_s"] - best["start_s"], abs=0.1)

    import base64
    import io

    from PIL import Image

    png = base64.b64decode(shot["data"])
    (tmp_path / "review.png").write_bytes(png)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size[0] >= 900 and im.size[1] >= 1000
        rgb = np.asarray(im.convert("RGB"))
    assert (rgb.min(axis=2) < 240).mean() > 0.15  # not a blank page
    left, top, right, bottom = box
    assert right - left >= 700 and bottom - top >= 180  # the first figure, at its full size
    fig = rgb[top:bottom, left:right].astype(float)
    assert fig.mean() < 160 and fig.std() > 30, "the first figure is not drawn in the screenshot"
    assert len(np.unique(fig.reshape(-1, 3), axis=0)) >= 32  # the 64-colour spectrogram


@needs_chromium
def test_thousands_of_tracks_are_paginated(report, tmp_path):
    """3,000 tracks (sharing one figure and clip): quick, 60 pages, every track on one of them."""
    from stream_app.report import PAGE_SIZE, Report

    one = next(t for t in tracks_of(report) if "error" not in t)
    big = tmp_path / "big"
    page = Report.__new__(Report)  # the page only: reuse the figure and clip of one track
    page.dir, page.title = big, "3000 tracks"
    big.mkdir()
    for sub in ("img", "clips"):
        shutil.copytree(report / sub, big / sub)
    rng = np.random.default_rng(0)
    page.tracks = [dict(one, path=f"/music/{i:04d}.flac", track_id=f"{i:04d}",
                        score=float(rng.random())) for i in range(3000)]
    page.finish()

    async def check(b):
        t0 = time.monotonic()
        await b.open((big / "index.html").as_uri())
        load_s = time.monotonic() - t0
        n_img = await b.js("document.images.length")
        everything = await b.all_pages()
        await b.open("about:blank")  # a hash change alone is a same-document navigation
        await b.open((big / "index.html").as_uri() + "#sort=path&page=3")
        first = (await b.shown())[0]
        return load_s, n_img, everything, first, b.errors

    load_s, n_img, everything, first, errors = browse(tmp_path, check)
    assert errors == []
    assert load_s < 10 and n_img == PAGE_SIZE
    assert len(everything) == 3000 and len({t["path"] for t in everything}) == 3000
    scores = [t["score"] for t in everything]
    assert scores == sorted(scores, reverse=True)  # sorted across pages, not within each
    assert first["path"] == f"/music/{2 * PAGE_SIZE:04d}.flac"  # the hash selects sort and page
