"""RunConfig: presets, extends, overrides, validation messages and the resume hash."""

from __future__ import annotations

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.run.config import PRESETS, RunConfig, load_run_config, preset_data


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(name):
    cfg = load_run_config(preset=name)
    assert isinstance(cfg, RunConfig)
    assert cfg.constitutions.n >= 2


def test_paper_presets_follow_table1():
    tldr = load_run_config(preset="paper-tldr")
    assert (tldr.batch_size, tldr.iterations, tldr.batches_per_iteration) == (128, 3, 2)
    assert [tldr.steps_for(t) for t in (1, 2, 3)] == [2, 4, 6]  # spec §2.1
    assert tldr.train.lr == 5e-7
    assert tldr.sampler.options.get("max_new_tokens", 350) == 350
    diverse = load_run_config(preset="paper-diverse")
    assert [diverse.steps_for(t) for t in (1, 2, 3)] == [4, 8, 12]
    assert diverse.constitutions.strategy == "complement"
    assert diverse.train.optimizer == "rmsprop"
    hh = load_run_config(preset="paper-hh")
    # one pool of both subsets, one query of each in turn: 10 000 per subset per half (spec §2.5), 1000 + 1000 pairs
    assert hh.task == "hh-rlhf" and hh.data.pool_size == 20000 and hh.data.max_pairs_per_subset == 1000


def test_halves_alternate():
    cfg = load_run_config(preset="paper-tldr")
    assert [cfg.half_for(t) for t in (1, 2, 3, 4)] == [0, 1, 0, 1]
    fixed = load_run_config(preset="paper-tldr", overrides=["data.alternate_halves=false"])
    assert [fixed.half_for(t) for t in (1, 2, 3)] == [0, 0, 0]


def test_extends_and_overrides(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("extends: paper-tldr\nname: mine\ntrain:\n  lr: 1.0e-6\n")
    cfg = load_run_config(path, ["batch_size=64", "train.optimizer=rmsprop"])
    assert cfg.name == "mine"
    assert cfg.train.lr == 1e-6 and cfg.train.optimizer == "rmsprop"
    assert cfg.batch_size == 64
    assert cfg.principles == preset_data("paper-tldr")["principles"]  # inherited


def test_c_below_two_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"constitutions\.n.*>= 2"):
        load_run_config(preset="demo", overrides=["constitutions.n=1"])


def test_unknown_key_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("extends: demo\nitterations: 3\n")
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert "bad.yaml:2" in str(err.value) and "itterations" in str(err.value)


def test_unknown_filter_key_and_preset():
    with pytest.raises(ConfigError, match="filter: unknown key 'max_len'"):
        load_run_config(preset="demo", overrides=["filter.max_len=3"])
    with pytest.raises(ConfigError, match="Did you mean 'demo'"):
        load_run_config(preset="dem")


def test_filter_overrides_merge_with_task_defaults():
    cfg = load_run_config(preset="paper-tldr", overrides=["filter.require_positive_period=false"])
    options = cfg.filter_options()
    assert options.require_positive_period is False
    assert "[insert" in options.drop_substrings  # the task default is kept (spec §2.7)


def test_hash_ignores_run_dir_but_not_settings():
    a = load_run_config(preset="demo")
    b = load_run_config(preset="demo", overrides=["run_dir=/elsewhere"])
    c = load_run_config(preset="demo", overrides=["train.lr=2e-4"])
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()


def test_no_config_at_all():
    with pytest.raises(ConfigError, match="no run configuration"):
        load_run_config(None)


def test_kind_marker_is_accepted_by_run(tmp_path):
    """`kind: run` lets `sami-kit config validate` pick the model; `sami-kit run` must accept the same file."""
    from sami_toolkit.run.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text("kind: run\nextends: demo\niterations: 1\n")
    assert load_run_config(path).iterations == 1
    path.write_text("kind: eval\nextends: demo\n")
    with pytest.raises(Exception, match="kind"):
        load_run_config(path)
