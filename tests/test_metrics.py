"""The one metric vocabulary (sami_toolkit.core.metrics): complete, unambiguous, used by every reader, and
documented key by key in docs/evaluation.md."""

from __future__ import annotations

import re
from pathlib import Path

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
