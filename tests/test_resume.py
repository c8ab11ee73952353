"""Kill a real `sami-kit run` with SIGKILL at several points and resume it: nothing regenerated, nothing lost,
and the result identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import one_thread, tiny_config  # noqa: F401 (autouse fixture)

from sami_toolkit.run.loop import FAULT_ENV
from sami_toolkit.core.io import hash_path

SAMI_KIT = [sys.executable, "-c", "from sami_toolkit.cli import main; main()"]


def _run(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([*SAMI_KIT, *args], env=env, capture_output=True, text=True, timeout=600)


def _samples(run: Path, t: int) -> list[dict]:
    path = run / "iterations" / str(t) / "samples.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _content(records: list[dict]) -> list[tuple]:
    """What must not change between runs: everything except the writing process id and time."""
    return sorted((r["query_id"], r["index"], r["label"], r["constitution"], r["raw"]) for r in records)




@pytest.mark.slow
def test_sigkill_at_every_stage_then_resume(tmp_path, tiny_model_dir):
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "killed"
    ref_dir.mkdir()
    kill_dir.mkdir()
    ref_cfg = tiny_config(ref_dir, tiny_model_dir, evaluators=[])
    kill_cfg = tiny_config(kill_dir, tiny_model_dir, evaluators=[])
    kill_cfg.write_text(ref_cfg.read_text().replace(str(ref_dir), str(kill_dir)))  # same config, other run_dir

    # reference: uninterrupted, in-process
    from sami_toolkit.run.loop import run_sami
    from sami_toolkit.run.config import load_run_config

    run_sami(load_run_config(ref_cfg))
    ref_run = ref_dir / "run"
    run = kill_dir / "run"

    # 1. mid-sampling: killed after the first chunk of 4 of the 10 iteration-1 samples
    proc = _run(["run", str(kill_cfg)], fault="sample:1:1")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    first = _samples(run, 1)
    assert len(first) == 4
    before = (run / "iterations" / "1" / "samples.jsonl").read_bytes()
    with open(run / "iterations" / "1" / "samples.jsonl", "ab") as handle:
        handle.write(b'{"query_id": "p2", "index": 0, "raw": "torn wri')  # a kill in the middle of a write

    # 2. after the pairs of iteration 1 are written
    proc = _run(["run", "--resume", str(run)], fault="pairs:1")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "resuming sampling, 4 of 10" in proc.stderr
    after = (run / "iterations" / "1" / "samples.jsonl").read_bytes()
    assert after.startswith(before)  # the first chunk was kept byte for byte, the torn line dropped
    samples = _samples(run, 1)
    assert len(samples) == 10 and len({(r["query_id"], r["index"]) for r in samples}) == 10
    assert len({r["pid"] for r in samples[:4]}) == 1 and samples[4]["pid"] != samples[0]["pid"]
    assert (run / "iterations" / "1" / "pairs.jsonl").is_file()

    # 3. after the checkpoint of iteration 1
    proc = _run(["run", "--resume", str(run)], fault="checkpoint:1")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "sampling" not in proc.stderr.split("training")[0].replace("resuming run", "")  # no re-sampling
    assert _samples(run, 1) == samples
    pairs_hash = hash_path(run / "iterations" / "1" / "pairs.jsonl")

    # 4. mid-training in iteration 2 (after step 1 of 2)
    proc = _run(["run", "--resume", str(run)], fault="train:2:1")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert hash_path(run / "iterations" / "1" / "pairs.jsonl") == pairs_hash  # finished stage not redone
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["iterations"]["2"]["stages"].get("train") is None

    # 5. resume to the end
    proc = _run(["run", "--resume", str(run)])
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["resumes"]) == 4

    # identical to the uninterrupted run: samples, pairs and checkpoints
    for t in (1, 2):
        assert _content(_samples(run, t)) == _content(_samples(ref_run, t))
        assert (run / "iterations" / str(t) / "pairs.jsonl").read_bytes() == \
               (ref_run / "iterations" / str(t) / "pairs.jsonl").read_bytes()
        assert hash_path(run / "iterations" / str(t) / "checkpoint") == \
               hash_path(ref_run / "iterations" / str(t) / "checkpoint")
    assert not list((run / "iterations" / "2").glob(".checkpoint*"))  # no partial checkpoint left behind


# ------------------------------------------------------------------------------------- refusals and Ctrl-C
def _invoke(args: list[str], registry=None):
    from click.testing import CliRunner

    from sami_toolkit.cli import cli

    result = CliRunner().invoke(cli, args, obj=registry)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def started_run(tmp_path):
    """A run directory as `sami-kit run` leaves it right after starting (no model is ever loaded)."""
    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.run.config import load_run_config

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = load_run_config(tiny_config(tmp_path, model))
    run = RunDir(config.resolved_run_dir())
    run.create(config=config.model_dump(mode="json"), config_hash=config.content_hash(), seed=config.seed,
               principles={})
    return run.root


def test_config_changes_are_dotted_keys_old_to_new():
    from sami_toolkit.core.run_dir import config_changes

    old = {"train": {"lr": 0.001, "lora": None}, "evaluators": [{"name": "mi", "options": {}}],
           "filter": {"drop_substrings": ["a", "b"]}, "seed": 42, "judge": None}
    new = {"train": {"lr": 0.5, "lora": None}, "evaluators": [{"name": "mi", "options": {"batch_size": 4}}],
           "filter": {"drop_substrings": ["a"]}, "seed": 42, "iterations": 2, "judge": {"name": "hf"}}
    assert config_changes(old, new) == [
        'evaluators.0.options.batch_size: (absent) -> 4', 'filter.drop_substrings: ["a", "b"] -> ["a"]',
        "iterations: (absent) -> 2", 'judge: null -> {"name": "hf"}', "train.lr: 0.001 -> 0.5"]
    assert config_changes(old, {**old, "evaluators": []}) == ['evaluators: [{"name": "mi", "options": {}}] -> []']
    assert config_changes(old, old) == []


def test_refused_resume_lists_the_keys_that_differ(started_run):
    result = _invoke(["run", "--resume", str(started_run), "-o", "train.lr=0.5", "-o", "seed=7"])
    assert result.exit_code == 2
    assert "the run was started with a different configuration" in result.stderr
    assert "what differs (recorded -> now):\n  seed: 42 -> 7\n  train.lr: 0.001 -> 0.5\n" in result.stderr
    assert "hint: drop the -o overrides" in result.stderr


def test_refused_resume_lists_at_most_twenty_keys(started_run):
    from sami_toolkit.core.run_dir import RunDir

    payload = {f"k{i:02d}": i for i in range(25)}
    changes = RunDir(started_run).config_changes(payload)
    assert len(changes) == 21 and changes[-1].startswith("... and ")


def test_ctrl_c_prints_the_exact_resume_command(tmp_path, started_run, monkeypatch, sami_kit_registry,
                                                sami_kit_fakes):
    import shlex

    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.run import loop

    RunDir(started_run).manifest_path.unlink()  # start afresh: `run` creates the directory itself
    config = tmp_path / "run.yaml"
    args = ["run", str(config), "-o", "evaluators=[]", "-o", "sampler={name: echo}"]

    def interrupt(self, t):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.SamiLoop, "sample", interrupt)
    result = _invoke(args, sami_kit_registry)
    assert result.exit_code == 130, result.output
    command = f"sami-kit run --resume {shlex.quote(str(started_run))}"
    assert f"Continue the run with:\n  {command}\n" in result.stderr
    # the printed command is accepted as it stands: same config, the run continues
    monkeypatch.setattr(loop.SamiLoop, "run_all", lambda self: None)
    resumed = _invoke(shlex.split(command)[1:], sami_kit_registry)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming run in {started_run}" in resumed.stderr


def test_ctrl_c_before_the_run_started(tmp_path, started_run, monkeypatch):
    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.run import loop

    RunDir(started_run).manifest_path.unlink()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "plan_run", interrupt)
    result = _invoke(["run", str(tmp_path / "run.yaml")])
    assert result.exit_code == 130
    assert "Interrupted before the run started; nothing was written" in result.stderr
    assert "--resume" not in result.stderr
