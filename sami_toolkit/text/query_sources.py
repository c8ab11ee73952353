"""Query sources: where the prompts a run samples on come from (spec §2.4, §8.1).

* ``hh-rlhf`` — ``Anthropic/hh-rlhf`` (``helpful-base`` or ``harmless-base``); the query is the first human turn of
  ``chosen`` (spec §2.4); the task template adds the ``"Human: "`` prefix.
* ``tldr`` — ``openai/summarize_from_feedback`` config ``comparisons``; rows are deduplicated by ``info['id']``
  keeping first-occurrence order and the query is ``info['post']`` (spec §2.4, §8.1); the template adds ``"POST: "``.
* ``jsonl`` / ``csv`` — local files with a text field and an optional id field.
* ``mix`` — several of these as one pool, each query labelled with its subset (HH's combined pool, spec §2.4).

The hub sources accept ``data_files`` (a local JSON/JSONL/parquet file with the hub schema) so they run offline on
a copy, and every source takes ``start`` / ``end`` / ``limit`` to cut a range in the source's own order (the
paper's configs use index ranges, spec §2.5–§2.6).  ``datasets`` is imported inside :meth:`load`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, QuerySource
from sami_toolkit.core.records import Query
from sami_toolkit.core.errors import ConfigError, InfrastructureError


class RangeOptions(ComponentOptions):
    """Options every source shares: which slice of the source's rows to use."""

    start: int = Field(0, ge=0, description="Index of the first query to use (after deduplication).")
    end: int | None = Field(None, ge=0, description="Index one past the last query to use (null: to the end).")
    limit: int | None = Field(None, ge=1, description="At most this many queries (applied after start/end).")


def _slice(queries: list[Query], options: RangeOptions) -> list[Query]:
    out = queries[options.start:options.end]
    return out[: options.limit] if options.limit is not None else out


def _missing_field(where: str, field: str, what: str, available: Iterable[str]) -> ConfigError:
    names = ", ".join(sorted(available)) or "none"
    return ConfigError(f"{where}: no field '{field}' ({what}); fields present: {names}",
                       hint=f"set the source's `{what}` option to one of them")


def _load_hub(path: str, *, name: str | None = None, data_dir: str | None = None, split: str,
              data_files: str | None = None) -> Any:
    """``datasets.load_dataset`` on the hub id, or on a local file with the same schema (``data_files``)."""
    import datasets

    try:
        if data_files:
            local = Path(data_files)
            if not local.exists():
                raise ConfigError(f"data_files {local} does not exist")
            kind = {".csv": "csv", ".parquet": "parquet"}.get(local.suffix, "json")
            return datasets.load_dataset(kind, data_files=str(local), split="train")
        return datasets.load_dataset(path, name, data_dir=data_dir, split=split)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a dataset that cannot be fetched is an infrastructure failure
        raise InfrastructureError(f"could not load dataset '{data_files or path}' (split {split}): "
                                  f"{type(exc).__name__}: {exc}",
                                  hint="hub datasets need network access or a populated HF cache; or point "
                                       "`data_files` at a local copy") from None


# ---------------------------------------------------------------------------------------------------- hh-rlhf
def first_human_turn(dialogue: str) -> str:
    """The first human turn of an HH-RLHF transcript: ``chosen.split("Human: ")[1]`` up to the first
    ``"Assistant: "``, stripped (spec §2.4)."""
    parts = dialogue.split("Human: ")
    if len(parts) < 2:
        return ""
    return parts[1].split("Assistant: ")[0].strip()


class HHRLHFSource(QuerySource):
    """Anthropic/hh-rlhf first human turns (helpful-base or harmless-base; spec §2.4, §8.1)."""

    name = "hh-rlhf"

    class Options(RangeOptions):
        subset: Literal["helpful-base", "harmless-base"] = Field(
            "helpful-base", description="data_dir of Anthropic/hh-rlhf (the paper uses each separately).")
        split: str = Field("train", description="Split: train for generation, test for evaluation (spec §8.1).")
        data_files: str | None = Field(None, description="Local JSON/JSONL/parquet file with the hub schema "
                                                         "(a `chosen` column) instead of the hub.")
        field: str = Field("chosen", description="Column holding the dialogue.")

    def load(self) -> list[Query]:
        o = self.options
        ds = _load_hub("Anthropic/hh-rlhf", data_dir=o.subset, split=o.split, data_files=o.data_files)
        where = o.data_files or f"Anthropic/hh-rlhf/{o.subset} ({o.split})"
        if o.field not in ds.column_names:
            raise _missing_field(where, o.field, "field", ds.column_names)
        queries = []
        for index, dialogue in enumerate(ds[o.field]):
            text = first_human_turn(dialogue or "")
            if text:
                queries.append(Query(id=f"{o.subset}-{o.split}-{index}", text=text,
                                     meta={"subset": o.subset, "index": index}))
        return _slice(queries, o)


# ------------------------------------------------------------------------------------------------------ tldr
class TLDRSource(QuerySource):
    """openai/summarize_from_feedback (comparisons) posts, deduplicated by info.id (spec §2.4, §8.1)."""

    name = "tldr"

    class Options(RangeOptions):
        split: str = Field("train", description="Split: train for generation, validation for evaluation "
                                                "(spec §8.1).")
        config: str = Field("comparisons", description="Dataset config name.")
        data_files: str | None = Field(None, description="Local JSON/JSONL/parquet file with the hub schema (an "
                                                         "`info` column with id and post) instead of the hub.")

    def load(self) -> list[Query]:
        o = self.options
        ds = _load_hub("openai/summarize_from_feedback", name=o.config, split=o.split, data_files=o.data_files)
        where = o.data_files or f"openai/summarize_from_feedback/{o.config} ({o.split})"
        if "info" not in ds.column_names:
            raise _missing_field(where, "info", "field", ds.column_names)
        seen: set[str] = set()
        queries = []
        for info in ds["info"]:
            if not isinstance(info, dict) or "id" not in info or "post" not in info:
                keys = sorted(info) if isinstance(info, dict) else []
                raise ConfigError(f"{where}: each row's `info` needs `id` and `post`; got keys {keys}")
            post_id = str(info["id"])
            if post_id in seen or not info["post"]:
                continue
            seen.add(post_id)
            queries.append(Query(id=post_id, text=str(info["post"]).strip(),
                                 meta={k: info[k] for k in ("title", "subreddit") if k in info}))
        return _slice(queries, o)


# ------------------------------------------------------------------------------------------------ local files
class _FileOptions(RangeOptions):
    path: str = Field(description="The file to read.")
    text_field: str = Field("text", description="Field holding the query text.")
    id_field: str | None = Field("id", description="Field holding a stable id (null or absent: the row number).")


def _rows_to_queries(rows: list[dict], options: _FileOptions, where: str) -> list[Query]:
    if not rows:
        raise ConfigError(f"{where}: no rows")
    fields = set().union(*(r.keys() for r in rows))
    if options.text_field not in fields:
        raise _missing_field(where, options.text_field, "text_field", fields)
    id_field = options.id_field if options.id_field in fields else None
    if options.id_field and id_field is None and options.id_field != "id":
        raise _missing_field(where, options.id_field, "id_field", fields)
    queries = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        text = row.get(options.text_field)
        if isinstance(text, (dict, list)):  # str() of a JSON object would silently become the query
            raise ConfigError(f"{where}: row {index + 1}: '{options.text_field}' must be text, got "
                              f"{'an object' if isinstance(text, dict) else 'a list'}")
        if text is None or not str(text).strip():
            raise ConfigError(f"{where}: row {index + 1} has no '{options.text_field}'")
        qid = str(row[id_field]) if id_field is not None and row.get(id_field) is not None else str(index)
        if qid in seen:
            raise ConfigError(f"{where}: duplicate id '{qid}' in field '{id_field}' (ids must be unique)")
        seen.add(qid)
        meta = {k: v for k, v in row.items() if k not in (options.text_field, id_field)}
        queries.append(Query(id=qid, text=str(text).strip(), meta=meta))
    return _slice(queries, options)


class JsonlSource(QuerySource):
    """Queries from a local JSONL file (one object per line)."""

    name = "jsonl"

    class Options(_FileOptions):
        pass

    def load(self) -> list[Query]:
        import json

        from sami_toolkit.core.io import read_text

        path = _resolve_path(self.options.path)
        rows = []
        # split on "\n" only: str.splitlines also breaks at U+2028/U+2029, which JSON strings may hold raw
        text = read_text(path).removeprefix("\ufeff")  # bad bytes: exit 2 naming the file; a BOM is harmless
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path}:{number}: expected a JSON object per line")
            rows.append(row)
        return _rows_to_queries(rows, self.options, str(path))


class CsvSource(QuerySource):
    """Queries from a local CSV file with a header row."""

    name = "csv"

    class Options(_FileOptions):
        delimiter: str = Field(",", min_length=1, max_length=1, description="Field delimiter (one character).")

    def load(self) -> list[Query]:
        import csv
        import io

        from sami_toolkit.core.io import read_text

        path = _resolve_path(self.options.path)
        # decoded whole by core.io (bad bytes: exit 2 naming the file); StringIO keeps \r\n for csv to handle
        text = read_text(path).removeprefix("\ufeff")  # spreadsheets save CSV with a byte order mark
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=self.options.delimiter)
        rows = []
        try:
            for row in reader:
                if None in row:  # DictReader files surplus cells under the key None
                    raise ConfigError(f"{path}:{reader.line_num}: {len(reader.fieldnames or ())} columns in the "
                                      f"header but {len(reader.fieldnames or ()) + len(row[None])} in this row")
                rows.append(row)
        except csv.Error as exc:  # e.g. a NUL byte, an unterminated quote, a field over csv's size limit
            raise ConfigError(f"{path}:{reader.line_num}: invalid CSV: {exc}") from None
        return _rows_to_queries(rows, self.options, str(path))


class MixPart(ComponentOptions):
    """One source of a ``mix``: a built-in query source and the subset label its queries carry."""

    name: Literal["hh-rlhf", "tldr", "jsonl", "csv"] = Field(description="A built-in query source.")
    options: dict[str, Any] = Field(default_factory=dict, description="Its options.")
    label: str | None = Field(None, description="Subset label (query meta 'subset', matched by "
                                                "constitutions.subsets and the evaluators' query_subset); default: "
                                                "the source's own subset (hh-rlhf: helpful-base / harmless-base), "
                                                "else its name.")


class MixSource(QuerySource):
    """Several built-in sources as one pool, each query labelled with its subset (HH's combined pool, spec §2.4).

    The label (query meta ``subset``) lets per-subset constitutions (``constitutions.subsets``) and per-subset
    evaluation (``query_subset``) tell the sources apart.  ``interleave`` takes one query of each source in turn,
    so the first ``2n`` queries — and so each pool half of ``data.pool_size: 2n`` — hold ``n`` of each."""

    name = "mix"

    class Options(RangeOptions):
        sources: list[MixPart] = Field(min_length=1, description="The sources, in order.")
        interleave: bool = Field(True, description="Round-robin over the sources (true) or one after another.")

    def load(self) -> list[Query]:
        classes: dict[str, type[QuerySource]] = {"hh-rlhf": HHRLHFSource, "tldr": TLDRSource, "jsonl": JsonlSource,
                                                 "csv": CsvSource}
        parts: list[list[Query]] = []
        for i, part in enumerate(self.options.sources):
            cls = classes[part.name]
            try:
                source = cls(cls.Options.model_validate(part.options))
            except Exception as exc:  # noqa: BLE001 - a pydantic error: one line naming the part
                raise ConfigError(f"mix source {i} ({part.name}): invalid options: {exc}".splitlines()[0]) from None
            queries = []
            for q in source.load():
                label = part.label or str(q.meta.get("subset") or part.name)
                queries.append(Query(id=f"{label}:{q.id}" if part.label else q.id, text=q.text,
                                     meta={**q.meta, "subset": label}))
            parts.append(queries)
        if self.options.interleave:
            mixed = [q for group in itertools.zip_longest(*parts) for q in group if q is not None]
        else:
            mixed = [q for queries in parts for q in queries]
        ids = [q.id for q in mixed]
        if len(set(ids)) != len(ids):
            raise ConfigError("mix: two sources give queries with the same id; give the parts distinct `label`s")
        return _slice(mixed, self.options)


def _resolve_path(text: str) -> Path:
    """A file path; ``package:NAME`` reads a file shipped in ``sami_toolkit/data`` (the demo posts)."""
    if text.startswith("package:"):
        from importlib.resources import files

        resource = files("sami_toolkit") / "data" / text.split(":", 1)[1]
        path = Path(str(resource))
    else:
        path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"query file {path} does not exist")
    return path
