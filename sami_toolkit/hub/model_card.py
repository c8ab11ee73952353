"""The model card (``README.md``) of a checkpoint: the Hub's YAML metadata and what a reader needs to use the model.

Written with ``huggingface_hub``'s :class:`~huggingface_hub.ModelCard` API into every checkpoint directory (and
rewritten by ``sami-kit push`` with the repository id in the loading example), from the run directory's own files
only — ``config.yaml``, ``principles.yaml``, ``manifest.json`` and the iteration's ``train.json`` and
``metrics.json`` — so a card can be built for any finished iteration, also of a run made before cards existed.

The metadata holds what the Hub indexes: ``base_model`` (only a hub id: a local path means nothing there),
``library_name`` (``peft`` for a LoRA adapter), ``tags`` (``sami``, ``sami-kit``, the task), ``license`` (the base
model's, when its card is on disk: a local base directory or the Hub cache — nothing is downloaded), ``datasets``
(for the built-in HH-RLHF and TL;DR sources), ``pipeline_tag``. The body gives the constitution and principle set
(spec §5), the training settings (spec §2.1, §10.1), the iteration's metrics table with the labels of
:mod:`sami_toolkit.core.metrics`, and how to load and prompt the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import read_json
from sami_toolkit.core.metrics import METRICS, variants
from sami_toolkit.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard

#: the built-in query sources' Hub datasets (a ``data_files`` override means a local copy: not named)
SOURCE_DATASETS = {"hh-rlhf": "Anthropic/hh-rlhf", "tldr": "openai/summarize_from_feedback"}
#: embedded model aliases -> (hub id, license) (models/loading.py's EMBEDDED_MODELS)
EMBEDDED_BASES = {"smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
TAGS = ("sami", "sami-kit")
CARD_NAME = "README.md"
#: what the loading example loads before the card names a repository (``sami-kit push`` rewrites it)
LOCAL_REF = "path/to/this/checkpoint"


def _yaml(path: Path) -> dict[str, Any]:
    from sami_toolkit.core.config import load_yaml

    data = load_yaml(path) if path.is_file() else None
    return data if isinstance(data, dict) else {}


def _is_hub_id(ref: str) -> bool:
    return ref.count("/") == 1 and not ref.endswith(".gguf") and not Path(ref).expanduser().exists() \
        and not ref.startswith((".", "/", "~"))


def base_model_id(model: str) -> str | None:
    """The base model's hub id, if it has one (an embedded alias maps to its source)."""
    if model in EMBEDDED_BASES:
        return EMBEDDED_BASES[model][0]
    return model if _is_hub_id(model) else None


def base_license(model: str) -> str | None:
    """The base model's license from its model card on disk (a local directory's README.md, or the Hub cache)."""
    if model in EMBEDDED_BASES:
        return EMBEDDED_BASES[model][1]
    from huggingface_hub import ModelCard

    card_path: Path | None = Path(model).expanduser() / CARD_NAME
    if not card_path.is_file():
        card_path = None
        if _is_hub_id(model):
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, CARD_NAME)
            card_path = Path(cached) if isinstance(cached, str) else None
    if card_path is None:
        return None
    try:
        license_ = ModelCard.load(card_path, ignore_metadata_errors=True).data.license
    except Exception:  # noqa: BLE001 - an unreadable base card just leaves the license out
        return None
    return license_ if isinstance(license_, str) and license_ else None


def _datasets(config: Mapping[str, Any]) -> list[str]:
    data = config.get("data") or {}
    out = []
    for key in ("source", "eval_source"):
        ref = data.get(key) or {}
        if isinstance(ref, Mapping) and ref.get("name") in SOURCE_DATASETS and not (ref.get("options") or {}).get(
                "data_files"):
            out.append(SOURCE_DATASETS[ref["name"]])
    return list(dict.fromkeys(out))


def _fmt(value: Any, unit: str) -> str:
    if unit == "fraction":
        return f"{100 * value:.1f}%"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The iteration's numeric metrics as a Markdown table (vocabulary labels, ± SEM, 95% CI when written)."""
    rows = []
    for m in variants([m.key for m in METRICS], metrics):  # with the prefixed ones (HH subsets, Exp. 3 ID/OOD)
        value = metrics.get(m.key)
        if not m.is_number or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        sem, low, high = (metrics.get(m.key + s) for s in ("_sem", "_ci_low", "_ci_high"))
        spread = f" ± {_fmt(sem, m.unit)}" if isinstance(sem, (int, float)) else ""
        ci = f"[{_fmt(low, m.unit)}, {_fmt(high, m.unit)}]" if isinstance(low, (int, float)) and \
            isinstance(high, (int, float)) else ""
        rows.append(f"| {m.label} | {_fmt(value, m.unit)}{spread} | {ci} | `{m.key}` |")
    if not rows:
        return "_No evaluator ran on this checkpoint._"
    return "\n".join(["| metric | value | 95% CI | key |", "|---|---|---|---|", *rows])


def _principles(pset: Mapping[str, Any]) -> str:
    lines = [f"Principle set **{pset.get('name', '?')}** (task `{pset.get('task', '?')}`, written by "
             f"{pset.get('writer', 'unknown')}):", "", "| principle | definition | antithesis |", "|---|---|---|"]
    for p in pset.get("principles") or []:
        cells = (str(p.get(k, "")).replace("|", "\\|").replace("\n", " ") for k in ("name", "definition",
                                                                                   "antithesis"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _settings(config: Mapping[str, Any], train: Mapping[str, Any], t: int, iterations: int) -> str:
    settings = config.get("train") or {}
    constitutions = config.get("constitutions") or {}
    rows = [("iteration", f"{t} of {iterations} (trained from the base weights, spec §2.1)"),
            ("optimizer steps", train.get("steps")), ("batch size (queries)", train.get("batch_size")),
            ("trainer", train.get("trainer")), ("precision", train.get("precision")),
            ("learning rate", settings.get("lr")), ("optimizer", settings.get("optimizer")),
            ("loss", settings.get("loss")), ("KL beta", settings.get("kl_beta")),
            ("LoRA", "yes" if settings.get("lora") else "no"),
            ("constitutions per query (C)", constitutions.get("n")), ("pair strategy", constitutions.get("strategy")),
            ("seed", config.get("seed"))]
    return "\n".join(["| setting | value |", "|---|---|",
                      *(f"| {k} | {v} |" for k, v in rows if v not in (None, ""))])


def _usage(model_ref: str, adapter: bool, generation: str) -> str:
    if adapter:
        code = ("from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                f'model = AutoPeftModelForCausalLM.from_pretrained("{model_ref}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{model_ref}")')
    else:
        code = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{model_ref}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{model_ref}")')
    return (f"```python\n{code}\n```\n\nSAMI trains the model to follow the constitution written in its prompt. "
            f"It was sampled and evaluated with this template (`{{constitution}}` is a rendered constitution, "
            f"`{{question}}` the query):\n\n```text\n{generation}\n```")


def build_model_card(run_dir: str | Path, t: int, *, repo_id: str | None = None) -> "ModelCard":
    """The card of iteration ``t``'s checkpoint of the run in ``run_dir`` (``repo_id`` goes into the loading
    example and the title; without it, a placeholder path: the card holds no absolute path)."""
    from huggingface_hub import ModelCard, ModelCardData

    root = Path(run_dir)
    checkpoint = root / "iterations" / str(t) / "checkpoint"
    if t < 1 or not checkpoint.is_dir():
        raise ConfigError(f"{root}: iteration {t} has no checkpoint ({checkpoint})")
    config, pset = _yaml(root / "config.yaml"), _yaml(root / "principles.yaml")
    train = read_json(checkpoint.parent / "train.json", {}) or {}
    metrics = read_json(checkpoint.parent / "metrics.json", {}) or {}
    model = str(config.get("model") or train.get("base_model") or "")
    adapter = (checkpoint / "adapter_config.json").is_file()
    base_id = base_model_id(model)
    task = str(config.get("task") or pset.get("task") or "")
    data = ModelCardData(base_model=base_id, library_name="peft" if adapter else "transformers",
                         license=base_license(model), datasets=_datasets(config) or None,
                         tags=[*TAGS, *([task] if task else []), *([f"principles-{pset['name']}"]
                                                                   if pset.get("name") else [])],
                         pipeline_tag="text-generation",
                         sami_kit={"version": __version__, "iteration": t, "run": config.get("name"),
                                   "principle_set": pset.get("name"), "task": task})
    from sami_toolkit.text.prompts import get_templates

    generation = get_templates(task or "generic", config.get("templates") or None).generation
    title = repo_id or f"{config.get('name') or root.name} — iteration {t}"
    body = "\n\n".join([
        f"# {title}",
        f"A SAMI fine-tune of `{base_id or model}` (Fränken et al., *Self-Supervised Alignment with Mutual "
        f"Information*, NeurIPS 2024), made with sami-kit {__version__}: the model was "
        "trained to make its responses carry the information of the constitution in its prompt, without "
        "preference labels.",
        "## Constitution", _principles(pset),
        "## Training", _settings(config, train, t, int(config.get("iterations") or t)),
        f"## Evaluation (iteration {t})", metrics_table(metrics),
        # no absolute path in the card: a checkpoint's bytes must not depend on where its run directory lives
        "## How to use", _usage(repo_id or LOCAL_REF, adapter, generation),
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def write_model_card(run_dir: str | Path, t: int, *, repo_id: str | None = None,
                     out: str | Path | None = None) -> Path:
    """Write iteration ``t``'s card to its checkpoint's README.md (or ``out``) atomically; returns the path."""
    from sami_toolkit.core.io import atomic_write_text

    card = build_model_card(run_dir, t, repo_id=repo_id)
    path = Path(out) if out is not None else Path(run_dir) / "iterations" / str(t) / "checkpoint" / CARD_NAME
    return atomic_write_text(path, str(card))
