"""How a config names a registered component: ``{name, options}`` — one model for run and eval configs, so a
sampler, judge or tracker is written the same way in both (``sami-kit <kind> show NAME`` lists the options)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class ComponentRef(BaseModel):
    """A registered component by name, with its options."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(description="Registered component name (see `sami-kit <kind> list`).")
    options: dict[str, Any] = Field(default_factory=dict, description="The component's options "
                                                                     "(`sami-kit <kind> show NAME` lists them).")


def tracker_refs(value: Any) -> Any:
    """A ``report_to`` value as written — a name, a list of names, or ``{name, options}`` entries — as the list of
    ``{name, options}`` data a :class:`ComponentRef` validates (``report_to: [tensorboard, wandb]``,
    ``-o report_to=tensorboard``)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value


#: the ``report_to`` field of run and eval configs: experiment trackers by name or ``{name, options}``
TrackerRefs = Annotated[list[ComponentRef], BeforeValidator(tracker_refs)]
