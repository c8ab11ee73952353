"""Every shipped preset runs for shape on the tiny model (issue 16): `-o model=<tiny> -o iterations=1` and small
sizes, everything else as the preset says — its constitutions, sampling prompt, filters, schedule and evaluators.

Training and MI scoring run the real tiny model; sampling is the scripted sampler of test_exp3 (deterministic
summaries, CoT-formatted for a CoT prompt) and the judge is the `constant` fake, so a run takes a second or two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from run_helpers import one_thread, write_posts  # noqa: F401 (autouse fixture)
from test_exp3 import Plugin

from sami_toolkit.run.config import PRESETS, load_run_config
from sami_toolkit.text.constitutions import Constitution

HH_LIKE = {"paper-hh"}


def _jsonl_mix(tmp_path: Path, stem: str, n: int) -> str:
    """A mix source over two local files labelled as the HH subsets."""
    parts = []
    for i, subset in enumerate(("helpful-base", "harmless-base")):
        path = write_posts(tmp_path / f"{stem}-{subset}.jsonl", n=n, seed=10 * i + len(stem))
        parts.append({"name": "jsonl", "options": {"path": str(path)}, "label": subset})
    return json.dumps({"name": "mix", "options": {"sources": parts}})


def tiny_preset(tmp_path: Path, model_dir: Path, preset: str, *extra: str) -> Any:
    if preset in HH_LIKE:
        data = [f"data.source={_jsonl_mix(tmp_path, 'train', 8)}", f"data.eval_source={_jsonl_mix(tmp_path, 'eval', 3)}",
                "data.pool_size=6", "eval.size=6", "data.max_pairs_per_subset=2"]
    else:
        posts, held = write_posts(tmp_path / "posts.jsonl", n=12), write_posts(tmp_path / "eval.jsonl", n=4, seed=3)
        data = [f'data.source={{"name": "jsonl", "options": {{"path": "{posts}"}}}}',
                f'data.eval_source={{"name": "jsonl", "options": {{"path": "{held}"}}}}', "data.pool_size=6",
                "eval.size=4"]
    base = load_run_config(preset=preset)
    overrides = [f"model={model_dir}", "iterations=1", "batch_size=2", "batches_per_iteration=1", *data,
                 'sampler={"name": "scripted-summary"}', 'trainer={"name": "torch"}', "train.precision=fp32",
                 "train.gradient_checkpointing=false", 'judge={"name": "constant", "options": {"verdict": "A"}}',
                 f"run_dir={tmp_path / 'run'}"]
    if base.eval.baseline_model:
        overrides.append(f"eval.baseline_model={model_dir}")  # the tiny model stands in for the instruct model
    return load_run_config(preset=preset, overrides=[*overrides, *extra])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _expected_keys(config: Any) -> set[str]:
    """One headline key per configured evaluator, with the prefix its options give it."""
    from sami_toolkit.evaluation.mi import subset_prefix

    keys = set()
    for ref in config.evaluators:
        o = ref.options
        sub = subset_prefix(o.get("query_subset"))
        if ref.name == "mi":
            keys.add(f"{sub}mi_paper")
        elif ref.name == "mi-instruct":
            keys.add(f"{sub}instruct_mi_paper")
        elif ref.name == "mi-sampled":
            keys.add(f"{o.get('principles', 'id')}_mi_paper")
        elif ref.name == "win-rate":
            split = f"{o.get('principles', 'id')}_" if o.get("constitution") == "sampled" else ""
            keys.add(f"{sub}{split}win_rate_vs_base")
    return keys


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_for_shape_on_the_tiny_model(tmp_path, tiny_model_dir, sami_kit_registry, sami_kit_fakes,
                                                       sami_kit_register_plugin, preset):
    from sami_toolkit.run.loop import run_sami

    sami_kit_register_plugin(Plugin(), "exp3-test")
    config = tiny_preset(tmp_path, tiny_model_dir, preset)
    root = run_sami(config, registry=sami_kit_registry)
    metrics = json.loads((root / "iterations" / "1" / "metrics.json").read_text())
    missing = _expected_keys(config) - set(metrics)
    assert not missing, missing
    train = json.loads((root / "iterations" / "1" / "train.json").read_text())
    assert train["steps"] == config.steps_for(1) == 1
    if config.train.schedule == "linear_warmup":  # the authors' trainer: the first step has LR 0 (spec §10.5)
        assert train["metrics"][0]["lr"] == 0.0
    if preset in HH_LIKE:
        _check_hh(root, config)


def _check_hh(root: Path, config: Any) -> None:
    """The combined HH pool: per subset the code's order and the subset's own principle always negated (spec §5.3),
    at most max_pairs_per_subset pairs of each, and helpful / harmless evaluated separately."""
    samples = _rows(root / "iterations" / "1" / "samples.jsonl")
    assert {row["query_id"].split(":")[0] for row in samples} == {"helpful-base", "harmless-base"}
    for row in samples:
        subset = row["query_id"].split(":")[0]
        c = Constitution.from_dict({"items": row["items"]})
        rule = config.constitutions.subsets[subset]
        assert list(c.names) == rule.names
        if row["index"] == 0:
            assert c.is_positive
        else:
            assert dict(c.items)[rule.negate[0]] is False
    pairs = _rows(root / "iterations" / "1" / "pairs.jsonl")
    for subset in ("helpful-base", "harmless-base"):
        assert sum(p["query_id"].startswith(subset) for p in pairs) <= 2
    metrics = json.loads((root / "iterations" / "1" / "metrics.json").read_text())
    assert metrics["helpful_win_rate_vs_base_n"] == metrics["harmless_win_rate_vs_base_n"] == 3
    assert metrics["helpful_mi_n_queries"] + metrics.get("helpful_mi_skipped_queries", 0) == 3


def test_hh_preset_caps_pairs_per_subset_in_pool_order(tmp_path, tiny_model_dir, sami_kit_registry, sami_kit_fakes,
                                                      sami_kit_register_plugin):
    """Without the HH drop of "sorry" (which scripted words never contain) every query survives, so the cap shows:
    3 queries of each subset per half, at most 2 pairs of each kept, the rest counted."""
    from sami_toolkit.run.loop import run_sami

    sami_kit_register_plugin(Plugin(), "exp3-test")
    root = run_sami(tiny_preset(tmp_path, tiny_model_dir, "paper-hh", "evaluators=[]"), registry=sami_kit_registry)
    filt = json.loads((root / "iterations" / "1" / "filter.json").read_text())
    assert filt["queries"] == 6 and filt["kept"] <= 4
    if filt["dropped"] == 0:
        assert filt["over_max_pairs"] == 2
    assert filt["kept"] + filt["dropped"] + filt.get("over_max_pairs", 0) == 6


# ------------------------------------------------------------------------------------- docs/presets.md recipes
@pytest.mark.parametrize("preset, evaluators", [
    ("paper-tldr", "[{name: mi}, {name: mi-instruct}]"),
    ("paper-diverse", "[{name: mi-sampled, options: {principles: id}}, {name: mi-sampled, options: "
                      "{principles: ood}}]"),
])
def test_the_no_judge_recipe_passes_the_preflight(preset, evaluators):
    from sami_toolkit.plugins.registry import load_plugins
    from sami_toolkit.run.preflight import check_run_config

    config = load_run_config(preset=preset, overrides=["judge=null", f"evaluators={evaluators}"])
    assert config.judge is None and all(e.name != "win-rate" for e in config.evaluators)
    check_run_config(config, load_plugins()).raise_for_problems()


def test_the_papers_hh_filter_recipe_and_the_strong_writer():
    config = load_run_config(preset="paper-hh", overrides=[
        'filter.drop_substrings=["The assistant","Response","[insert","]"]', "filter.drop_prefixes=[\"I'm sorry\"]"])
    options = config.filter_options()
    assert "sorry" not in options.drop_substrings and options.drop_prefixes == ["I'm sorry"]
    assert load_run_config(preset="paper-tldr", overrides=["principles=tldr-opus"]).principles == "tldr-opus"
