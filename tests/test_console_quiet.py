"""The console carries sami-kit's own lines (issue 14 §6): a real run on a tiny model, its output captured as a CI
log would (not a terminal), shows no DeepSpeed "Setting accelerator to CPU" with the torch trainer, no transformers
tqdm bars for model loads and saves, and plain progress lines for the evaluation instead of nothing.  The same run
directory shows that the report reads what the loop really writes; ``eval mi`` takes its task from the principle
set."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from run_helpers import tiny_config

from sami_toolkit.cli import cli

#: what third-party libraries print on their own: DeepSpeed's accelerator warning, transformers' tqdm bars
FOREIGN = ("Setting accelerator", "Loading checkpoint shards", "Loading weights", "Writing model shards", "it/s]",
           "s/it]", "█")


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``sami-kit run`` in a subprocess (a fresh interpreter: DeepSpeed's warning comes at its first import) with
    the torch trainer, two iterations, the ``mi`` and ``mi-heldout`` evaluators; returns (run dir, output)."""
    root = tmp_path_factory.mktemp("quiet-run")
    config = tiny_config(root, tiny_model_dir, trainer={"name": "torch"},
                         evaluators=[{"name": "mi"}, {"name": "mi-heldout"}])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run([sys.executable, "-m", "sami_toolkit", "run", str(config)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=root)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return root / "run", output


@pytest.mark.slow
def test_a_torch_run_prints_only_sami_kits_lines(tiny_run):
    _, output = tiny_run
    for foreign in FOREIGN:
        assert foreign not in output, f"{foreign!r} in the run's output:\n{output[-3000:]}"
    assert "\r" not in output  # no bar redrawn in place: a log gets whole lines


@pytest.mark.slow
def test_the_evaluation_prints_progress_lines_outside_a_terminal(tiny_run):
    _, output = tiny_run
    for stage in (r"MI: generating \[iteration \d+\]", r"MI: scoring \(transformers\) \[iteration \d+\]",
                  r"MI: base responses \[[^\]]+\]"):
        assert re.search(stage + r": \d+/\d+ done", output), stage
    assert "iteration 2: evaluating 'mi'" in output


@pytest.mark.slow
def test_the_report_of_a_real_run_shows_what_happened(tiny_run):
    """report.html as the loop wrote it: example responses are the samples (not empty <pre></pre>), and the
    training loss, kept/dropped counts, MI per constitution and before/after responses are there."""
    import html

    run, _ = tiny_run
    page = (run / "report.html").read_text(encoding="utf-8")
    examples = page[page.index("<h2>Example responses</h2>"):page.index("<h2>config.yaml</h2>")]
    samples = [json.loads(line) for line in (run / "iterations" / "2" / "samples.jsonl").read_text().splitlines()]
    shown = examples[examples.index("iteration 2 query ") + len("iteration 2 query "):].split("<", 1)[0]
    first = [s for s in samples if s["query_id"] == shown]
    assert len(first) == 2  # C = 2 constitutions (positive_vs_negative)
    for sample in first:  # the first query's responses, each one
        assert f"<pre>{html.escape(sample['raw'])}</pre>" in examples
    if all(s["raw"] for s in samples):
        assert "<pre></pre>" not in examples
    for anchor in ("training-loss", "filtering", "mi-per-constitution", "before-after"):
        assert f"<section id='{anchor}'>" in page, anchor
    section = page[page.index("<section id='training-loss'>"):]
    assert "iteration 1 (1 step)" in section and "iteration 2 (2 steps)" in section
    mi_rows = [json.loads(line) for line in (run / "iterations" / "2" / "eval" / "mi.jsonl").read_text().splitlines()]
    before_after = page[page.index("<section id='before-after'>"):]
    assert "base model (iteration 0)" in before_after and html.escape(mi_rows[0]["query"]) in before_after
    assert "<h1>SAMI run report: tiny</h1>" in page  # the config's name, as in summary.md (the directory is "run")
    summary = (run / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("# SAMI run `tiny`") and "win vs base" not in summary  # no judge: no such column


def test_eval_mi_takes_the_task_from_the_principle_set(tiny_model_dir, tmp_path, sami_kit_registry, sami_kit_fakes):
    """README: `eval mi CKPT --principles tldr-mistral --prompts posts.jsonl` uses the set's `task: tldr` (the
    "The post" prefill and "POST:" question), unless --task says otherwise."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"my landlord and my dog {i}"}) + "\n"
                             for i in range(2)), encoding="utf-8")

    def responses(*extra: str) -> list[str]:
        out = tmp_path / f"out{len(extra)}"
        result = CliRunner().invoke(cli, ["eval", "mi", str(tiny_model_dir), "--principles", "tldr-mistral",
                                          "--prompts", str(posts), "--sampler", "echo", "--sampler-option",
                                          "max_chars=30", "--out-dir", str(out), "--json", *extra],
                                    obj=sami_kit_registry)
        assert result.exit_code == 0, result.output
        return [r for line in (out / "mi.jsonl").read_text().splitlines() for r in json.loads(line)["responses"]]

    # the echo sampler answers with the prompt's tail: the tldr generation prompt ends "Summary: The post"
    assert all(r.startswith("The post") and r.endswith("Summary: The post") for r in responses())
    assert all(r.endswith("Response:") for r in responses("--task", "generic"))


def test_plain_progress_lines(monkeypatch):
    """Outside a terminal: a line per quarter of the work and one at the end, never one per item."""
    import io

    from rich.console import Console

    from sami_toolkit.sampling import generation

    buffer = io.StringIO()
    monkeypatch.setattr("sami_toolkit.core.consoles.console", lambda stderr=True: Console(file=buffer, width=120))

    def work(advance):
        for _ in range(96):
            advance(1)
        return "result"

    assert generation.with_progress(work, 96, "mi: scoring") == "result"
    lines = buffer.getvalue().splitlines()
    assert lines == ["mi: scoring: 24/96", "mi: scoring: 48/96", "mi: scoring: 72/96", "mi: scoring: 96/96 done"]


def test_deepspeed_accelerator_warning_is_dropped_unless_deepspeed_trains():
    import logging

    from sami_toolkit.models.loading import DEEPSPEED_LOGGER, quiet_libraries

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger(DEEPSPEED_LOGGER)
    handler = Keep()
    logger.addHandler(handler)
    try:
        quiet_libraries()
        logger.warning("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.")
        logger.warning("a real DeepSpeed warning")
        quiet_libraries(keep_deepspeed=True)
        logger.warning("Setting accelerator to CPU (deepspeed trains)")
    finally:
        logger.removeHandler(handler)
        quiet_libraries()
    assert records == ["a real DeepSpeed warning", "Setting accelerator to CPU (deepspeed trains)"]


@pytest.mark.slow
def test_model_loads_print_no_progress_bars(tiny_model_dir):
    """Any command that loads a model (eval mi, eval compare, principles write) goes through models.loading,
    which turns transformers' bars off first: a fresh interpreter shows no "Loading weights" bar."""
    code = ("import sys; from sami_toolkit.models.loading import load_model, load_tokenizer; "
            "load_tokenizer(sys.argv[1]); load_model(sys.argv[1]); print('loaded')")
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "loaded" in output
    for foreign in FOREIGN:
        assert foreign not in output, output[-3000:]
