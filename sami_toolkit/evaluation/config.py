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


class SequentialConfig(_Strict):
    """The sequential gate (docs/ci-gate.md, "Sequential gate"): judge in rounds, stop once the verdict is decided."""

    enabled: bool = Field(False, description="Judge in rounds and stop as soon as the verdict is decided "
                                             "(group-sequential, Lan-DeMets alpha spending; metric win_rate).")
    round: float = Field(0.05, gt=0, le=1, description="Share of the prompt set judged per round (0 < round <= 1; "
                                                        "the order is fixed by the seed).")
    alpha: float = Field(0.05, gt=0, lt=1, description="Total error of the gate at the threshold, alpha/2 per "
                                                       "wrong verdict (0.05 matches the fixed gate's 95% CI).")
    spending: Literal["pocock", "obrien-fleming"] = Field("pocock", description="Alpha-spending function: pocock "
                                                          "(stops early; default) or obrien-fleming.")
    futility: float = Field(0.02, ge=0, lt=0.5, description="From half the prompt set on, stop as inconclusive "
                                                            "when the chance that the last round decides is below "
                                                            "this (0 = never; never a pass or a regression).")


class CalibrationConfig(_Strict):
    """The judge-validity preflight (docs/ci-gate.md, "Judge validity"): labelled pairs judged in both orders."""

    path: Path = Field(description='JSONL of labelled pairs {"id", "prompt", "response_a", "response_b", "label": '
                                   '"A"|"B"|"tie"}; "builtin" for the shipped set.')
    min_accuracy: float = Field(0.7, ge=0, le=1, description="Refuse to decide (exit 4) below this accuracy.")
    min_kappa: float = Field(0.4, ge=-1, le=1, description="Refuse to decide (exit 4) below this Cohen's kappa.")
    min_consistency: float = Field(0.7, ge=0, le=1, description="Refuse to decide (exit 4) below this position "
                                                                "consistency (same winner in both orders).")


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
    parse: Literal["strict", "paper"] = Field("strict", description="How the judge's answer becomes a verdict: "
                                              "strict (a bare A or B after 'Final Response:') or paper (spec "
                                              "§8.3, §10.15: substring test, 'A and B' is a tie; no letter is "
                                              "still a failure).")
    shuffle_principles: bool = Field(True, description="Shuffle the principle order per item (spec §8.2).")
    metric: Literal["win_rate", "lc_win_rate", "balanced_win_rate", "sc_win_rate"] = Field(
        "win_rate", description="Metric the gate decides on (sc_win_rate: style-controlled, length + markdown).")
    sequential: SequentialConfig = Field(default_factory=SequentialConfig, description="Sequential gate: judge in "
                                         "rounds and stop once decided (`--sequential`).")
    calibration: CalibrationConfig | None = Field(None, description="Judge-validity preflight on labelled pairs "
                                                  "before the candidate is judged (`--calibrate FILE`).")
    probe: int = Field(0, ge=0, description="Label-free judge probe: re-judge this many real items with the "
                                            "positions swapped (position-flip rate in judge health; 0 = off; "
                                            "with both_orders every item is probed at no extra cost).")
    per_principle: bool = Field(False, description="Also judge each principle separately (one verdict per "
                                                   "principle per item): per-principle win rates with CIs.")
    principle_gate: Literal["overall", "all"] = Field("overall", description="'overall': the gate decides on the "
                                                      "overall verdict only; 'all': every principle must also pass "
                                                      "(Holm-corrected), needs per_principle.")
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
    def _sequential_and_principles(self) -> "EvalConfig":
        if self.sequential.enabled and self.metric != "win_rate":
            raise ValueError(f"the sequential gate decides on win_rate (its repeated CI), not {self.metric}: "
                             "use metric win_rate with --sequential, or drop --sequential")
        if self.principle_gate == "all" and not self.per_principle:
            raise ValueError("principle_gate 'all' needs per_principle (--per-principle)")
        return self

    @model_validator(mode="after")
    def _constitution_source(self) -> "EvalConfig":
        if self.constitution is None and self.principles is None:
            raise ValueError("give `principles` (a set name or YAML path) or an explicit `constitution` text: "
                             "the judge compares responses under a constitution")
        return self
