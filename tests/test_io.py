"""core/io.py: the one I/O layer's readers keep what its writers wrote, and name the file on bad input."""

from __future__ import annotations

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import atomic_write_jsonl, read_json, read_jsonl, read_jsonl_objects, read_text


def test_jsonl_round_trip_keeps_line_separators_inside_strings(tmp_path):
    rows = [{"text": "a\u2028b\u2029c\x85d"}, {"text": "plain"}]
    path = atomic_write_jsonl(tmp_path / "rows.jsonl", rows)
    assert read_jsonl(path) == rows


def test_bad_bytes_name_the_file_and_offset(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "1"}\n{"id": "\xff"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl: not UTF-8 text \(byte 0xff at offset 20\)"):
        read_jsonl(path)
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_text(path)


def test_bad_json_names_the_line_and_non_objects_are_refused(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2,\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rows.jsonl:3: invalid JSON"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rows.jsonl:2: expected a JSON object \(responses\)"):
        read_jsonl_objects(path, "responses")


def test_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match="is a directory"):
        read_text(tmp_path)
    assert read_json(tmp_path / "nope.json", default={}) == {}
