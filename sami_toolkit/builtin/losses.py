"""Built-in plugin: the SAMI losses (spec §1.3).

An ordinary hookimpl module: the component classes live in :mod:`sami_toolkit.builtin.loss_components` (light: torch is
imported only when a loss is called) and are imported inside the hook, so loading plugins stays cheap.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_losses(register: Any) -> None:
    from sami_toolkit.builtin.loss_components import SamiConstitutionsLoss, SamiLoss, SamiResponsesLoss

    register(SamiLoss, aliases=("two-sided",))
    register(SamiResponsesLoss)
    register(SamiConstitutionsLoss)
