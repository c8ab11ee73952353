"""``sami-kit config validate | schema``: check a run/eval config without running it, and print its JSON schema.

``validate`` is what you run before launching a long job (or in CI on a config repository): it loads the YAML,
applies ``-o`` overrides exactly as ``sami-kit run`` would, validates it, then runs the same preflight as the start
of ``sami-kit run`` / ``eval compare`` (:mod:`sami_toolkit.run.preflight`: every component and option resolved,
every file and count checked), and prints one line per problem as ``FILE:LINE: field.path: what is wrong (got
...)``, exiting 2.  So a config ``validate`` calls OK is one ``run`` accepts, as far as can be known offline and
without loading a model.  Only click and the standard library are imported at module level; the config models are
imported when a command runs, and torch never is.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from sami_toolkit.cli.common import override_option

KINDS = ("run", "eval")

#: kind -> "module:Class" of its pydantic model (or the class itself; tests substitute small models here)
CONFIG_MODELS: dict[str, Any] = {
    "run": "sami_toolkit.run.config:RunConfig",
    "eval": "sami_toolkit.evaluation.config:EvalConfig",
}


def _import(target: str, kind: str) -> Any:
    from sami_toolkit.core.errors import InfrastructureError

    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise InfrastructureError(f"{kind} configs are not available: module {module_name} is missing from "
                                      "this sami-kit installation (reinstall sami-kit)") from None
        raise InfrastructureError(f"{kind} configs are not available: importing {module_name} needs the missing "
                                  f"module '{exc.name}' (install it, or reinstall sami-kit)") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise InfrastructureError(f"{kind} configs are not available: {module_name} has no {attr} "
                                  "(reinstall sami-kit)") from None


def config_model(kind: str) -> Any:
    """The pydantic model class for ``kind``; a clear error if this installation lacks it."""
    from sami_toolkit.core.errors import ConfigError

    if kind not in CONFIG_MODELS:
        raise ConfigError(f"unknown config kind '{kind}': use one of {', '.join(KINDS)}")
    target = CONFIG_MODELS[kind]
    return _import(target, kind) if isinstance(target, str) else target


def _resolve_extends(model: Any, data: dict[str, Any], path: str) -> dict[str, Any]:
    """Merge an ``extends:`` parent (preset or YAML file) the way the config's own loader does.

    The model's module may provide ``resolve_extends(data, path) -> dict``; ``sami_toolkit.run.config``'s
    ``deep_merge``/``_parent_data`` are used otherwise.  Without either, ``extends`` is validated like any key.
    """
    from pathlib import Path

    if "extends" not in data or "extends" in getattr(model, "model_fields", {}):
        return data
    module = sys.modules.get(getattr(model, "__module__", ""))
    resolver = getattr(module, "resolve_extends", None)
    if callable(resolver):
        return resolver(data, Path(path))
    parent_data, deep_merge = getattr(module, "_parent_data", None), getattr(module, "deep_merge", None)
    if callable(parent_data) and callable(deep_merge):
        rest = {k: v for k, v in data.items() if k != "extends"}
        return deep_merge(parent_data(str(data["extends"]), Path(path)), rest)
    return data


#: top-level keys that only an eval config has: a file with one of them and no ``kind:`` is an eval config
EVAL_MARKERS = ("candidate", "baseline")


def detect_kind(data: Any, requested: str | None, file: str) -> str:
    """``--kind`` if given, else the file's top-level ``kind:`` key, else ``eval`` for a file with ``candidate:``
    or ``baseline:`` (only eval configs have them), else ``run``; a disagreement is an error."""
    from sami_toolkit.core.config import yaml_line_of
    from sami_toolkit.core.errors import ConfigError

    declared = data.get("kind") if isinstance(data, dict) else None
    if declared is not None and declared not in KINDS:
        line = yaml_line_of(file, ["kind"])
        raise ConfigError(f"{file}:{line}: kind: must be one of {', '.join(KINDS)} (got {declared!r})")
    if requested and declared and requested != declared:
        raise ConfigError(f"{file}: --kind {requested} given, but the file says kind: {declared}")
    if requested or declared:
        return requested or declared
    return "eval" if isinstance(data, dict) and any(key in data for key in EVAL_MARKERS) else "run"


def _eval_kind_hint(data: dict[str, Any], kind: str) -> str:
    """A hint for a run-config failure on a file whose top-level keys only an eval config has."""
    if kind != "run":
        return ""
    try:
        eval_only = set(config_model("eval").model_fields) - set(config_model("run").model_fields)
    except Exception:  # noqa: BLE001 - only a hint; the validation error itself is what matters
        return ""
    found = sorted(key for key in data if key in eval_only)
    if not found:
        return ""
    return (f"\n  hint: {', '.join(found)} {'is a key' if len(found) == 1 else 'are keys'} of eval configs: if "
            "this is one, add `kind: eval` to the file or pass --kind eval")


def validate_file(path: str, kind: str | None = None, overrides: tuple[str, ...] | list[str] = ()) -> tuple[str, Any]:
    """Load, override and validate a config file; returns ``(kind, model instance)`` or raises ConfigError."""
    from sami_toolkit.core.config import apply_overrides, load_yaml, validate_model
    from sami_toolkit.core.errors import ConfigError

    data = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, got {type(data).__name__}")
    kind = detect_kind(data, kind, path)
    model = config_model(kind)
    if "kind" in data and "kind" not in getattr(model, "model_fields", {}):
        data = {k: v for k, v in data.items() if k != "kind"}  # a selector, not a field of this model
    try:
        data = _resolve_extends(model, data, path)
        data = apply_overrides(data, overrides)
        instance = validate_model(model, data, file=path)
        check = getattr(instance, "check", None)
        if callable(check):  # deeper checks a model may offer: component names, principle sets, templates
            check()
    except ConfigError as exc:  # e.g. an unknown preset, or raised inside a validator: name the file
        message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
        raise ConfigError(message + _eval_kind_hint(data, kind)) from None
    return kind, instance


def preflight_file(path: str, instance: Any) -> list[str]:
    """The run preflight (:func:`sami_toolkit.run.preflight.preflight`) on a validated config, with the
    invocation's plugins; raises ConfigError with ``FILE:LINE:`` lines, returns the notes."""
    from sami_toolkit.cli.session import current_registry
    from sami_toolkit.run.preflight import preflight

    return preflight(instance, current_registry(), file=path)


@click.group("config")
def config() -> None:
    """Validate run/eval configs and print their JSON schema."""


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--kind", type=click.Choice(KINDS), default=None,
              help="Which config this is (default: the file's top-level 'kind:' key, else run).")
@override_option
def validate_cmd(file: str, kind: str | None, overrides: tuple[str, ...]) -> None:
    """Check FILE (with any -o overrides applied) as `run` / `eval compare` would before loading a model: keys and
    values, every component name and option, principle set, constitution count, local model paths, query and
    response files.  Exit 0 if valid, else 2 with one line per problem.

    \b
    The kind is --kind, else the file's `kind:` key, else eval for a file with candidate:/baseline:, else run.
    """
    from sami_toolkit.core.errors import ConfigError

    try:
        kind_used, instance = validate_file(file, kind, overrides)
        notes = preflight_file(file, instance)
    except ConfigError as exc:
        # one ``FILE:LINE: field: problem`` line each, no "Error:" prefix, so editors and grep can jump to them
        click.echo(str(exc), err=True)
        sys.exit(int(exc.exit_code))
    for note in notes:
        click.echo(note if note.startswith("warning:") else f"note: {note}", err=True)
    click.echo(f"{file}: OK ({kind_used} config)")


@config.command("schema")
@click.option("--kind", type=click.Choice(KINDS), default="run", show_default=True, help="Which config.")
def schema_cmd(kind: str) -> None:
    """Print the JSON schema of a config (every key, its type, default and description)."""
    import json

    click.echo(json.dumps(config_model(kind).model_json_schema(), indent=2))
