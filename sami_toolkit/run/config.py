"""``RunConfig``: everything one ``sami-kit run`` needs, validated before any model is loaded.

A run config is YAML.  It may start from a shipped *preset* (``extends: paper-tldr`` in the file, or
``sami-kit run --preset paper-tldr``); the file's keys are merged over the preset (mappings merge key by key,
everything else replaces), then ``-o key=value`` overrides apply, then pydantic validates.  Every field carries a
description so ``sami-kit config schema`` documents the format, and every error names the file, line and field.

Only pydantic and the standard library are imported here: the CLI validates configs at start-up.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from sami_toolkit.core.component_refs import ComponentRef, TrackerRefs
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training.settings import TrainSettings

#: presets shipped as ``sami_toolkit/data/preset-<name>.yaml``
PRESETS: tuple[str, ...] = ("paper-hh", "paper-tldr", "paper-tldr-mixtral", "paper-diverse", "paper-diverse-cot",
                             "demo")

#: the largest seed: numpy, torch and Python's random all accept 0..2**32-1; torch.manual_seed overflows beyond 2**64
MAX_SEED = 2**32 - 1

#: how many ``extends:`` levels a config may stack (a chain this long is a mistake, not a design)
MAX_EXTENDS_DEPTH = 16


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SubsetConstitutions(_Model):
    """Per-subset constitution rule of a combined pool (HH, spec §5.3): which principles, in which generation
    order, and which one every negative negates."""

    names: list[str] | None = Field(None, description="Principles in generation order (the HH code lists harmless "
                                    "first for helpful-base queries and helpful first for harmless-base, spec "
                                    "§5.3/§10.19); default: constitutions.names.")
    negate: list[str] = Field(default_factory=list, description="Principles every negative constitution negates "
                              "(HH: the subset's own principle, spec §5.3); positive_vs_negative only.")


class ConstitutionsConfig(_Model):
    """How the C constitutions contrasted per query are drawn (spec §2.2, §5.3, §10.3)."""

    strategy: Literal["positive_vs_negative", "complement", "complement_random_flip", "iid"] = Field(
        "positive_vs_negative", description="positive_vs_negative (Exp. 1–2: the all-definition constitution vs "
        "distinct non-positive ones), complement (Exp. 3: a random variant and its exact complement), iid "
        "(Algorithm 1: independent uniform draws).")
    n: int = Field(2, description="C, constitutions per query (2 in every paper experiment, spec §2.2); >= 2.")
    names: list[str] | None = Field(None, description="Principle names to draw from (default: the set's "
                                                      "train_principles, else all).")
    k: int | None = Field(None, ge=1, description="Principles per constitution (complement default 2; others: "
                                                  "all of `names`).")
    subsets: dict[str, SubsetConstitutions] = Field(
        default_factory=dict, description="Rules per query subset (a query's meta 'subset', e.g. helpful-base / "
        "harmless-base from the hh-rlhf or mix sources): names in generation order and always-negated principles "
        "(spec §5.3). Queries of other subsets use the rule above.")

    @field_validator("n")
    @classmethod
    def _at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError("C (constitutions.n) must be >= 2: SAMI contrasts several constitutions per query "
                             "(spec §2.2)")
        return value


class DataConfig(_Model):
    """Where queries come from and how the pool is split (spec §2.4–§2.6, §8.1)."""

    source: ComponentRef = Field(description="Query source for training-data generation (`sami-kit "
                                             "query-sources list`: hh-rlhf, tldr, jsonl, csv).")
    pool_size: int | None = Field(None, ge=1, description="Queries per half of the generation pool (spec §2.5: "
                                  "TL;DR 2500, HH 10000); null = split the available queries in two equal halves.")
    alternate_halves: bool = Field(True, description="Iteration 1 samples on half A, 2 on half B, 3 on A… so the "
                                   "sampling model never generates on queries it was trained on (spec §2.6). "
                                   "false = every iteration uses half A.")
    max_pairs_per_subset: int | None = Field(None, ge=1, description="Keep at most this many surviving pairs per "
                                             "query subset (meta 'subset'; one subset without it), in pool order: "
                                             "the run scripts' n_examples (TL;DR 2000, HH 1000 + 1000, spec "
                                             "§2.4–§2.5). null = every surviving pair.")
    eval_source: ComponentRef | None = Field(None, description="Held-out query source for evaluation (spec §8.1: "
                                             "TL;DR validation split, HH test split); null = the last "
                                             "`eval.size` queries of `source`, which are then excluded from the pool.")


class EvalSettings(_Model):
    """Held-out evaluation after every iteration, and of the base model as iteration 0 (spec §8)."""

    size: int = Field(250, ge=1, description="Held-out queries (the paper used the first 250, spec §8.1).")
    baseline_model: str | None = Field(None, description="Optional instruct/baseline model for comparisons "
                                       "(spec §8.3: mistral-7b-instruct).")
    at_iteration_zero: bool = Field(True, description="Also evaluate the base model (t = 0) so curves start at 0.")
    options: dict[str, Any] = Field(default_factory=dict, description="Extra options passed to every evaluator "
                                    "through EvalContext.options.")


class RunConfig(_Model):
    """A complete SAMI expert-iteration run (spec §2.1)."""

    name: str = Field("sami-run", description="Run name; the default run directory is runs/<name>.")
    seed: int = Field(42, ge=0, le=MAX_SEED, description="Seed for constitution sampling, principle shuffling, "
                      "training and eval (the paper used 42, spec §4.2); 0..2**32-1.")
    model: str = Field(description="Base model π_BASE: hub id, local directory, .gguf file or 'smollm2'.")
    trust_remote_code: bool = Field(False, description="Allow model repositories to run their own code.")
    task: str = Field("tldr", description="Prompt/filter task: tldr, hh-rlhf or generic (spec §7).")
    principles: str = Field(description="Principle set name (`sami-kit principles list`) or YAML path.")
    constitutions: ConstitutionsConfig = Field(default_factory=ConstitutionsConfig,
                                               description="Constitution pair strategy and C.")
    templates: dict[str, Any] = Field(default_factory=dict, description="Prompt template overrides (fields of "
                                      "PromptTemplates: generation, training, question_format, stop, ...).")
    data: DataConfig = Field(description="Query sources and pool split.")
    sampler: ComponentRef = Field(default_factory=lambda: ComponentRef(name="hf"),
                                  description="Response sampler (`hf` = transformers generate; greedy, "
                                              "max_new_tokens 350 by default, spec §2.3).")
    sampling_prompt: Literal["generation", "generation_cot", "training"] = Field(
        "generation", description="Template that samples the training responses: generation (example format with "
        "prefill, Exp. 1–2, spec §7.1/§7.3), generation_cot (Exp. 3 CoT, spec §7.2: only the text after 'Summary:' "
        "is kept and the CoT filters apply) or training (Exp. 3 without CoT: the training prompt, no prefill).")
    filter: dict[str, Any] = Field(default_factory=dict, description="Overrides of the task's default filter "
                                   "(FilterOptions: drop_substrings, require_positive_period, require_distinct, "
                                   "max_chars; spec §2.7).")
    iterations: int = Field(3, ge=1, description="N, expert iterations (3 in the paper, Table 1).")
    batches_per_iteration: int = Field(2, ge=1, description="N_b: iteration η trains B_η = η·N_b optimizer steps "
                                       "(Table 1: 2 → 2/4/6 steps; 4 for llama → 4/8/12; spec §2.1).")
    batch_size: int = Field(128, ge=1, description="Queries per optimizer step (Table 1: 128).")
    trainer: ComponentRef = Field(default_factory=lambda: ComponentRef(name="torch"),
                                  description="Training engine: torch (built in) or deepspeed (plugin).")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Optimizer, precision, loss, scoring.")
    evaluators: list[ComponentRef] = Field(default_factory=lambda: [ComponentRef(name="mi")],
                                           description="Evaluators run on held-out queries after each iteration.")
    judge: ComponentRef | None = Field(None, description="Pairwise judge for win-rate evaluators (optional).")
    eval: EvalSettings = Field(default_factory=EvalSettings, description="Held-out evaluation settings.")
    run_dir: str | None = Field(None, description="Run directory (default runs/<name>).")
    report_to: TrackerRefs = Field(default_factory=list, description="Experiment trackers to log to "
                                   "(`sami-kit trackers list`): names, e.g. [tensorboard, wandb], or {name, options} "
                                   "entries; see docs/tracking.md.")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        """The canonical task name; an unknown one is reported at the ``task`` field with a did-you-mean."""
        from sami_toolkit.text.prompts import normalize_task

        try:
            return normalize_task(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("filter")
    @classmethod
    def _filter_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Check the overrides now (``filter.max_chars: -1`` names the field at validation), not when the loop
        builds the filter after sampling."""
        import difflib

        from pydantic import ValidationError

        from sami_toolkit.core.config import nested_error
        from sami_toolkit.text.postprocess import FilterOptions

        known = list(FilterOptions.model_fields)
        unknown = sorted(str(key) for key in value if key not in known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown key '{unknown[0]}'{hint} (keys: {', '.join(known)})")
        try:
            FilterOptions.model_validate(value)
        except ValidationError as exc:
            raise nested_error(exc) from None
        return value

    @field_validator("templates")
    @classmethod
    def _template_values(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Check template overrides against the task's templates at validation, as the run would."""
        from sami_toolkit.text.prompts import get_templates

        task = info.data.get("task")  # absent when the task itself was invalid (reported there)
        if value and isinstance(task, str):
            try:
                get_templates(task, value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    # ----------------------------------------------------------------------------------------- derived values
    def steps_for(self, iteration: int) -> int:
        """B_η = η · N_b optimizer steps for iteration η (spec §2.1)."""
        return iteration * self.batches_per_iteration

    def half_for(self, iteration: int) -> int:
        """0 (half A) for odd iterations, 1 (half B) for even ones when halves alternate (spec §2.6)."""
        return 0 if (not self.data.alternate_halves or iteration % 2 == 1) else 1

    def filter_options(self) -> Any:
        """The task's default filter (spec §2.7; the CoT rules with ``sampling_prompt: generation_cot``) with this
        config's overrides."""
        from sami_toolkit.text.postprocess import FilterOptions, default_filter_options

        base = default_filter_options(self.task, cot=self.sampling_prompt == "generation_cot").model_dump()
        return FilterOptions.model_validate({**base, **self.filter})

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def hash_payload(self) -> dict[str, Any]:
        """The config as hashed for ``--resume``: everything except where the run lives and what it reports to
        (trackers change no result, and a tracker may be added to a resumed run)."""
        from sami_toolkit.core.config import redact

        data = redact(self.model_dump(mode="json"))
        data.pop("run_dir", None)
        data.pop("report_to", None)
        return data

    def content_hash(self) -> str:
        payload = json.dumps(self.hash_payload(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ loading
def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged over ``base``: mappings merge recursively, every other value replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: the ``extends:`` chain walked so far: (identity, label) per config — a preset's name or a file's resolved path
_Chain = tuple[tuple[str, str], ...]


def _push(chain: _Chain, key: str, label: str) -> _Chain:
    """``chain`` plus one more config, or a ConfigError naming the whole chain if that config is already in it
    (``a.yaml -> b.yaml -> a.yaml``) or the chain is absurdly deep; without this a cycle is a RecursionError."""
    labels = [item_label for _, item_label in chain]
    if any(key == item_key for item_key, _ in chain):
        raise ConfigError(f"extends: cycle {' -> '.join([*labels, label])}",
                          hint="remove the `extends:` that points back to a config already in the chain")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(f"extends: more than {MAX_EXTENDS_DEPTH} levels ({' -> '.join(labels[:3])} -> ...)")
    return (*chain, (key, label))


def preset_data(name: str, _chain: _Chain = ()) -> dict[str, Any]:
    """The raw mapping of a shipped preset (resolving its own ``extends``)."""
    import difflib
    from importlib.resources import files

    import yaml

    resource = files("sami_toolkit") / "data" / f"preset-{name}.yaml"
    if not resource.is_file():
        close = difflib.get_close_matches(name, PRESETS, n=1, cutoff=0.4)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset '{name}'.{hint} Presets: {', '.join(PRESETS)}")
    chain = _push(_chain, f"preset:{name}", name)
    data = yaml.safe_load(resource.read_text(encoding="utf-8")) or {}
    parent = data.pop("extends", None)
    return deep_merge(_parent_data(parent, None, chain), data) if parent else data


def load_run_config(path: str | Path | None = None, overrides: Sequence[str] = (), *,
                    preset: str | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from a preset and/or a YAML file plus ``-o`` overrides (errors: exit 2)."""
    from sami_toolkit.core.config import apply_overrides, load_yaml, validate_model

    data: dict[str, Any] = preset_data(preset) if preset else {}
    if path is not None:
        user = load_yaml(path)
        if user is None:
            user = {}
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
        if user.get("kind", "run") == "run":
            user.pop("kind", None)  # `kind: run` marks the file for `sami-kit config validate`
        data = deep_merge(data, resolve_extends(user, path))
    if not data:
        raise ConfigError("no run configuration: pass a CONFIG.yaml and/or --preset NAME "
                          f"(presets: {', '.join(PRESETS)})")
    data = apply_overrides(data, overrides)
    # validation line numbers only make sense against the user's own file
    return validate_model(RunConfig, data, file=path)


def _parent_data(parent: Any, child: Path | None, chain: _Chain) -> dict[str, Any]:
    """``extends:`` names a preset, or a YAML file (relative to the extending file)."""
    from sami_toolkit.core.config import load_yaml

    where = f"{child}: " if child is not None else ""
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{where}extends: expected a preset name ({', '.join(PRESETS)}) or a path to a YAML "
                          f"file, got {parent!r}")
    if not parent.endswith((".yaml", ".yml")):
        return preset_data(parent, chain)
    base = child.parent if child is not None else Path.cwd()
    parent_path = Path(parent) if Path(parent).is_absolute() else base / parent
    chain = _push(chain, str(parent_path.resolve()), str(parent_path))
    data = load_yaml(parent_path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{parent_path}: the top level must be a mapping of keys to values")
    if data.get("kind", "run") == "run":
        data.pop("kind", None)  # a parent may be a complete `kind: run` config itself
    grand = data.pop("extends", None)
    return deep_merge(_parent_data(grand, parent_path, chain), data) if grand not in (None, "") else data


def config_from_mapping(data: Mapping[str, Any], *, where: str | None = None) -> RunConfig:
    """Validate an already-resolved mapping (e.g. a run directory's ``config.yaml``)."""
    from sami_toolkit.core.config import validate_model

    return validate_model(RunConfig, dict(data), file=where)


def resolve_extends(data: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """``data`` (a run config mapping read from ``path``) merged over its ``extends:`` parent, if any; used by
    ``sami-kit config validate`` so it resolves presets exactly like ``sami-kit run``."""
    data = dict(data)
    parent = data.pop("extends", None)
    if parent in (None, ""):
        return data
    chain: _Chain = ((str(Path(path).resolve()), str(path)),)
    return deep_merge(_parent_data(parent, Path(path), chain), data)
