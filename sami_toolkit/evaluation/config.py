"""``EvalConfig``: the YAML (or flag-built) configuration of ``sami-kit eval compare``.

One model per file so ``sami-kit config schema`` and the CLI share the same validation and error messages
(unknown keys are errors, every field is described). A side of the comparison is either a checkpoint whose
responses are generated with a sampler, or a responses JSONL produced elsewhere (design §2: every arrow is a
file, so ``eval compare`` can judge outputs of any tool).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sami_toolkit.core.component_refs import ComponentRef, TrackerRefs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SideConfig(_Strict):
    """One side of the comparison: a model to sample from, or a file of ready-made responses."""

    model: str | None = Field(None, description="Model reference (hub id, local directory, .gguf file or "
                                                "'smollm2') whose responses are generated with `sampler`.")
    sampler: ComponentRef = Field(default_factory=lambda: ComponentRef(name="hf"),
                                   description="Sampler used to generate this side's responses from `model`.")
    responses: Path | None = Field(None, description="JSONL of ready-made responses, one "
                                                     '{"id", "prompt", "response"} object per line.')
    label: str | None = Field(None, description="Name shown in reports (default: the model or file name).")

    @model_validator(mode="after")
    def _one_source(self) -> "SideConfig":
        if (self.model is None) == (self.responses is None):
            raise ValueError("give exactly one of `model` (generate responses) or `responses` (a JSONL file)")
        return self

    @property
    def display(self) -> str:
        return self.label or (self.model if self.model is not None else Path(str(self.responses)).name)


class PromptsConfig(_Strict):
    """Where the prompts come from: a registered query source, or a JSONL file."""

    name: str | None = Field(None, description="Registered query source (see `sami-kit query-sources list`).")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the query source.")
    path: Path | None = Field(None, description='JSONL of prompts, one {"id", "prompt"} object per line '
                                                '("text" is accepted for "prompt").')

    @model_validator(mode="after")
    def _one_source(self) -> "PromptsConfig":
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of `name` (a query source) or `path` (a prompts JSONL)")
        return self


class OutputConfig(_Strict):
    """Where results are written (all optional; stderr always gets the summary table)."""

    judgments: Path | None = Field(None, description="Per-item judgments JSONL (outcome, lengths, position, raw "
                                                     "judge text, error). Default: none unless `dir` is set.")
    dir: Path | None = Field(None, description="Directory for judgments.jsonl, summary.json, generated "
                                               "responses and the baseline response cache.")
    summary: Path | None = Field(None, description="Write the JSON summary to this file (`--json` prints it); "
                                                   "default `dir`/summary.json.")
    junit: Path | None = Field(None, description="JUnit XML with one testcase for the gate (failure = regression).")
    markdown: Path | None = Field(None, description="Markdown summary, e.g. for $GITHUB_STEP_SUMMARY.")
    html: Path | None = Field(None, description="Self-contained HTML page with the statistics and every "
                                                "judged pair (model text escaped).")

    @field_validator("dir")
    @classmethod
    def _dir_not_a_file(cls, value: Path | None) -> Path | None:
        """Checked now, not after every judgment has been paid for."""
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a directory")
        return value

    @field_validator("judgments", "summary", "junit", "markdown", "html")
    @classmethod
    def _file_not_a_dir(cls, value: Path | None) -> Path | None:
        if value is not None and value.is_dir():
            raise ValueError(f"{value} is a directory, expected a file path")
        return value


class EvalConfig(_Strict):
    """Configuration of ``sami-kit eval compare``: candidate vs baseline, judged under a constitution."""

    candidate: SideConfig = Field(description="The checkpoint under test (or its responses).")
    baseline: SideConfig = Field(description="The reference it must not regress against (or its responses).")
    prompts: PromptsConfig | None = Field(None, description="Prompt set; optional when both sides are "
                                                            "response files (their prompts are used).")
    task: str = Field("generic", description="Prompt/judge templates: 'tldr', 'hh-rlhf' or 'generic'.")
    principles: str | None = Field(None, description="Principle set name or YAML path; the judge's constitution "
                                                     "is its all-positive constitution (spec §8.2).")
    principle_names: list[str] | None = Field(None, description="Use only these principles of the set.")
    constitution: str | None = Field(None, description="Explicit constitution text (overrides `principles`).")
    judge: ComponentRef = Field(description="Pairwise judge, e.g. {name: litellm, options: {model: gpt-4o}}.")
    seed: int = Field(1, ge=0, le=2**32 - 1, description="Seed for judge positions (spec §8.3 uses 1) and "
                      "principle-order shuffles; 0..2**32-1 (what numpy and torch accept).")
    both_orders: bool = Field(False, description="Judge each pair in both orders (MT-Bench reconciliation; "
                                                 "gives a position-consistency rate; doubles judge cost).")
    shuffle_principles: bool = Field(True, description="Shuffle the principle order per item (spec §8.2).")
    metric: Literal["win_rate", "lc_win_rate", "balanced_win_rate"] = Field(
        "win_rate", description="Metric the gate decides on.")
    margin: float = Field(0.0, ge=0.0, lt=0.5, description="Non-inferiority margin M (fraction): pass if the 95% "
                                                            "CI lower bound > 0.5 - M; fail if the upper < 0.5 - M.")
    min_items: int = Field(20, ge=1, description="Fewest scored (non-failed) items the gate decides on; below it "
                                                 "the gate is inconclusive (exit 3) whatever the CI says (see "
                                                 "docs/ci-gate.md, 'Minimum sample size').")
    max_failure_rate: float = Field(0.2, ge=0.0, le=1.0, description="Largest fraction of failed judgments "
                                                                      "tolerated; above it the judge counts as "
                                                                      "broken or unreachable (exit 4).")
    ties: Literal["half", "loss", "drop"] = Field("half", description="Tie policy of the raw win rate "
                                                                      "(spec §8.4b).")
    bootstrap: int = Field(1000, ge=0, le=100_000, description="Bootstrap replicates for the LC win-rate CI "
                                                                "(0..100000; also the raw rate's bootstrap CI).")
    length_tokenizer: str | None = Field(None, description="Model reference whose tokenizer counts response "
                                                           "lengths (default: the candidate model; words if "
                                                           "neither side is a model).")
    max_cost: float | None = Field(None, gt=0, description="Judge budget in USD, passed to the judge's "
                                                           "`max_cost` (exit 4 when it would be crossed).")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Output files.")
    report_to: TrackerRefs = Field(default_factory=list, description="Experiment trackers the summary, gate "
                                   "verdict and judge health are logged to (`sami-kit trackers list`): names or "
                                   "{name, options} entries; see docs/tracking.md.")

    @model_validator(mode="after")
    def _constitution_source(self) -> "EvalConfig":
        if self.constitution is None and self.principles is None:
            raise ValueError("give `principles` (a set name or YAML path) or an explicit `constitution` text: "
                             "the judge compares responses under a constitution")
        return self
