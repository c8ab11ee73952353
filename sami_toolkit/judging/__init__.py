"""Pairwise judging, the part judge plugins build on (spec §8.3): verdict parsing, judge prompts, comparisons.

A judge plugin imports from here (a documented module, docs/plugins.md) rather than from the submodules, so the
package can be reorganised without breaking plugins.  Names are loaded on first access: importing
``sami_toolkit.judging`` (or ``sami_toolkit.judging.cache``) costs only the standard library.
"""

from __future__ import annotations

from typing import Any

#: public name -> defining module
_LAZY: dict[str, str] = {
    "PARSER_VERSION": "sami_toolkit.judging.pairwise",
    "ComparisonPair": "sami_toolkit.judging.pairwise",
    "PairOutcome": "sami_toolkit.judging.pairwise",
    "parse_final_answer": "sami_toolkit.judging.pairwise",
    "parse_paper_verdict": "sami_toolkit.judging.pairwise",
    "judge_templates": "sami_toolkit.judging.pairwise",
    "check_template": "sami_toolkit.judging.pairwise",
    "render_template": "sami_toolkit.judging.pairwise",
    "render_judge_prompt": "sami_toolkit.judging.pairwise",
    "resolve_templates": "sami_toolkit.judging.pairwise",
    "judge_pairs": "sami_toolkit.judging.pairwise",
    "count_outcomes": "sami_toolkit.judging.pairwise",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sami_toolkit.judging' has no attribute {name!r}")
