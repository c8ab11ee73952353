"""Run-directory I/O: atomic writes, torn JSONL lines, manifest stage bookkeeping and hashes."""

from __future__ import annotations

import json
import os

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import JsonlAppender, atomic_write_json, atomic_write_yaml, hash_path, repair_jsonl
from sami_toolkit.core.io import read_jsonl_tolerant as read_jsonl
from sami_toolkit.core.records import JudgmentRow, PairRow, SampleRow
from sami_toolkit.core.run_dir import RunDir, hash_layout
from sami_toolkit.plugins.loading import PluginSystem


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "a.yaml"
    atomic_write_yaml(target, {"keep": True})
    with pytest.raises(Exception):
        atomic_write_yaml(target, {"bad": object()})  # not serialisable
    assert "keep: true" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml"]


def test_torn_last_line_is_detected_and_dropped(tmp_path):
    path = tmp_path / "s.jsonl"
    with JsonlAppender(path) as out:
        out.extend([{"i": 0}, {"i": 1}])
    with open(path, "ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"i": 2, "text": "hal')
    records, torn = read_jsonl(path)
    assert [r["i"] for r in records] == [0, 1] and torn > 0
    assert [r["i"] for r in repair_jsonl(path)] == [0, 1]
    assert path.read_bytes().endswith(b"}\n")
    with JsonlAppender(path) as out:  # appending after the repair gives a clean file
        out.append({"i": 2})
    assert [r["i"] for r in read_jsonl(path)[0]] == [0, 1, 2]
    assert read_jsonl(path)[1] == 0


def test_corruption_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(ConfigError, match=r"s\.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_hash_path_file_and_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("1")
    (tmp_path / "d" / "b").write_text("2")
    first = hash_path(tmp_path / "d")
    (tmp_path / "d" / "b").write_text("3")
    assert hash_path(tmp_path / "d") != first
    assert hash_path(tmp_path / "d" / "a") == hash_path(tmp_path / "d" / "a")


def test_run_dir_manifest_and_stages(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create(config={"model": "x", "judge": {"api_key": "sk-secret"}}, config_hash="abc", seed=7,
               principles={"name": "p"}, plugins=PluginSystem().records)
    assert "sk-secret" not in run.config_path.read_text()
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["config_hash"] == "abc" and manifest["seeds"]["run"] == 7
    assert manifest["versions"]["python"] and "torch" in manifest["versions"]
    assert any(p["name"] == "sami_toolkit.builtin.samplers" for p in manifest["plugins"])
    assert not run.stage_done(1, "sample")
    out = run.samples_path(1)
    out.parent.mkdir(parents=True)
    out.write_text('{"a": 1}\n')
    run.mark_done(1, "sample", out, n=1)
    again = RunDir(tmp_path / "run")  # re-read from disk
    assert again.stage_done(1, "sample")
    entry = again.manifest["iterations"]["1"]["stages"]["sample"]
    assert entry["hash"] == hash_path(out) and entry["output"] == "iterations/1/samples.jsonl"


def test_not_a_run_dir(tmp_path):
    with pytest.raises(ConfigError, match="not a sami-kit run directory"):
        RunDir(tmp_path).manifest


def _safetensors(path, header: dict, payload: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + payload)


def test_checkpoint_hash_reads_headers_not_weights(tmp_path):
    """A finished checkpoint is hashed from names, sizes, safetensors headers and small files (not its weights)."""
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"hidden_size": 32}')
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    _safetensors(ckpt / "model.safetensors", header, b"\0" * 8)
    first = hash_layout(ckpt)
    assert first.startswith("sha256:") and hash_layout(ckpt) == first
    _safetensors(ckpt / "model.safetensors", header, b"\1" * 8)  # same shapes, other weights: not re-read
    assert hash_layout(ckpt) == first
    _safetensors(ckpt / "model.safetensors", {"w": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]}},
                 b"\0" * 8)
    assert hash_layout(ckpt) != first  # another tensor layout
    (ckpt / "config.json").write_text('{"hidden_size": 64}')
    changed = hash_layout(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\0" * 4)  # truncated: too short for a header
    assert hash_layout(ckpt) not in (first, changed)

    run = RunDir(tmp_path / "run")
    run.create(config={}, config_hash="abc", seed=1, principles={})
    run.checkpoint_dir(1).parent.mkdir(parents=True)
    ckpt.rename(run.checkpoint_dir(1))
    run.mark_done(1, "train", run.checkpoint_dir(1))
    entry = RunDir(run.root).manifest["iterations"]["1"]["stages"]["train"]
    assert entry["hash"] == hash_layout(run.checkpoint_dir(1)) and "safetensors headers" in entry["hash_scope"]


def test_row_schemas_round_trip_and_name_the_line():
    sample = SampleRow(query_id="q", index=1, label="concise", constitution="1. Be concise.", raw="<r>",
                       iteration=2, pid=7, time=1.5, items=[["concise", True]])
    assert SampleRow.from_dict(sample.to_dict()) == sample and sample.key == ("q", 1)
    old = {k: v for k, v in sample.to_dict().items() if k != "items"}  # written before `items` existed
    assert SampleRow.from_dict(old).items is None and "items" not in SampleRow.from_dict(old).to_dict()
    with pytest.raises(ConfigError, match=r"samples.jsonl:4: missing field\(s\) raw"):
        SampleRow.from_dict({k: v for k, v in old.items() if k != "raw"}, "samples.jsonl:4")
    with pytest.raises(ConfigError, match="field 'index' must be a int, got bool"):
        SampleRow.from_dict({**old, "index": True}, "s:1")

    pair = PairRow(query_id="q", query="x", constitutions=["a", "b"], labels=["a", "b"], train_prompts=["p", "q"],
                   responses=["r", "s"], iteration=1)
    assert PairRow.from_dict(pair.to_dict()) == pair and list(pair.to_dict()) == list(PairRow.FIELDS)
    with pytest.raises(ConfigError, match=r"p:2: expected a JSON object, got list"):
        PairRow.validate([1], "p:2")

    judged = JudgmentRow.from_dict({"id": 3, "outcome": None, "candidate": "c"})
    assert judged.id == "3" and judged.failed and judged.to_dict()["failed"] is True
    assert list(judged.to_dict())[:4] == ["id", "outcome", "failed", "error"]
