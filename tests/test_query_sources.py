"""Query sources on local files with the hub schemas (the parsing code paths are the real ones)."""

from __future__ import annotations

import json

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.text.query_sources import first_human_turn
from sami_toolkit import get_component


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_first_human_turn():
    dialogue = "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour. \n\nHuman: And then?\n\nAssistant: Bake."
    assert first_human_turn(dialogue) == "How do I bake bread?"
    assert first_human_turn("no turns") == ""


def test_hh_rlhf_local_copy(tmp_path):
    rows = [{"chosen": f"\n\nHuman: question {i}?\n\nAssistant: answer {i}", "rejected": "x"} for i in range(6)]
    path = _write_jsonl(tmp_path / "hh.jsonl", rows)
    src = get_component("query-sources", "hh-rlhf", {"data_files": str(path), "start": 1, "end": 5, "limit": 3})
    queries = src.load()
    assert [q.text for q in queries] == ["question 1?", "question 2?", "question 3?"]
    assert queries[0].id == "helpful-base-train-1"


def test_hh_rlhf_hub_call(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.Dataset.from_list([{"chosen": "\n\nHuman: hi there\n\nAssistant: hello"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    queries = get_component("query-sources", "hh-rlhf", {"subset": "harmless-base", "split": "test"}).load()
    assert calls == [("Anthropic/hh-rlhf", None, {"data_dir": "harmless-base", "split": "test"})]
    assert [q.text for q in queries] == ["hi there"]


def test_tldr_dedups_by_info_id_keeping_order(tmp_path):
    rows = [{"info": {"id": "b", "post": "post B", "title": "t"}, "summaries": [], "choice": 0},
            {"info": {"id": "a", "post": "post A", "title": "t"}, "summaries": [], "choice": 1},
            {"info": {"id": "b", "post": "post B", "title": "t"}, "summaries": [], "choice": 1},
            {"info": {"id": "c", "post": "post C", "title": "t"}, "summaries": [], "choice": 0}]
    path = _write_jsonl(tmp_path / "tldr.jsonl", rows)
    queries = get_component("query-sources", "tldr", {"data_files": str(path)}).load()
    assert [(q.id, q.text) for q in queries] == [("b", "post B"), ("a", "post A"), ("c", "post C")]
    later = get_component("query-sources", "tldr", {"data_files": str(path), "start": 1}).load()
    assert [q.id for q in later] == ["a", "c"]  # start/end index the deduplicated posts


def test_tldr_hub_call(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("split")))
        return datasets.Dataset.from_list([{"info": {"id": "x", "post": "p"}}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    get_component("query-sources", "tldr", {"split": "validation"}).load()
    assert calls == [("openai/summarize_from_feedback", "comparisons", "validation")]


def test_hub_failure_is_infrastructure_error(monkeypatch):
    import datasets

    from sami_toolkit.core.errors import InfrastructureError

    def broken(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(InfrastructureError, match="openai/summarize_from_feedback"):
        get_component("query-sources", "tldr").load()


def test_jsonl_and_csv(tmp_path):
    path = _write_jsonl(tmp_path / "q.jsonl", [{"uid": "u1", "body": "first"}, {"uid": "u2", "body": "second"}])
    queries = get_component("query-sources", "jsonl", {"path": str(path), "text_field": "body",
                                                       "id_field": "uid"}).load()
    assert [(q.id, q.text) for q in queries] == [("u1", "first"), ("u2", "second")]
    csv_path = tmp_path / "q.csv"
    csv_path.write_text("post,extra\nhello,1\nworld,2\n", encoding="utf-8")
    rows = get_component("query-sources", "csv", {"path": str(csv_path), "text_field": "post"}).load()
    assert [(q.id, q.text, q.meta) for q in rows] == [("0", "hello", {"extra": "1"}), ("1", "world", {"extra": "2"})]


def test_missing_field_names_file_field_and_fields(tmp_path):
    path = _write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "body": "x"}])
    with pytest.raises(ConfigError) as err:
        get_component("query-sources", "jsonl", {"path": str(path)}).load()
    message = str(err.value)
    assert "q.jsonl" in message and "'text'" in message and "body, id" in message
    csv_path = tmp_path / "q.csv"
    csv_path.write_text("post\nhello\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no field 'summary'.*post"):
        get_component("query-sources", "csv", {"path": str(csv_path), "text_field": "summary"}).load()
    hh = _write_jsonl(tmp_path / "hh.jsonl", [{"dialogue": "x"}])
    with pytest.raises(ConfigError, match="no field 'chosen'.*dialogue"):
        get_component("query-sources", "hh-rlhf", {"data_files": str(hh)}).load()


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        get_component("query-sources", "jsonl", {"path": str(tmp_path / "nope.jsonl")}).load()


def test_demo_posts_ship_with_the_package():
    queries = get_component("query-sources", "jsonl", {"path": "package:demo-posts.jsonl"}).load()
    assert len(queries) >= 64
    lengths = [len(q.text.split()) for q in queries]
    assert min(lengths) >= 50 and max(lengths) <= 140
    assert len({q.id for q in queries}) == len(queries)
