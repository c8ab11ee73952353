"""``sami-kit report``: the HTML page of a run directory — panels, what each iteration did (training loss, kept and
dropped queries, MI per constitution, held-out responses before and after), escaping, defensive reading, the
title and footnote it shares with summary.md — and headless Chromium renderings that must show them."""

from __future__ import annotations

import html
import json
import math
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from sami_toolkit.cli import cli
from sami_toolkit.report.html import svg_line_chart
from sami_toolkit.report.run_history import per_constitution_mi
from sami_toolkit.report.run_page import build_report

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


LABELS = ["concise, comprehensive", "not concise, not comprehensive"]


def add_history(run: Path, *, iterations: int = 4, steps_per_iteration: int = 3) -> Path:
    """What each iteration of ``make_run``'s run did: train.json (per-step losses), filter.json (dropped queries
    by reason) and the ``mi`` evaluator's per-query file (score matrices, responses under each constitution)."""
    for t in range(iterations):
        d = run / "iterations" / str(t)
        if t:
            steps = t * steps_per_iteration
            (d / "train.json").write_text(json.dumps({"trainer": "torch", "steps": steps, "metrics": [
                {"step": s, "loss": 0.69 - 0.01 * s - 0.001 * t, "lr": 1e-3} for s in range(1, steps + 1)]}))
            (d / "filter.json").write_text(json.dumps({"queries": 10, "kept": 10 - t, "dropped": t,
                                                       "dropped_by_reason": {"too_long": t - 1, "empty": 1}}))
        rows = [{"id": f"h{i}", "query": f"held-out post {i} {EVIL}", "constitutions": LABELS,
                 "responses": [f"t{t} q{i} positive {EVIL}", f"t{t} q{i} negative"],
                 "scores": [[-10.0, -12.0 - t], [-11.0, -9.0]], "mi_infonce_constitutions": 0.1}
                for i in range(4)]
        (d / "eval" / "mi.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
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
                  "MI, InfoNCE constitution side (headline bound)", "MI, paper estimator (not a bound)",
                  "win rate vs instruct", "chance"):
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


def test_a_long_training_curve_gets_round_ticks_and_no_dot_per_step():
    steps = list(range(1, 201))
    svg = svg_line_chart("loss", [{"label": "iteration 4", "x": steps, "y": [1.0 / s for s in steps], "err": None}],
                         xlabel="step")
    parser = _Collector()
    parser.feed(svg)
    x_labels = [t for t in parser.svg_texts if t.isdigit()]
    assert 3 <= len(x_labels) <= 12 and "200" in x_labels and "1.0" not in parser.svg_texts
    assert svg.count("<circle") == 0 and svg.count("<path") == 1


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


def _section(page: str, anchor: str) -> str:
    start = page.index(f"<section id='{anchor}'>")
    return page[start:page.index("</section>", start)]


def test_report_shows_what_each_iteration_did(tmp_path):
    page = build_report(add_history(make_run(tmp_path)))
    parser = _Collector()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags  # the new sections escape model text too
    # the training loss per step: one curve per trained iteration, steps on the x axis
    loss = _section(page, "training-loss")
    assert "<svg" in loss and "SAMI loss per optimizer step" in loss
    for t in (1, 2, 3):
        assert f"iteration {t} ({3 * t} steps)" in loss
    assert ">step</text>" in loss
    # kept and dropped queries, by reason
    filt = _section(page, "filtering")
    for heading in ("queries sampled", "pairs kept", "dropped: empty", "dropped: too_long"):
        assert heading in filt, heading
    assert "<tr><td>3</td><td>10</td><td>7</td><td>3</td><td>1</td><td>2</td></tr>" in filt
    # MI per constitution: the constitution-side InfoNCE term of each constitution's response
    mi = _section(page, "mi-per-constitution")
    assert "MI per constitution (mi, ± SEM)" in mi and all(html.escape(label) in mi for label in LABELS)
    for t in range(4):
        pos, neg = per_constitution_mi([[-10.0, -12.0 - t], [-11.0, -9.0]])
        assert f"{pos:.3f} ± 0.000" in mi and f"{neg:.3f} ± 0.000" in mi
    # the same held-out queries before (base model) and after training, under each constitution
    before_after = _section(page, "before-after")
    assert "base model (iteration 0)" in before_after and "iteration 3" in before_after
    for t in (0, 3):
        assert html.escape(f"t{t} q0 positive {EVIL}") in before_after
    assert "t0 q0 negative" in before_after and "t3 q0 negative" in before_after
    assert html.escape(f"held-out post 0 {EVIL}") in before_after
    assert "held-out query h3" not in before_after  # the first k = 3 queries


def test_per_constitution_mi_averages_to_the_headline_bound():
    """Each constitution's term log C + S[j,j] − logsumexp_k S[k,j]; their mean is log C − L_col (spec §1.6)."""
    import torch

    from sami_toolkit.training.losses import infonce_mi

    scores = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)) * 3
    terms = per_constitution_mi(scores.tolist())
    assert len(terms) == 4 and all(t <= math.log(4) + 1e-9 for t in terms)
    assert sum(terms) / 4 == pytest.approx(float(infonce_mi(scores, variant="constitutions")), abs=1e-5)


def test_before_after_shows_at_most_four_iterations(tmp_path):
    page = build_report(add_history(make_run(tmp_path, iterations=7), iterations=7))
    before_after = _section(page, "before-after")
    assert "iterations 0, 2, 4, 6 of 7 evaluated" in before_after
    assert "t6 q0 negative" in before_after and "t1 q0 negative" not in before_after


def test_report_keeps_the_good_lines_of_a_corrupt_jsonl(tmp_path):
    """A bad line (not JSON, not UTF-8, not an object) is skipped with one note; every other row is shown."""
    run = make_run(tmp_path, iterations=2, instruct=False)
    f = run / "iterations" / "1" / "eval" / "win_rate_vs_base.jsonl"
    good = f.read_bytes().splitlines(keepends=True)
    f.write_bytes(good[0] + b"{torn json\n" + b"\xff\xfe not utf-8\n" + b"[1, 2]\n" + b"".join(good[1:]))
    add_history(run, iterations=2)
    mi = run / "iterations" / "1" / "eval" / "mi.jsonl"
    mi.write_bytes(b"not json\n" + mi.read_bytes())
    page = build_report(run)
    for i in range(3):
        assert html.escape(f"base answer {i} {EVIL}") in page  # all three judged rows survive
    assert "skipped 3 line(s) that are not JSON objects (line 2, 3, 4); 3 kept" in page
    assert "t1 q0 positive" in _section(page, "before-after") and "skipped 1 line(s)" in page


def test_sections_without_data_say_so(tmp_path):
    page = build_report(make_run(tmp_path, iterations=1))
    for anchor, what in (("training-loss", "No training recorded yet"), ("filtering", "No filtering recorded yet"),
                         ("mi-per-constitution", "No per-query MI files"), ("before-after", "No held-out responses")):
        assert what in _section(page, anchor), anchor


def test_summary_and_report_agree_on_the_name_and_footnote_only_the_shown_columns(tmp_path):
    """A run without a judge and without mi-heldout: summary.md explains MI col, not "held-out MI col" or "win vs
    base"; report.html is titled with the config's name, as summary.md is (not the directory's)."""
    from run_helpers import tiny_config

    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.report.summary import write_summary
    from sami_toolkit.run.config import load_run_config

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = load_run_config(tiny_config(tmp_path, model, name="my-experiment", evaluators=[{"name": "mi"}]))
    run = RunDir(tmp_path / "some-dir")
    run.create(config=config.model_dump(mode="json"), config_hash=config.content_hash(), seed=config.seed,
               principles={"name": "p", "task": "tldr", "principles": []})
    for t in range(config.iterations + 1):
        run.iteration_dir(t).mkdir(parents=True, exist_ok=True)
        run.metrics_path(t).write_text(json.dumps({"mi_infonce_constitutions": 0.1 * t,
                                                   "mi_infonce_constitutions_sem": 0.01}))
    summary = write_summary(run, config).read_text()
    assert summary.startswith("# SAMI run `my-experiment`")
    footnote = next(line for line in summary.splitlines() if line.startswith("kept = "))
    assert "MI col = " in footnote and "held-out MI col" not in footnote and "win vs base" not in footnote
    assert "| MI col |" in summary
    page = build_report(run.root)
    assert "<h1>SAMI run report: my-experiment</h1>" in page and "<title>SAMI report: my-experiment</title>" in page


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


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH (apt-get install -y chromium)")
def test_what_each_iteration_did_renders_in_headless_chromium(tmp_path):
    """Chromium's own DOM of the page holds the four sections with their text, and a screenshot of them shows the
    training-loss and per-constitution charts (their blue and red series)."""
    from sami_toolkit.report.html import html_page

    run = add_history(make_run(tmp_path))
    page = build_report(run)
    (run / "report.html").write_text(page)
    dom = _chromium("--dump-dom", (run / "report.html").as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]

    class Sections(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.text: dict[str, list[str]] = {}
            self.svgs: dict[str, int] = {}
            self._current: str | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self._current = dict(attrs).get("id")
                self.text[self._current] = []
                self.svgs[self._current] = 0
            elif tag == "svg" and self._current:
                self.svgs[self._current] += 1

        def handle_endtag(self, tag):
            if tag == "section":
                self._current = None

        def handle_data(self, data):
            if self._current:
                self.text[self._current].append(data)

    parsed = Sections()
    parsed.feed(dom.stdout)
    text = {k: "".join(v) for k, v in parsed.text.items()}
    assert set(text) >= {"training-loss", "filtering", "mi-per-constitution", "before-after"}
    assert parsed.svgs["training-loss"] == 1 and parsed.svgs["mi-per-constitution"] == 1
    assert "iteration 3 (9 steps)" in text["training-loss"]
    assert "dropped: too_long" in text["filtering"]
    assert all(label in text["mi-per-constitution"] for label in LABELS)
    assert f"t3 q0 positive {EVIL}" in text["before-after"]  # model text rendered as text, not markup
    assert "<script" not in dom.stdout.lower()

    charts = tmp_path / "charts.html"
    charts.write_text(html_page("charts", _section(page, "training-loss") + "</section>" +
                                _section(page, "mi-per-constitution") + "</section>"))
    shot = tmp_path / "charts.png"
    proc = _chromium(f"--screenshot={shot}", "--window-size=800,700", charts.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    width, height, rows = _png_pixels(shot)
    pixels = [row[i:i + 3] for row in rows[::3] for i in range(0, len(row), 9)]

    def near(p, rgb):
        return all(abs(a - b) < 40 for a, b in zip(p, rgb))

    assert any(near(p, (0x1F, 0x77, 0xB4)) for p in pixels), "no blue series in the charts"
    assert any(near(p, (0xD6, 0x27, 0x28)) for p in pixels), "no red series in the charts"
