"""Built-in plugin: the evaluators ``mi``, ``mi-heldout``, ``mi-sampled`` (Exp. 3), ``mi-instruct`` (spec §1.6) and
``win-rate`` (spec §8).

An ordinary hookimpl module: the component classes live in :mod:`sami_toolkit.evaluation.mi` and
:mod:`sami_toolkit.evaluation.win_rate` and are imported inside the hook, so loading plugins stays cheap.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_evaluators(register: Any) -> None:
    from sami_toolkit.evaluation.mi import HeldOutMIEvaluator, InstructMIEvaluator, MIEvaluator, SampledMIEvaluator
    from sami_toolkit.evaluation.win_rate import WinRateEvaluator

    register(MIEvaluator)
    register(HeldOutMIEvaluator, aliases=("mi_heldout",))
    register(SampledMIEvaluator, aliases=("mi_sampled",))
    register(InstructMIEvaluator, aliases=("mi_instruct",))
    register(WinRateEvaluator, aliases=("win_rate", "winrate"))
