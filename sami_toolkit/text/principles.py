"""Principle sets (spec §5, §6): named principles, each with a definition and an antithesis.

Built-in sets are YAML files shipped inside the wheel (``sami_toolkit.principle_sets`` package data, the top-level
``principles/`` folder of the source tree) and read with :mod:`importlib.resources`; users can pass a path to
their own file anywhere a set name is accepted.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sami_toolkit.core.errors import ConfigError

PACKAGE = "sami_toolkit.principle_sets"


class Principle(BaseModel):
    """One principle: its positive ``definition`` and the contrastive ``antithesis`` (spec §5.2)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short identifier, e.g. 'concise'.")
    definition: str = Field(min_length=1, description="The principle as it should be followed.")
    antithesis: str = Field(min_length=1, description="Its opposite, used as a contrastive (negative) variant.")

    @field_validator("definition", "antithesis")
    @classmethod
    def _single_line(cls, value: str) -> str:
        value = value.strip()
        if "\n" in value:
            raise ValueError("must be a single line (constitutions are numbered lists, one principle per line)")
        return value


class PrincipleSet(BaseModel):
    """A named set of principles plus provenance (task, writer, source)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Identifier of the set, e.g. 'tldr-mistral'.")
    task: str = Field(description="Task the principles are for: 'tldr', 'hh-rlhf' or a free-form task.")
    writer: str = Field(default="unknown", description="Model or person that wrote the principles.")
    source: str = Field(default="", description="Where the text comes from (paper table, file, writer run).")
    description: str = Field(default="", description="Free-form notes.")
    principles: list[Principle] = Field(min_length=1, description="The principles, in file order.")
    train_principles: list[str] | None = Field(
        default=None, description="Names used for training / in-distribution evaluation (default: all).")
    held_out_principles: list[str] | None = Field(
        default=None, description="Names held out for out-of-distribution evaluation (spec §6.4).")

    @model_validator(mode="after")
    def _check_names(self) -> "PrincipleSet":
        names = [p.name for p in self.principles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate principle names: {', '.join(dupes)}")
        for field_name in ("train_principles", "held_out_principles"):
            for n in getattr(self, field_name) or []:
                if n not in names:
                    raise ValueError(f"{field_name} names '{n}', which is not one of the principles ({', '.join(names)})")
        return self

    def get(self, name: str) -> Principle:
        for p in self.principles:
            if p.name == name:
                return p
        raise ConfigError(f"principle set '{self.name}' has no principle '{name}'; it has "
                          f"{', '.join(p.name for p in self.principles)}")

    def subset(self, names: list[str] | None) -> list[Principle]:
        return list(self.principles) if names is None else [self.get(n) for n in names]


def builtin_set_names() -> list[str]:
    """Names of the principle sets shipped with sami-kit (file stems)."""
    from importlib.resources import files

    return sorted(p.name[: -len(".yaml")] for p in files(PACKAGE).iterdir() if p.name.endswith(".yaml"))


def _parse(data: Any, where: str) -> PrincipleSet:
    from sami_toolkit.core.config import validate_model

    return validate_model(PrincipleSet, data, file=where)


def load_principle_set(name_or_path: str | Path) -> PrincipleSet:
    """Load a built-in set by name, or a user's YAML file by path."""
    from importlib.resources import files

    from sami_toolkit.core.config import load_yaml

    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return _parse(load_yaml(path), str(path))
    resource = files(PACKAGE) / f"{text}.yaml"
    if not resource.is_file():
        names = builtin_set_names()
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.4)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown principle set '{text}'.{hint} Built-in sets: {', '.join(names)}; "
                          "or pass a path to a YAML file.")
    import yaml

    return _parse(yaml.safe_load(resource.read_text(encoding="utf-8")), f"{PACKAGE}/{text}.yaml")
