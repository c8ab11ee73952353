"""A deterministic pairwise judge: the response whose length is closer to the preferred direction wins."""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import Field

from sami_toolkit import ComponentOptions, Judge, JudgeItem, Judgment


class LengthJudge(Judge):
    """Prefers the shorter response (or the longer one); equal lengths are a tie."""

    name = "length"

    class Options(ComponentOptions):
        prefer: Literal["shorter", "longer"] = Field("shorter", description="Which response wins.")
        unit: Literal["chars", "words"] = Field("words", description="How length is measured.")

    def _length(self, text: str) -> int:
        return len(text.split()) if self.options.unit == "words" else len(text)

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        results = []
        for item in items:
            a, b = self._length(item.response_a), self._length(item.response_b)
            if a == b:
                verdict = "tie"
            elif (a < b) == (self.options.prefer == "shorter"):
                verdict = "A"
            else:
                verdict = "B"
            results.append(Judgment(id=item.id, verdict=verdict, raw=f"len A={a}, len B={b}\nFinal Response: {verdict}"))
            if progress is not None:
                progress(1)
        return results
