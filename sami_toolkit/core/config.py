"""Configuration machinery: YAML loading with file:line:column errors, ``-o key.sub=value`` overrides,
pydantic validation errors as one line per problem, and secret redaction.

The config models themselves live in :mod:`sami_toolkit.run.config` (``RunConfig``) and
:mod:`sami_toolkit.evaluation.config` (``EvalConfig``). Secrets are never config values: a config names the environment
variable that holds a key (e.g. ``api_key_env: OPENAI_API_KEY``), and :func:`redact` masks anything that looks like
a secret before a config is written to a run directory or a report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, TypeVar

from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel, ValidationError

    M = TypeVar("M", bound=BaseModel)

SECRET_KEY_PATTERN = re.compile(r"(api[_-]?key|token|secret|password|authorization)$", re.IGNORECASE)
REDACTED = "***redacted***"


# ---------------------------------------------------------------------------------------------------- YAML
def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; syntax errors become ``ConfigError('FILE:LINE:COL: problem')``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def yaml_line_of(path: str | Path, field_path: Sequence[str | int]) -> int | None:
    """The 1-based line where ``field_path`` (or its deepest existing parent) sits in the YAML file."""
    import yaml

    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - only used to enrich messages
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in field_path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# ----------------------------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=5e-5"`` -> ``(["train", "lr"], 5e-05)``; the value is typed by YAML (numbers, booleans,
    lists, null); ``5e-5`` is read as a float even though YAML 1.1 would read it as a string."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. -o train.lr=5e-5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': empty key segment in '{key}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': cannot parse value: {exc}") from None
    if isinstance(value, str):
        try:
            value = float(value) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value) else value
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``KEY=VALUE`` override applied (creating nested mappings)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for part in path[:-1]:
            if isinstance(node, list) and part.isdigit():
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is inside a value that is not a mapping")
            node = node.setdefault(part, {})
            if node is None:
                node = {}
        last = path[-1]
        if isinstance(node, list) and last.isdigit():
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override '{text}': cannot set '{last}' on a non-mapping value")
    return result


# ------------------------------------------------------------------------------------------------ validation
def _fields_at(model_cls: Any, loc: Sequence[str | int]) -> list[str]:
    """Field names of the (nested) pydantic model that ``loc`` points into, for "did you mean" hints."""
    import typing

    from pydantic import BaseModel

    def model_in(annotation: Any) -> Any:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        for arg in typing.get_args(annotation):
            found = model_in(arg)
            if found is not None:
                return found
        return None

    current = model_cls
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = model_in(field.annotation)
    return list(current.model_fields) if current is not None else []


def format_validation_error(exc: "ValidationError", *, prefix: str = "", file: str | Path | None = None,
                            model: Any = None) -> str:
    """One line per problem: ``FILE[:LINE]: field.path: what is wrong (got ...)``, in file order.

    With ``model`` (the validated class), a misspelt key also gets "did you mean '<field>'?".
    """
    import difflib

    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        field_path = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        msg = str(err.get("msg", "invalid value"))
        for noise in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(noise)
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (not allowed here; check the spelling, `sami-kit config schema` lists every key)"
            if model is not None and loc:
                close = difflib.get_close_matches(loc[-1], _fields_at(model, err["loc"][:-1]), n=1, cutoff=0.6)
                if close:
                    msg = f"unknown key; did you mean '{close[0]}'? (`sami-kit config schema` lists every key)"
        elif err.get("type") == "missing":
            msg = "required field is missing"
        got = err.get("input")
        got_text = ""
        if err.get("type") not in ("missing", "extra_forbidden") and not isinstance(got, (dict, list)):
            got_text = f" (got {got!r})"
        where, line = "", None
        if file is not None:
            line = yaml_line_of(file, err.get("loc", ()))
            where = f"{file}:{line}: " if line else f"{file}: "
        lines.append((line or 0, f"{where}{field_path}: {msg}{got_text}"))
    return "\n".join(text for _, text in sorted(lines, key=lambda item: item[0]))


def validate_model(model_cls: "type[M]", data: Any, *, file: str | Path | None = None) -> "M":
    from pydantic import ValidationError

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        where = f"{file}: " if file else ""
        raise ConfigError(f"{where}the top level must be a mapping of keys to values, got {type(data).__name__}")
    try:
        return model_cls.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, file=file, model=model_cls)) from None


def load_config(path: str | Path, model_cls: "type[M]", overrides: Sequence[str] = ()) -> "M":
    """Load ``path`` as YAML, apply overrides and validate into ``model_cls`` (errors: exit 2, no traceback)."""
    data = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    data = apply_overrides(data, overrides)
    return validate_model(model_cls, data, file=path)


# ------------------------------------------------------------------------------------------------- secrets
def redact(data: Any) -> Any:
    """A copy of ``data`` with every value under a secret-looking key replaced by ``***redacted***``."""
    if isinstance(data, Mapping):
        return {k: (REDACTED if isinstance(k, str) and SECRET_KEY_PATTERN.search(k) and v not in (None, "")
                    else redact(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data
