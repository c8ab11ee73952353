"""The one metric vocabulary: every key the evaluators write to ``iterations/<t>/metrics.json``, with the words
every reader shows for it.

The console table, ``summary.md``, the HTML report, ``sami-kit eval mi`` and docs/evaluation.md all name metrics
from here, so a number is called the same thing wherever it appears (they used to disagree: "MI col",
"(headline)", "(headline bound)").  A :class:`Metric` is one value; the keys written beside it (``<key>_sem``,
``<key>_ci_low``...) are its ``companions``.

Why the MI labels insist on "bound": of the estimators of spec §1.6 only the constitution-side InfoNCE value
``log C − L_col`` (sum log-probs) is a valid lower bound on I(Y; C | X) without extra assumptions; it is the
headline.  The paper's estimator is not a bound (it exceeds log C), and the two-sided and response-side InfoNCE
values assume equal marginals P(y | x) (spec §1.5).

Prefixed keys: an evaluator that measures a metric on one part of the evaluation writes the vocabulary key behind
a prefix (``id_`` / ``ood_`` for Exp. 3's in-distribution and held-out principles, ``helpful_`` / ``harmless_`` for
HH's query subsets, ``instruct_`` for the instruct baseline's MI; spec §1.6, §9.1, §9.3), and prefixes combine
(``helpful_instruct_mi_paper``).  :func:`metric` resolves such a key to the base entry with the prefix's words in
front ("ID: MI, InfoNCE ...", "ID MI col"), so every reader shows the columns of those runs without a vocabulary row
per combination; :data:`PREFIXES` lists the known prefixes (docs/evaluation.md documents each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

#: comparators of the ``win-rate`` evaluator: ``win_rate_vs_<comparator>`` (spec §8.2)
COMPARATORS: tuple[str, ...] = ("base", "instruct")
#: prefix of the ``mi-heldout`` evaluator's keys (the ``mi`` keys, measured on fixed base-model responses)
HELDOUT_PREFIX = "heldout_"

SEM = ("_sem",)
CI = ("_ci_low", "_ci_high")


@dataclass(frozen=True)
class Metric:
    """One metric: its ``metrics.json`` key and how to show it.

    ``label`` is the full name (report tables, chart legends, ``eval mi``); ``short_label`` fits a console column
    header and ``summary.md``; ``unit`` is ``nats``, ``tokens``, ``fraction`` (a rate in [0, 1], shown as %),
    ``count``, ``USD`` or ``text`` (notes, file names, nested records); ``is_bound`` says whether the value is a
    valid lower bound on I(Y; C | X)."""

    key: str
    label: str
    short_label: str
    unit: str
    is_bound: bool = False
    description: str = ""
    companions: tuple[str, ...] = ()  #: suffixes of the keys written beside ``key`` (``_sem``...)

    @property
    def keys(self) -> tuple[str, ...]:
        """``key`` and its companion keys."""
        return (self.key, *(self.key + suffix for suffix in self.companions))

    @property
    def is_rate(self) -> bool:
        return self.unit == "fraction"

    @property
    def display_unit(self) -> str:
        """The unit as shown beside a value: rates are shown in percent."""
        return "%" if self.is_rate else self.unit

    @property
    def heading(self) -> str:
        """A table heading: the label and the unit shown, e.g. ``win rate vs base [%]``."""
        return f"{self.label} [{self.display_unit}]" if self.is_number else self.label

    @property
    def is_number(self) -> bool:
        return self.unit in ("nats", "tokens", "fraction", "count", "USD")


# ------------------------------------------------------------------------------------------------ MI
_MI: tuple[Metric, ...] = (
    Metric("mi_infonce_constitutions", "MI, InfoNCE constitution side (headline bound)", "MI col", "nats", True,
           "log C − L_col with sum log-probs, a valid InfoNCE lower bound on I(Y;C|X): the headline number "
           "(spec §1.6)", SEM),
    Metric("mi_paper", "MI, paper estimator (not a bound)", "MI paper", "nats", False,
           "the estimator the paper reported, s_jj − mean_k s_jk (not a bound: it can exceed log C, spec §1.6)",
           SEM),
    Metric("mi_infonce", "MI, InfoNCE two-sided", "MI 2-sided", "nats", False,
           "log C − L, the training loss's form (a bound only under equal marginals P(y|x), spec §1.5)",
           SEM),
    Metric("mi_infonce_responses", "MI, InfoNCE response side", "MI row", "nats", False,
           "log C − L_row (dominated by response length and content with sum log-probs, spec §1.6)", SEM),
    Metric("mean_length_tokens", "mean response length", "length", "tokens", False,
           "mean token count of the all-positive constitution's responses (spec §8.6)", SEM),
    Metric("mi_n_queries", "MI queries scored", "MI n", "count", description="queries in the MI means"),
    Metric("mi_n_constitutions", "MI constitutions", "MI C", "count",
           description="constitutions contrasted per query (C_eval)"),
    Metric("mi_skipped_queries", "MI queries skipped", "MI skipped", "count",
           description="queries left out because a response was empty"),
    Metric("mi_file", "MI per-query file", "MI file", "text", description="the per-query JSONL under eval/"),
    Metric("mi_note", "MI note", "MI note", "text", description="why queries were skipped, if any were"),
    Metric("mi_scorer", "MI scorer", "MI scorer", "text",
           description="what scored the C×C matrices (transformers, vllm)"),
    Metric("mi_precision", "MI scoring precision", "MI precision", "text",
           description="the precision the scores were computed in (float32, bfloat16, bf16-autocast, vllm <dtype>): "
                       "with autocast: auto it depends on the machine"),
)


def _heldout(m: Metric) -> Metric:
    """The ``mi-heldout`` version of an ``mi`` metric: fixed base-model responses, only the scorer changes."""
    if m.key == "mi_infonce_constitutions":
        label = "held-out MI, InfoNCE constitution side (bound)"
        description = ("MI col on fixed base-model responses under the all-positive and all-negative "
                       "constitutions (evaluator `mi-heldout`: only the scorer changes, like a validation loss)")
    else:
        label = f"held-out {m.label}"
        description = f"{m.description}, on fixed base-model responses (evaluator `mi-heldout`)"
    return Metric(HELDOUT_PREFIX + m.key, label, f"held-out {m.short_label}", m.unit, m.is_bound, description,
                  m.companions)


# ------------------------------------------------------------------------------------------------ win rate
def _win_rate(x: str) -> tuple[Metric, ...]:
    """The ``win-rate`` evaluator's metrics against comparator ``x`` (spec §8.4–§8.5)."""
    k = f"win_rate_vs_{x}"
    return (
        Metric(k, f"win rate vs {x}", f"win vs {x}", "fraction", False,
               f"judged win rate against the {x} model under the tie policy, ± SEM and 95% CI (spec §8.5)",
               SEM + CI),
        Metric(f"balanced_{k}", f"balanced win rate vs {x}", f"balanced vs {x}", "fraction", False,
               "ties = 0.5, mean of the test-longer and shorter-or-equal strata (Figure 2b, spec §8.4)", SEM),
        Metric(f"logistic_{k}", f"logistic LC win rate vs {x}", f"logistic vs {x}", "fraction", False,
               "σ(intercept) of [test wins] ~ 1 + tanh(Δlength/sd) (Tables 2–3, spec §8.4)", SEM),
        Metric(f"lc_{k}", f"LC GLM win rate vs {x}", f"LC vs {x}", "fraction", False,
               "AlpacaEval-style length-controlled GLM with a refitting bootstrap CI", CI),
        Metric(f"{k}_n", f"judged pairs vs {x}", f"n vs {x}", "count", description="items in the rate"),
        Metric(f"{k}_failures", f"failed judgments vs {x}", f"failed vs {x}", "count",
               description="judgments that failed (never counted as ties)"),
        Metric(f"{k}_ties", f"ties vs {x}", f"ties vs {x}", "count", description="tied judgments"),
        Metric(f"{k}_mean_len_test", f"mean candidate length vs {x}", f"cand. length vs {x}", "tokens",
               description="mean length of the candidate's responses (unit: length_unit)"),
        Metric(f"{k}_mean_len_comparator", f"mean {x} length", f"{x} length", "tokens",
               description=f"mean length of the {x} model's responses (unit: length_unit)"),
        Metric(f"{k}_notes", f"win-rate notes vs {x}", f"notes vs {x}", "text",
               description="statistics that could not be computed, and why"),
        Metric(f"{k}_note", f"win-rate note vs {x}", f"note vs {x}", "text",
               description="set when the model is its own comparator (the rate is the chance reference 0.5)"),
        Metric(f"{k}_prompt_note", f"prompt note vs {x}", f"prompt note vs {x}", "text",
               description="how the comparator was prompted when its chat template was unavailable"),
        Metric(f"judge_health_vs_{x}", f"judge health vs {x}", f"judge health vs {x}", "text",
               description="failure rate, first-position rate, position consistency, warnings"),
    )


METRICS: tuple[Metric, ...] = (
    *_MI,
    *(_heldout(m) for m in _MI),
    *(m for x in COMPARATORS for m in _win_rate(x)),
    Metric("judge_cost", "judge cost", "judge cost", "USD", description="what the judge's API calls cost"),
    Metric("length_unit", "length unit", "length unit", "text",
           description="what the win-rate lengths count (tokens of which tokenizer)"),
)

_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}

#: the per-iteration console table and ``summary.md`` columns, in order (a column shows when any iteration has it)
SUMMARY_KEYS: tuple[str, ...] = ("mi_infonce_constitutions", "heldout_mi_infonce_constitutions", "mi_paper",
                                 "mi_infonce", "mean_length_tokens", "win_rate_vs_base")
#: the headline columns the console table and ``summary.md`` also show behind every prefix a run wrote (the ID and
#: OOD columns of Exp. 3, the helpful and harmless ones of HH); the HTML report shows every prefixed metric
PREFIXED_SUMMARY_KEYS: tuple[str, ...] = ("mi_infonce_constitutions", "heldout_mi_infonce_constitutions",
                                          "win_rate_vs_base")


# ------------------------------------------------------------------------------------------------ prefixes
@dataclass(frozen=True)
class Prefix:
    """A key prefix (``token`` + ``_``) an evaluator writes before vocabulary keys, and the words it adds."""

    token: str
    label: str
    short_label: str
    description: str

    @property
    def text(self) -> str:
        """The prefix as written in keys: ``id_``."""
        return self.token + "_"


#: the prefixes the built-in evaluators write, in the order readers show them
PREFIXES: tuple[Prefix, ...] = (
    Prefix("id", "ID", "ID", "in distribution: per item one sampled constitution of the set's train principles "
           "(`mi-sampled` / `win-rate` with `principles: id`, Exp. 3, spec §5.3, §9.3)"),
    Prefix("ood", "OOD", "OOD", "out of distribution: per item one sampled constitution of the set's held-out "
           "principles (`principles: ood`, Exp. 3, spec §6.4, §9.3)"),
    Prefix("all", "all principles", "all", "per item one sampled constitution of every principle "
           "(`principles: all`)"),
    Prefix("helpful", "helpful", "helpful", "the helpful-base queries of HH's combined pool only "
           "(`query_subset: helpful-base`, spec §9.1)"),
    Prefix("harmless", "harmless", "harmless", "the harmless-base queries of HH's combined pool only "
           "(`query_subset: harmless-base`, spec §9.1)"),
    Prefix("instruct", "instruct baseline", "instruct", "the instruct baseline under its own chat template "
           "(`mi-instruct`: the paper's dashed lines, spec §1.6)"),
)
_PREFIX_BY_TOKEN: dict[str, Prefix] = {p.token: p for p in PREFIXES}
_TOKEN = re.compile(r"[a-z][a-z0-9]*")


def _prefix(token: str) -> Prefix:
    """The entry of ``token``; a prefix of the user's own (``metric_prefix: cot_``) is shown as written."""
    return _PREFIX_BY_TOKEN.get(token) or Prefix(token, token, token, f"keys written with the prefix `{token}_`")


def split_key(key: str) -> tuple[tuple[Prefix, ...], Metric] | None:
    """``(prefixes, base metric)`` of ``key``: ``id_win_rate_vs_base`` -> ``((ID,), win_rate_vs_base)``; a
    vocabulary key has no prefixes; ``None`` when no vocabulary key ends ``key`` behind ``<token>_`` words.  The
    longest vocabulary key wins (``id_balanced_win_rate_vs_base`` is ID + balanced, not ID + "balanced" + ...)."""
    if key in _BY_KEY:
        return (), _BY_KEY[key]
    for i, ch in enumerate(key):
        if ch != "_" or key[i + 1:] not in _BY_KEY:
            continue
        tokens = key[:i].split("_")
        if all(_TOKEN.fullmatch(t) for t in tokens):
            return tuple(_prefix(t) for t in tokens), _BY_KEY[key[i + 1:]]
        return None
    return None


def _prefixed(prefixes: Sequence[Prefix], base: Metric) -> Metric:
    label = " ".join(p.label for p in prefixes)
    short = " ".join(p.short_label for p in prefixes)
    return replace(base, key="".join(p.text for p in prefixes) + base.key, label=f"{label}: {base.label}",
                   short_label=f"{short} {base.short_label}",
                   description=f"{base.description}; {'; '.join(p.description for p in prefixes)}")


def metric(key: str) -> Metric:
    """The vocabulary entry of ``key``, prefixed keys included (``id_mi_paper`` -> "ID: MI, paper estimator ...";
    a KeyError names an unknown key: add it to :data:`METRICS`)."""
    found = split_key(key)
    if found is None:
        raise KeyError(f"'{key}' is not in the metric vocabulary (sami_toolkit.core.metrics.METRICS)")
    prefixes, base = found
    return _prefixed(prefixes, base) if prefixes else base


def is_metric_key(key: str) -> bool:
    """Whether ``key`` is a vocabulary key or companion, prefixed or not (``ood_win_rate_vs_base_ci_low``)."""
    if split_key(key) is not None:
        return True
    for suffix in {s for m in METRICS for s in m.companions}:
        if key.endswith(suffix):
            found = split_key(key[: -len(suffix)])
            if found is not None and suffix in found[1].companions:
                return True
    return False


def _order(m: Metric) -> tuple:
    """Unprefixed first, then by the prefixes' order in :data:`PREFIXES` (the user's own ones after, by name)."""
    found = split_key(m.key)
    prefixes = found[0] if found else ()
    rank = {p.token: i for i, p in enumerate(PREFIXES)}
    return (len(prefixes), [(rank.get(p.token, len(PREFIXES)), p.token) for p in prefixes])


def variants(base_keys: Iterable[str], present: Iterable[str], *,
             prefixed_keys: Iterable[str] | None = None) -> list[Metric]:
    """The metrics of ``base_keys`` that ``present`` (the keys a run wrote) has, each followed by its prefixed
    versions (``mi_infonce_constitutions``, ``id_mi_infonce_constitutions``, ``ood_...``), in ``base_keys``'
    order.  ``prefixed_keys`` limits which base keys are looked for behind a prefix (default: all of them)."""
    present = set(present)
    base_keys = list(base_keys)
    allowed = set(base_keys if prefixed_keys is None else prefixed_keys)
    by_base: dict[str, list[Metric]] = {}
    for key in present:
        found = split_key(key)
        if found is not None and found[0] and found[1].key in allowed:
            by_base.setdefault(found[1].key, []).append(metric(key))
    out: list[Metric] = []
    for base in base_keys:
        if base in present:
            out.append(metric(base))
        out.extend(sorted(by_base.get(base, []), key=_order))
    return out


def metric_keys() -> frozenset[str]:
    """Every unprefixed key an evaluator may write: each metric's key and its companions (prefixed keys:
    :func:`is_metric_key`)."""
    return frozenset(k for m in METRICS for k in m.keys)
