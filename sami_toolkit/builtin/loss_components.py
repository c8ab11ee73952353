"""The registered SAMI Loss components (spec §1.3): thin wrappers around :func:`sami_toolkit.training.losses.sami_loss`.

Kept apart from :mod:`sami_toolkit.training.losses` so that listing or validating losses (``sami-kit losses list``,
``config validate``) does not import torch; :meth:`__call__` imports it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Loss

if TYPE_CHECKING:  # pragma: no cover
    import torch


class _SamiLossComponent(Loss):
    """Shared body of the three registered SAMI losses; subclasses fix ``variant``."""

    variant: ClassVar[Literal["both", "responses", "constitutions"]] = "both"

    class Options(ComponentOptions):
        weight: float = Field(1.0, gt=0, description="Multiplier applied to the loss (1.0 = the paper's loss).")

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        from sami_toolkit.training.losses import sami_loss

        loss = sami_loss(scores, variant=self.variant)
        return loss if self.options.weight == 1.0 else self.options.weight * loss


class SamiLoss(_SamiLossComponent):
    """Two-sided SAMI InfoNCE loss (L_row + L_col)/2, the paper's objective (spec §1.3)."""

    name = "sami"
    variant = "both"


class SamiResponsesLoss(_SamiLossComponent):
    """Response-side SAMI loss L_row: a softmax over responses for each constitution (spec §1.3)."""

    name = "sami-responses"
    variant = "responses"


class SamiConstitutionsLoss(_SamiLossComponent):
    """Constitution-side SAMI loss L_col: a softmax over constitutions for each response (spec §1.3)."""

    name = "sami-constitutions"
    variant = "constitutions"
