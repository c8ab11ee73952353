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

    from sami_toolkit.core.io import read_text

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    text = read_text(path).removeprefix("\ufeff")  # bad bytes: ConfigError naming the file, not a traceback
    try:
        return yaml.safe_load(text)
    except RecursionError:  # e.g. thousands of nested "[": PyYAML's parser recurses per level
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character such as NUL: say where, on one line
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError(f"{path}:{line}:{column}: invalid YAML: control character U+{exc.character:04X} is not "
                          "allowed (write it as an escape in a double-quoted string)") from None
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
    """Return a copy of ``data`` with every ``KEY=VALUE`` override applied (creating nested mappings).

    A numeric segment indexes an existing list entry (``evaluators.0.name=mi``); an index past the end is an
    error that says how long the list is, since silently appending a half-specified entry would hide typos."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(path[:-1]):
            if isinstance(node, list):
                node = node[_list_index(text, path[:depth], part, node)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is inside a value that is not a mapping")
            if node.get(part) is None:  # absent or null (e.g. `judge: null`): start a mapping there
                node[part] = {}
            node = node[part]
        last = path[-1]
        if isinstance(node, list):
            node[_list_index(text, path[:-1], last, node)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override '{text}': cannot set '{last}' on a non-mapping value")
    return result


def _list_index(text: str, parents: Sequence[str], part: str, node: list) -> int:
    """``part`` as an index into the list ``node`` at ``parents``, or a ConfigError saying what is valid."""
    where = ".".join(parents) or "(top level)"
    if not part.isdigit():
        raise ConfigError(f"override '{text}': '{where}' is a list; index it with a number (0..{len(node) - 1}), "
                          f"not '{part}'" if node else f"override '{text}': '{where}' is an empty list")
    index = int(part)
    if index >= len(node):
        entries = f"{len(node)} entr{'y' if len(node) == 1 else 'ies'}"
        valid = f" (indices 0..{len(node) - 1})" if node else ""
        raise ConfigError(f"override '{text}': '{where}' has {entries}{valid}, so there is no index {index}",
                          hint=f"to add an entry, set the whole list: -o '{where}=[{{name: ...}}, ...]'")
    return index


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
                            model: Any = None, keys_help: str = "`sami-kit config schema` lists every key") -> str:
    """One line per problem: ``FILE[:LINE]: field.path: what is wrong (got ...)``, in file order.

    With ``model`` (the validated class), a misspelt key also gets "did you mean '<field>'?".  ``keys_help`` says
    where the valid keys are listed (component options: ``sami-kit <kind> show NAME``).
    """
    import difflib

    lines = []
    for err in _expand_nested(exc.errors()):
        loc = [str(p) for p in err.get("loc", ())]
        field_path = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        msg = str(err.get("msg", "invalid value"))
        for noise in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(noise)
        if err.get("type") == "extra_forbidden":
            msg = f"unknown key (not allowed here; check the spelling, {keys_help})"
            if model is not None and loc:
                close = difflib.get_close_matches(loc[-1], _fields_at(model, err["loc"][:-1]), n=1, cutoff=0.6)
                if close:
                    msg = f"unknown key; did you mean '{close[0]}'? ({keys_help})"
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


NESTED_ERROR = "sami_kit_nested"


def nested_error(exc: "ValidationError") -> Exception:
    """The errors of a mapping validated *inside* a validator (e.g. ``RunConfig.filter`` against
    ``FilterOptions``) as one pydantic error that :func:`format_validation_error` prints at the nested fields —
    ``filter.max_chars: Input should be greater than or equal to 1 (got -1)`` — instead of pydantic's multi-line
    dump of the inner model.  Raise it from the validator."""
    from pydantic_core import PydanticCustomError

    errors = [{"loc": tuple(e.get("loc", ())), "msg": str(e.get("msg", "invalid value")), "type": e.get("type"),
               "input": e.get("input")} for e in exc.errors()]
    summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return PydanticCustomError(NESTED_ERROR, "{summary}", {"summary": summary, "errors": errors})


def _expand_nested(errors: Iterable[Any]) -> list[Any]:
    """pydantic's error list with every :func:`nested_error` replaced by its inner errors (locations joined)."""
    out = []
    for err in errors:
        inner = (err.get("ctx") or {}).get("errors") if err.get("type") == NESTED_ERROR else None
        if inner is None:
            out.append(err)
            continue
        out.extend({**e, "loc": (*err.get("loc", ()), *e["loc"])} for e in inner)
    return out


def _nul_field(node: Any, path: tuple = ()) -> tuple | None:
    """The path of the first string (value or key) holding a NUL byte, else None."""
    if isinstance(node, str):
        return path if "\x00" in node else None
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str) and "\x00" in key:
                return (*path, key)
            found = _nul_field(value, (*path, key))
            if found is not None:
                return found
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found = _nul_field(value, (*path, index))
            if found is not None:
                return found
    return None


def validate_model(model_cls: "type[M]", data: Any, *, file: str | Path | None = None) -> "M":
    """Validate a config mapping into ``model_cls``; every problem is a ConfigError of one line per field."""
    from pydantic import ValidationError

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        where = f"{file}: " if file else ""
        raise ConfigError(f"{where}the top level must be a mapping of keys to values, got {type(data).__name__}")
    nul = _nul_field(data)
    if nul is not None:  # a NUL byte ("\0" in YAML) is never meant, and the OS rejects it in any path
        line = yaml_line_of(file, nul) if file is not None else None
        where = f"{file}:{line}: " if line else (f"{file}: " if file else "")
        raise ConfigError(f"{where}{'.'.join(map(str, nul)) or '(top level)'}: contains a NUL byte (\\0), which "
                          "no config value may hold")
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
    """A copy of ``data`` with every value under a secret-looking key replaced by ``***redacted***``, and every
    other string scrubbed (:func:`sami_toolkit.core.secrets.scrub`): a key pasted into a URL, a header map or a
    free-text option is masked too, whichever environment variable it came from."""
    from sami_toolkit.core.secrets import scrub_data

    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: (REDACTED if isinstance(k, str) and SECRET_KEY_PATTERN.search(k) and v not in (None, "")
                        else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return scrub_data(walk(data))
