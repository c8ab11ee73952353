"""The one metric vocabulary (sami_toolkit.core.metrics): complete, unambiguous, used by every reader, and
documented key by key in docs/evaluation.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sami_toolkit.core.metrics import METRICS, SUMMARY_KEYS, metric, metric_keys

DOC = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"


def _doc_cell(text: str) -> str:
    return text.replace("|", "\\|")


def test_the_doc_lists_every_key_with_its_label_unit_and_bound():
    doc = DOC.read_text(encoding="utf-8")
    for m in METRICS:
        row = re.search(rf"^\| `{re.escape(m.key)}` \| (.*)$", doc, flags=re.MULTILINE)
        assert row, f"docs/evaluation.md has no metrics-table row for `{m.key}`"
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.group(1))]
        assert cells[:4] == [_doc_cell(m.label), _doc_cell(m.short_label), m.unit, "yes" if m.is_bound else "no"], \
            m.key


def test_keys_and_labels_are_unique():
    assert len({m.key for m in METRICS}) == len(METRICS)
    assert len({m.label for m in METRICS}) == len(METRICS)
    assert len({m.short_label for m in METRICS}) == len(METRICS)
    assert "mi_infonce_constitutions_sem" in metric_keys() and "win_rate_vs_instruct_ci_high" in metric_keys()


def test_only_the_constitution_side_infonce_is_a_bound():
    # spec §1.6: the paper's estimator is not a bound; the two-sided / response-side values assume equal marginals
    assert {m.key for m in METRICS if m.is_bound} == {"mi_infonce_constitutions", "heldout_mi_infonce_constitutions"}
    assert "not a bound" in metric("mi_paper").label and "headline" in metric("mi_infonce_constitutions").label


def test_the_summary_and_the_report_take_their_words_from_the_vocabulary():
    from sami_toolkit.report import run_page, summary

    assert summary.SUMMARY_COLUMNS == tuple((metric(k).short_label, k) for k in SUMMARY_KEYS)
    for key in SUMMARY_KEYS:  # the footnote explains every column with the vocabulary's description
        assert f"{metric(key).short_label} = {metric(key).description}" in summary.footnote()
    for key in (*run_page.STAT_KEYS, *run_page.MI_CHART_KEYS, *(k for k, _ in run_page.WIN_RATE_CHART)):
        metric(key)  # a KeyError names a key missing from the vocabulary


# ------------------------------------------------------------------------------------------------ prefixed keys
def test_prefixed_keys_resolve_to_their_base_entry_with_the_prefix_words():
    from sami_toolkit.core.metrics import PREFIXES, is_metric_key, split_key

    m = metric("id_mi_infonce_constitutions")
    assert (m.label, m.short_label) == ("ID: MI, InfoNCE constitution side (headline bound)", "ID MI col")
    assert m.is_bound and m.unit == "nats" and m.companions == ("_sem",)
    # the longest vocabulary key wins: ID + "balanced win rate", not ID + balanced + "win rate"
    assert metric("ood_balanced_win_rate_vs_base").short_label == "OOD balanced vs base"
    assert metric("helpful_instruct_mi_paper").label == "helpful instruct baseline: MI, paper estimator (not a bound)"
    assert metric("harmless_heldout_mi_infonce_constitutions").short_label == "harmless held-out MI col"
    assert metric("cot_mi_paper").short_label == "cot MI paper"  # a metric_prefix of the user's own
    assert split_key("mi_paper") == ((), metric("mi_paper"))
    assert [p.token for p in split_key("helpful_instruct_mi_paper")[0]] == ["helpful", "instruct"]
    for bad in ("id_not_a_metric", "ID_mi_paper", "train_loss_last", "mi_paper_extra"):
        with pytest.raises(KeyError):
            metric(bad)
    assert is_metric_key("ood_win_rate_vs_base_ci_low") and is_metric_key("id_mi_infonce_constitutions_sem")
    assert not is_metric_key("id_mi_n_queries_sem") and not is_metric_key("pairs_kept")
    assert len({p.token for p in PREFIXES}) == len(PREFIXES)


def test_the_doc_lists_every_prefix():
    from sami_toolkit.core.metrics import PREFIXES

    doc = DOC.read_text(encoding="utf-8")
    for p in PREFIXES:
        row = re.search(rf"^\| `{re.escape(p.text)}` \| (.*)$", doc, flags=re.MULTILINE)
        assert row, f"docs/evaluation.md has no prefix-table row for `{p.text}`"
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.group(1))]
        assert cells[:3] == [p.label, p.short_label, _doc_cell(p.description)], p.text


def _prefixed_run(tmp_path: Path) -> tuple:
    """A 2-iteration run directory whose metrics.json files carry only prefixed keys, as paper-diverse and
    paper-hh write them (ID / OOD and helpful / harmless MI and win rates)."""
    import json

    from run_helpers import tiny_config

    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.run.config import load_run_config

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = load_run_config(tiny_config(tmp_path, model, name="exp3-and-hh", evaluators=[{"name": "mi"}]))
    run = RunDir(tmp_path / "run-dir")
    run.create(config=config.model_dump(mode="json"), config_hash=config.content_hash(), seed=config.seed,
               principles={"name": "p", "task": "tldr", "principles": []})
    for t in range(config.iterations + 1):
        metrics: dict = {}
        for i, prefix in enumerate(("id_", "ood_", "helpful_", "harmless_")):
            metrics.update({f"{prefix}mi_infonce_constitutions": 0.101 * t + 0.01 * i,
                            f"{prefix}mi_infonce_constitutions_sem": 0.01,
                            f"{prefix}mi_paper": 0.2 + t, f"{prefix}mi_paper_sem": 0.02,
                            f"{prefix}mean_length_tokens": 30.0 + i,
                            f"{prefix}win_rate_vs_base": 0.5 + 0.05 * t + 0.01 * i,
                            f"{prefix}win_rate_vs_base_sem": 0.03,
                            f"{prefix}balanced_win_rate_vs_base": 0.5,
                            f"{prefix}judge_health_vs_base": {"failure_rate": 0.0, "warnings": []}})
        metrics["helpful_instruct_mi_infonce_constitutions"] = 0.33
        run.iteration_dir(t).mkdir(parents=True, exist_ok=True)
        run.metrics_path(t).write_text(json.dumps(metrics))
    return run, config


def test_console_summary_and_report_show_the_prefixed_columns(tmp_path):
    from rich.console import Console

    from sami_toolkit.report.run_page import build_report
    from sami_toolkit.report.summary import summary_rows, summary_table, write_summary

    run, config = _prefixed_run(tmp_path)
    headers, rows = summary_rows(run, config)
    assert headers[4:] == ["ID MI col", "OOD MI col", "helpful MI col", "harmless MI col", "helpful instruct MI col",
                           "ID win vs base", "OOD win vs base", "helpful win vs base", "harmless win vs base"]
    assert rows[2][4] == "0.20±0.01" and rows[2][headers.index("OOD win vs base")] == "0.61±0.03"
    console = Console(record=True, width=250)  # the loop's print_iteration prints this table
    console.print(summary_table(run, config, upto=1))
    text = console.export_text()
    assert "ID MI col" in text and "OOD win vs base" in text and "0.10±0.01" in text

    summary = write_summary(run, config).read_text()
    assert "| ID MI col | OOD MI col |" in summary and "| OOD win vs base |" in summary
    footnote = next(line for line in summary.splitlines() if line.startswith("kept = "))
    assert f"MI col = {metric('mi_infonce_constitutions').description}" in footnote
    assert "ID … = in distribution" in footnote and "OOD … = out of distribution" in footnote
    assert footnote.count("MI col = ") == 1  # the base column is explained once, not once per prefix

    page = build_report(run.root)
    for label in ("ID: MI, InfoNCE constitution side (headline bound)", "OOD: win rate vs base",
                  "OOD: MI, paper estimator (not a bound)", "helpful: mean response length",
                  "harmless: balanced win rate vs base", "helpful instruct baseline: MI, InfoNCE"):
        assert label in page, label
    stats = page[page.index("<h2>Statistics</h2>"):page.index("<h2>", page.index("<h2>Statistics</h2>") + 5)]
    assert "<h3>ID</h3>" in stats and "<h3>OOD</h3>" in stats and "<h3>harmless</h3>" in stats
    assert "No metrics recorded yet" not in stats
    assert "61.0" in stats  # OOD win rate at t = 2, in percent
    health = page[page.index("<h2>Judge health</h2>"):]
    assert "OOD base" in health and "No judge health recorded" not in health


def test_the_report_charts_every_prefixed_mi_evaluator_and_the_card_lists_prefixed_metrics():
    """HH's per-subset MI evaluators get their own 'MI per constitution' chart, and a checkpoint's model card lists
    prefixed metrics (Exp. 3's ID/OOD), not 'no evaluator ran'."""
    from sami_toolkit.hub.model_card import metrics_table
    from sami_toolkit.report.run_history import mi_sources

    metrics = {0: {"mi_file": "/old/place/mi.jsonl"},
               1: {"helpful_mi_file": "/x/helpful_mi.jsonl", "id_mi_file": "/x/mi-id.jsonl",
                   "id_mi_infonce_constitutions": 0.25, "id_mi_infonce_constitutions_sem": 0.01}}
    sources = mi_sources(metrics)
    assert [s[0] for s in sources] == ["", "heldout_", "helpful_"]  # id_: one sampled constitution per item
    assert sources[2][1:] == ("helpful_mi.jsonl", "helpful_mi")
    table = metrics_table(metrics[1])
    assert "`id_mi_infonce_constitutions`" in table and "0.25" in table and "ID" in table
