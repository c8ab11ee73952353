"""What each iteration of a run did, as report sections: the things a user looks for first when a number moved
(or did not).

* **Training loss per step** — ``iterations/<t>/train.json``'s per-step records (:attr:`TrainResult.metrics`),
  one curve per iteration; every iteration trains from the base weights (spec §2.1), so every curve starts at
  step 1 and later iterations run longer (B_t = t·N_b steps).
* **Filtering** — ``filter.json``: queries sampled, pairs kept, and dropped queries by reason (spec §2.7).
* **MI per constitution** — from the MI evaluators' per-query files (``eval/mi.jsonl``, ``eval/mi-heldout.jsonl``):
  the constitution-side InfoNCE term of each constitution's response, ``log C + S[j,j] − logsumexp_k S[k,j]``
  (spec §1.6).  Their mean over the constitutions is the headline bound of that query, so a run whose headline
  stays flat can still show one constitution being learnt while another is not.
* **Held-out responses, before and after** — the ``mi`` evaluator's responses to the same held-out queries under
  every constitution, at iteration 0 (the base model) and the later checkpoints, side by side.

Every piece of model or user text goes through :func:`~sami_toolkit.report.html.esc`.  A section without data
says so in one line; it never raises.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sami_toolkit.report.html import esc, svg_line_chart, table_html
from sami_toolkit.report.run_files import num, read_json, read_jsonl

#: the MI evaluators whose per-query files hold C×C score matrices: (metric prefix, default file, title)
MI_FILES: tuple[tuple[str, str, str], ...] = (("", "mi.jsonl", "mi"), ("heldout_", "mi-heldout.jsonl", "mi-heldout"))
#: at most this many iterations side by side in the before/after block (first, last and evenly spaced between)
MAX_COLUMNS = 4


def _section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{esc(anchor)}'><h2>{esc(title)}</h2>{body}</section>"


def _none(anchor: str, title: str, what: str) -> str:
    return _section(anchor, title, f"<p class='note'>{esc(what)}</p>")


# ------------------------------------------------------------------------------------------------ training loss
def _loss_series(t: int, path: Path, notes: list[str]) -> dict[str, Any] | None:
    train = read_json(path / "train.json", [])
    records = train.get("metrics") if isinstance(train, dict) else None
    if train is not None and not isinstance(records, list):
        notes.append(f"iteration {t}: train.json has no per-step metrics list")
        return None
    points = [(num(r.get("step")), num(r.get("loss"))) for r in records or [] if isinstance(r, dict)]
    points = [(x, y) for x, y in points if x is not None and y is not None]
    if not points:
        return None
    steps = f"{len(points)} step{'s' if len(points) != 1 else ''}"
    return {"label": f"iteration {t} ({steps})", "x": [x for x, _ in points], "y": [y for _, y in points],
            "err": None}


def training_loss(iters: list[tuple[int, Path]], notes: list[str]) -> str:
    """The SAMI loss at every optimizer step, one line per iteration."""
    title = "Training loss per step"
    series = [s for t, path in iters if t > 0 and (s := _loss_series(t, path, notes)) is not None]
    if not series:
        return _none("training-loss", title, "No training recorded yet (iterations/<t>/train.json).")
    chart = svg_line_chart("SAMI loss per optimizer step", series, ylabel="loss", xlabel="step", width=560)
    return _section("training-loss", title,
                    f"<div class='charts'><div class='chart'>{chart}</div></div>"
                    "<p class='note'>Each iteration trains from the base weights for t·N_b steps (spec §2.1), so "
                    "every curve starts at step 1. The loss is the configured SAMI objective (spec §1.3); for "
                    "C constitutions it starts near log C when the model cannot tell them apart.</p>")


# ------------------------------------------------------------------------------------------------ filtering
def filtering(iters: list[tuple[int, Path]], notes: list[str]) -> str:
    """Queries sampled, pairs kept and dropped queries by reason, per iteration (spec §2.7)."""
    title = "Filtering: kept and dropped queries"
    stats = {}
    for t, path in iters:
        if t > 0 and (path / "filter.json").exists():
            data = read_json(path / "filter.json", notes)
            if isinstance(data, dict):
                stats[t] = data
    if not stats:
        return _none("filtering", title, "No filtering recorded yet (iterations/<t>/filter.json).")
    reasons = sorted({str(r) for s in stats.values() if isinstance(s.get("dropped_by_reason"), dict)
                      for r in s["dropped_by_reason"]})
    rows = []
    for t, s in sorted(stats.items()):
        by_reason = s.get("dropped_by_reason") if isinstance(s.get("dropped_by_reason"), dict) else {}
        rows.append([t, s.get("queries", "—"), s.get("kept", "—"), s.get("dropped", "—"),
                     *(by_reason.get(r, 0) for r in reasons)])
    header = ["iteration", "queries sampled", "pairs kept", "dropped", *(f"dropped: {r}" for r in reasons)]
    return _section("filtering", title, table_html(header, rows) +
                    "<p class='note'>A query is dropped when any of its C responses fails the task's filter "
                    "(spec §2.7); kept queries become training pairs.</p>")


# ------------------------------------------------------------------------------------------------ MI files
def _mi_file(path: Path, metrics: dict[str, Any], prefix: str, default: str) -> Path:
    """The MI evaluator's per-query file of iteration dir ``path`` (its ``file_name`` option is in the metrics as
    an absolute path, which is stale once the run directory moved: only its name is used)."""
    recorded = metrics.get(f"{prefix}mi_file")
    return path / "eval" / (Path(recorded).name if isinstance(recorded, str) and recorded else default)


def mi_sources(metrics: dict[int, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Every MI evaluator of the run as (metric prefix, default file, label): the two of :data:`MI_FILES`, then each
    prefixed one that recorded its file (``helpful_mi_file``: HH's subsets). Exp. 3's ``id_``/``ood_``/``all_``
    evaluators draw a different constitution per item, so they have no per-constitution series and are left out."""
    skip = {prefix for prefix, _, _ in MI_FILES} | {"id_", "ood_", "all_"}
    found = sorted({key[: -len("mi_file")] for m in metrics.values() for key in m
                    if key.endswith("mi_file") and isinstance(m[key], str) and key[: -len("mi_file")] not in skip})
    return [*MI_FILES, *((prefix, f"{prefix}mi.jsonl", Path(next(
        m[f"{prefix}mi_file"] for m in metrics.values() if isinstance(m.get(f"{prefix}mi_file"), str))).stem)
        for prefix in found)]


def _mi_rows(iters: list[tuple[int, Path]], metrics: dict[int, dict[str, Any]], prefix: str, default: str,
             notes: list[str]) -> dict[int, list[dict[str, Any]]]:
    out = {}
    for t, path in iters:
        f = _mi_file(path, metrics.get(t, {}), prefix, default)
        if f.is_file():
            rows = read_jsonl(f, notes)
            if rows:
                out[t] = rows
    return out


def _matrix(row: dict[str, Any]) -> tuple[list[str], list[list[float]]] | None:
    """A row's constitution labels and C×C score matrix (rows = constitutions k, columns = responses j), or
    None when the row does not hold a well-formed one."""
    labels, scores = row.get("constitutions"), row.get("scores")
    if not (isinstance(labels, list) and isinstance(scores, list) and len(labels) == len(scores) >= 2):
        return None
    c = len(labels)
    matrix = [[num(v) for v in r] if isinstance(r, list) and len(r) == c else [None] for r in scores]
    if any(v is None for r in matrix for v in r) or any(len(r) != c for r in matrix):
        return None
    return [str(label) for label in labels], matrix  # type: ignore[return-value]


def per_constitution_mi(scores: list[list[float]]) -> list[float]:
    """Constitution-side InfoNCE term of each response j (spec §1.6): ``log C + S[j,j] − logsumexp_k S[k,j]``.

    Its mean over j is the query's ``mi_infonce_constitutions`` (``log C − L_col``, spec §1.3)."""
    c = len(scores)
    out = []
    for j in range(c):
        column = [scores[k][j] for k in range(c)]
        top = max(column)
        lse = top + math.log(sum(math.exp(v - top) for v in column))
        out.append(math.log(c) + scores[j][j] - lse)
    return out


def _constitution_means(rows: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    from sami_toolkit.evaluation.stats import mean_sem

    values: dict[str, list[float]] = {}
    for row in rows:
        parsed = _matrix(row)
        if parsed is None:
            continue
        labels, scores = parsed
        for label, v in zip(labels, per_constitution_mi(scores)):
            values.setdefault(label, []).append(v)
    return {label: mean_sem(vs) for label, vs in values.items()}


def _fmt(mean: float | None, sem: float | None) -> str:
    return "—" if mean is None else f"{mean:.3f}" + (f" ± {sem:.3f}" if sem is not None else "")


def mi_per_constitution(iters: list[tuple[int, Path]], metrics: dict[int, dict[str, Any]], notes: list[str]) -> str:
    """Per MI evaluator: a chart and a table of each constitution's InfoNCE term over the iterations."""
    title = "MI per constitution"
    parts = []
    for prefix, default, name in mi_sources(metrics):
        by_iter = {t: _constitution_means(rows)
                   for t, rows in _mi_rows(iters, metrics, prefix, default, notes).items()}
        by_iter = {t: m for t, m in by_iter.items() if m}
        if not by_iter:
            continue
        labels = list(dict.fromkeys(label for m in by_iter.values() for label in m))
        ts = sorted(by_iter)
        series = [{"label": label, "x": ts, "y": [by_iter[t].get(label, (None, None))[0] for t in ts],
                   "err": [by_iter[t].get(label, (None, None))[1] for t in ts]} for label in labels]
        chart = svg_line_chart(f"MI per constitution ({name}, ± SEM)", series, ylabel="nats", width=480)
        table = table_html(["constitution", *(f"iteration {t}" for t in ts)],
                           [[label, *(_fmt(*by_iter[t].get(label, (None, None))) for t in ts)] for label in labels])
        parts.append(f"<h3>evaluator {esc(name)}</h3><div class='charts'><div class='chart'>{chart}</div></div>"
                     f"{table}")
    if not parts:
        return _none("mi-per-constitution", title, "No per-query MI files (iterations/<t>/eval/mi.jsonl).")
    return _section("mi-per-constitution", title, "".join(parts) +
                    "<p class='note'>For each constitution j: log C + S[j,j] − logsumexp<sub>k</sub> S[k,j], the "
                    "constitution-side InfoNCE term of the response written under j, averaged over the held-out "
                    "queries (± SEM). The mean over the constitutions is the headline bound (spec §1.6).</p>")


# ------------------------------------------------------------------------------------------------ before/after
def _columns(ts: list[int]) -> list[int]:
    """The iterations shown side by side: all of them up to :data:`MAX_COLUMNS`, else the first, the last and
    evenly spaced ones between."""
    if len(ts) <= MAX_COLUMNS:
        return ts
    picks = {round(i * (len(ts) - 1) / (MAX_COLUMNS - 1)) for i in range(MAX_COLUMNS)}
    return [ts[i] for i in sorted(picks)]


def before_after(iters: list[tuple[int, Path]], metrics: dict[int, dict[str, Any]], notes: list[str],
                 k: int = 3) -> str:
    """The ``mi`` evaluator's responses to the first ``k`` held-out queries, one column per iteration, one row
    per constitution: what training changed in what the model writes."""
    title = "Held-out responses, before and after"
    prefix, default, _ = MI_FILES[0]
    by_iter = {t: {str(r.get("id")): r for r in rows if isinstance(r.get("responses"), list)}
               for t, rows in _mi_rows(iters, metrics, prefix, default, []).items()}  # noted by the MI section
    by_iter = {t: rows for t, rows in by_iter.items() if rows}
    if not by_iter:
        return _none("before-after", title, "No held-out responses (the 'mi' evaluator's iterations/<t>/eval/"
                                            "mi.jsonl).")
    shown = _columns(sorted(by_iter))
    common = [qid for qid in by_iter[shown[0]] if all(qid in by_iter[t] for t in shown)][:k]
    blocks = []
    for qid in common:
        first = by_iter[shown[0]][qid]
        labels = [str(x) for x in first.get("constitutions") or []]
        query = first.get("query")
        rows = []
        for j, label in enumerate(labels or ["response"]):
            cols = []
            for t in shown:
                responses = by_iter[t][qid]["responses"]
                text = responses[j] if j < len(responses) else None
                who = "base model (iteration 0)" if t == 0 else f"iteration {t}"
                cols.append(f"<div><p><b>{esc(who)}</b></p><pre>{esc(text if text is not None else '—')}</pre></div>")
            rows.append(f"<p><b>constitution: {esc(label)}</b></p><div class='pair'>{''.join(cols)}</div>")
        head = f"<pre>{esc(query)}</pre>" if isinstance(query, str) else ""
        blocks.append(f"<details open><summary>held-out query {esc(qid)}</summary>{head}{''.join(rows)}</details>")
    if not blocks:
        return _none("before-after", title, "No held-out query was evaluated at every shown iteration.")
    scope = (f"iterations {', '.join(map(str, shown))} of {len(by_iter)} evaluated" if len(shown) < len(by_iter)
             else f"every evaluated iteration ({', '.join(map(str, shown))})")
    return _section("before-after", title,
                    f"<p>The same held-out queries answered under each constitution, {esc(scope)}: greedy "
                    "responses of each checkpoint with the generation prompt (spec §1.6).</p>" + "".join(blocks))
