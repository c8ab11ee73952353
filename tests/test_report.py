"""``sami-kit report``: the HTML page of a run directory — panels, escaping, defensive reading — and a headless
Chromium screenshot that must not be blank."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from sami_toolkit.cli import cli
from sami_toolkit.report.run_page import build_report, svg_line_chart

EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def make_run(root: Path, *, iterations: int = 4, instruct: bool = True) -> Path:
    run = root / "run"
    (run / "iterations").mkdir(parents=True)
    (run / "config.yaml").write_text("name: demo\njudge: {name: litellm, options: {api_key_env: OPENAI_API_KEY}}\n")
    (run / "manifest.json").write_text(json.dumps({"name": "demo-run", "versions": {"sami-kit": "0.1.0"}}))
    (run / "principles.yaml").write_text("name: hh-rlhf\nprinciples: []\n")
    for t in range(iterations):
        d = run / "iterations" / str(t)
        (d / "eval").mkdir(parents=True)
        m = {"mi_paper": 1.2 + t, "mi_paper_sem": 0.1, "mi_infonce": -2.0 + 0.3 * t, "mi_infonce_sem": 0.2,
             "mi_infonce_constitutions": -0.2 + 0.25 * t, "mi_infonce_constitutions_sem": 0.05,
             "mean_length_tokens": 120 + 30 * t, "mean_length_tokens_sem": 4.0,
             "win_rate_vs_base": 0.5 + 0.08 * t, "win_rate_vs_base_sem": 0.03 if t else 0.0,
             "balanced_win_rate_vs_base": 0.5 + 0.05 * t, "balanced_win_rate_vs_base_sem": 0.035,
             "judge_health_vs_base": {"failure_rate": 0.01, "first_position_rate": 0.52, "position_consistency": None,
                                      "warnings": [f"warning {EVIL}"] if t == 1 else []}}
        if instruct:
            m.update({"win_rate_vs_instruct": 0.2 + 0.1 * t, "win_rate_vs_instruct_sem": 0.03})
        (d / "metrics.json").write_text(json.dumps(m))
        if t:
            rows = [{"id": f"q{i}", "outcome": 1, "prompt": f"prompt {i} {EVIL}", "candidate": f"iter {t} answer {EVIL}",
                     "baseline": f"base answer {i} {EVIL}", "len_test": 10, "len_baseline": 5} for i in range(3)]
            (d / "eval" / "win_rate_vs_base.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.svg_texts: list[str] = []
        self._in_svg_text = False
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_svg_text = tag == "text"

    def handle_endtag(self, tag):
        self._in_svg_text = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_svg_text:
            self.svg_texts.append(data)


def test_report_has_panels_and_escapes_everything(tmp_path):
    page = build_report(make_run(tmp_path))
    parser = _Collector()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags  # model text never becomes markup
    assert "link" not in parser.tags and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert parser.tags.count("svg") == 3
    titles = " ".join(parser.svg_texts)
    for title in ("Mutual information (± SEM)", "Mean response length (± SEM)", "Win rate (± SEM)",
                  "InfoNCE, constitution side (headline)", "paper estimator (not a bound)", "vs instruct", "chance"):
        assert title in titles, title
    text = "".join(parser.text)
    assert EVIL in text  # shown literally, as text
    assert "iter 3 answer" in text and "base answer 0" in text  # examples side by side
    assert "Statistics" in text and "Judge health" in text and "52.0" in text
    assert "demo-run" in text


def test_error_bars_are_drawn(tmp_path):
    svg = svg_line_chart("t", [{"label": "a", "x": [0, 1, 2], "y": [1.0, 2.0, 3.0], "err": [0.5, 0.5, None]}])
    # two points with error bars -> 3 <line>s each (bar + caps); a path joins the three points
    assert svg.count("<circle") == 3 and svg.count("<path") == 1
    assert svg.count("stroke-width='1.5'") == 2


def test_report_survives_a_sparse_run_directory(tmp_path):
    run = tmp_path / "sparse"
    (run / "iterations" / "0").mkdir(parents=True)
    (run / "iterations" / "1").mkdir(parents=True)
    (run / "iterations" / "1" / "metrics.json").write_text("{not json")
    page = build_report(run)
    for note in ("manifest.json not found", "iteration 1: no readable metrics.json", "config.yaml not found",
                 "no example responses"):
        assert note in page, note
    assert "no data" in page


def test_report_cli(tmp_path):
    run = make_run(tmp_path, iterations=2, instruct=False)
    res = CliRunner().invoke(cli, ["report", str(run)])
    assert res.exit_code == 0, res.output
    page = (run / "report.html").read_text()
    assert "Win rate" in page and "vs instruct" not in page
    out = tmp_path / "elsewhere" / "r.html"
    assert CliRunner().invoke(cli, ["report", str(run), "--out", str(out)]).exit_code == 0 and out.is_file()
    from sami_toolkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "missing")])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------------------------ browser
def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG with the standard library: (width, height, rows of raw pixel bytes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[j] for k in range(0, stride, bpp) for j in (k, k + 1, k + 2)))
        prev = line
    return width, height, rows


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = make_run(tmp_path)
    page = run / "report.html"
    page.write_text(build_report(run))
    shot = tmp_path / "shot.png"
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,900",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    width, height, rows = _png_pixels(shot)
    assert (width, height) == (1200, 900)
    pixels = [row[i:i + 3] for row in rows[::4] for i in range(0, len(row), 12)]
    non_white = sum(1 for p in pixels if min(p) < 235)
    assert non_white > 0.01 * len(pixels), "the screenshot is (almost) blank"
    # the chart colours are on screen: the blue series and the red one
    def near(p, rgb):
        return all(abs(a - b) < 40 for a, b in zip(p, rgb))

    assert any(near(p, (0x1F, 0x77, 0xB4)) for p in pixels), "no blue chart series rendered"
    assert any(near(p, (0xD6, 0x27, 0x28)) for p in pixels), "no red chart series rendered"
