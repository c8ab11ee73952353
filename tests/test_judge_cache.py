"""The SQLite judgment cache: content-hash keys, failures never stored, safe reuse across threads and processes."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from sami_toolkit.core.records import JudgeItem
from sami_toolkit.judging.cache import JudgmentCache, judgment_key, open_cache

ITEM = JudgeItem(id="q1#A", query="POST: my cat", constitution="1. Be concise.", response_a="short",
                 response_b="long long", task="tldr")
BASE = dict(model="gpt-4-0613", system_template="sys", user_template="user {response_a} {response_b}",
            parser_version="1", decoding={"temperature": 0.0, "top_p": 0.9, "max_tokens": 200})


def test_key_changes_with_every_keyed_field() -> None:
    base = judgment_key(**BASE, item=ITEM)
    assert base == judgment_key(**BASE, item=ITEM)
    assert len(base) == 64
    variants = [
        judgment_key(**{**BASE, "model": "gpt-4o"}, item=ITEM),
        judgment_key(**{**BASE, "system_template": "sys2"}, item=ITEM),
        judgment_key(**{**BASE, "user_template": "other {response_a} {response_b}"}, item=ITEM),
        judgment_key(**{**BASE, "parser_version": "2"}, item=ITEM),
        judgment_key(**{**BASE, "decoding": {**BASE["decoding"], "temperature": 0.7}}, item=ITEM),
        judgment_key(**{**BASE, "decoding": {**BASE["decoding"], "max_tokens": 100}}, item=ITEM),
        judgment_key(**BASE, item=replace(ITEM, query="POST: my dog")),
        judgment_key(**BASE, item=replace(ITEM, constitution="1. Be thorough.")),
        judgment_key(**BASE, item=replace(ITEM, response_a="other")),
        judgment_key(**BASE, item=replace(ITEM, response_b="other")),
        judgment_key(**BASE, item=replace(ITEM, response_a=ITEM.response_b, response_b=ITEM.response_a)),  # order
        judgment_key(**BASE, item=replace(ITEM, task="hh-rlhf")),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)
    # the item id is not content: the same texts under another id reuse the verdict
    assert judgment_key(**BASE, item=replace(ITEM, id="other")) == base
    # decoding order does not matter
    assert judgment_key(**{**BASE, "decoding": dict(reversed(list(BASE["decoding"].items())))}, item=ITEM) == base


def test_put_get_roundtrip_and_failures_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "judgments.sqlite"
    cache = JudgmentCache(path)
    assert cache.get("k") is None
    cache.put("k", verdict="B", raw="Comparison: x\nFinal Response: B", cost=0.0123, model="m")
    for bad in ("failed", "", None, "C"):
        with pytest.raises(ValueError):
            cache.put("k2", verdict=bad, raw="", cost=0.0)  # type: ignore[arg-type]
    assert len(cache) == 1
    cache.close()
    reopened = JudgmentCache(path)
    hit = reopened.get("k")
    assert hit is not None and hit.verdict == "B" and hit.cost == pytest.approx(0.0123) and hit.model == "m"
    assert reopened.get("k2") is None
    reopened.close()


def test_concurrent_writers_from_threads(tmp_path: Path) -> None:
    cache = JudgmentCache(tmp_path / "j.sqlite")

    def work(t: int) -> None:
        for i in range(50):
            cache.put(f"{t}-{i}", verdict="A" if i % 2 else "tie", raw="r", cost=0.0)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(cache) == 200
    assert cache.get("3-49").verdict == "A" and cache.get("0-0").verdict == "tie"  # type: ignore[union-attr]
    cache.close()


def test_open_cache_default_and_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMI_KIT_CACHE", str(tmp_path / "cache"))
    default = open_cache(None)
    assert default is not None and default.path == tmp_path / "cache" / "judgments.sqlite"
    for off in ("none", "None", ""):
        assert open_cache(off) is None
    explicit = open_cache(str(tmp_path / "x.sqlite"))
    assert explicit is not None and explicit.path == tmp_path / "x.sqlite"


def test_an_unparsed_answer_is_stored_with_its_text_and_never_without_it(tmp_path: Path) -> None:
    """The judge's answer that the strict parse cannot read ("Final Response: A and B") is kept as ``unparsed``
    with its raw text, so ``parse: paper`` can re-read it without a new call; an empty one is refused."""
    from sami_toolkit.judging.cache import UNPARSED
    from sami_toolkit.judging.pairwise import parse_final_answer, parse_paper_verdict

    cache = JudgmentCache(tmp_path / "j.sqlite")
    answer = "Comparison: both follow it.\nFinal Response: A and B"
    cache.put("k", verdict=UNPARSED, raw=answer, cost=0.002, model="m")
    for empty in ("", "   "):
        with pytest.raises(ValueError, match="without its raw text"):
            cache.put("k2", verdict=UNPARSED, raw=empty)
    hit = cache.get("k")
    assert hit is not None and hit.verdict == UNPARSED and hit.raw == answer and cache.get("k2") is None
    assert parse_final_answer(hit.raw) is None and parse_paper_verdict(hit.raw) == "tie"
    cache.put("k", verdict="A", raw="Final Response: A")  # a later real verdict replaces it
    assert cache.get("k").verdict == "A" and len(cache) == 1
    cache.close()
