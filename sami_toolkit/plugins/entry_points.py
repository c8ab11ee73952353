"""The ``sami_kit`` entry points of installed distributions, read straight from their metadata folders.

Why not ``importlib.metadata.entry_points``: importing it (and the email parser behind it) costs ~45 ms, a third of
the start-up budget of ``sami-kit --help``. Reading ``entry_points.txt`` directly is what it does underneath; the
first distribution found on ``sys.path`` wins, as with importlib.metadata.

One broken distribution must not take down every command (issue 14 §3): metadata with bytes that are not UTF-8,
or an unreadable ``entry_points.txt``, yields an entry point carrying an ``error``, which the plugin system reports
and skips exactly like a plugin that fails to import.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType

#: the entry-point group plugins declare: ``[project.entry-points.sami_kit] my_plugin = "my_module"``.
ENTRY_POINT_GROUP = "sami_kit"


@dataclass
class EntryPoint:
    """One ``[sami_kit]`` entry point of an installed distribution."""

    name: str
    value: str
    dist_name: str
    version: str | None
    #: why this distribution's plugin cannot be loaded (unreadable metadata), else None
    error: str | None = None

    def load(self) -> ModuleType:
        module_name, _, attr = self.value.partition(":")
        module = importlib.import_module(module_name.strip())
        return getattr(module, attr.strip()) if attr else module


def iter_entry_points(group: str = ENTRY_POINT_GROUP) -> list[EntryPoint]:
    """Entry points of ``group`` from the ``*.dist-info`` / ``*.egg-info`` folders on ``sys.path``."""
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if not folder.endswith((".dist-info", ".egg-info")):
                continue
            base = os.path.join(entry or ".", folder)
            ep_file = os.path.join(base, "entry_points.txt")
            if not os.path.isfile(ep_file):
                continue
            folder_text = _printable(folder)
            try:
                dist_name, version = _dist_name_version(base, folder_text)
            except (OSError, ValueError) as exc:
                dist_name, version = folder_text.rsplit(".", 1)[0].partition("-")[0], None
                broken: str | None = f"unreadable metadata in {os.path.join(entry or '.', folder_text)}: {exc}"
            else:
                broken = None
            key = dist_name.lower().replace("_", "-")
            if key in seen:
                continue
            seen.add(key)
            try:
                items = _read_group(ep_file, group) if broken is None else []
            except (OSError, ValueError) as exc:
                broken = f"unreadable {os.path.join(entry or '.', folder_text, 'entry_points.txt')}: {exc}"
            if broken is not None:
                if _mentions_group(ep_file, group):
                    found.append(EntryPoint("?", "?", dist_name, version, error=broken))
                continue
            found.extend(EntryPoint(name, value, dist_name, version) for name, value in items)
    return found


def _printable(name: str) -> str:
    """A file name as text that can always be printed (``os.listdir`` keeps undecodable bytes as surrogates)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_utf8(path: str) -> str:
    """A metadata file's text; bytes that are not UTF-8 raise ValueError saying so (UnicodeDecodeError's own
    message is a wall of positions)."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def _mentions_group(path: str, group: str) -> bool:
    """Whether an (undecodable) entry_points.txt declares ``group`` at all: only then is it our plugin to report."""
    try:
        with open(path, "rb") as handle:
            return f"[{group}]".encode() in handle.read()
    except OSError:
        return True


def _read_group(path: str, group: str) -> list[tuple[str, str]]:
    items, current = [], None
    for raw in _read_utf8(path).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group and "=" in line:
            name, value = line.split("=", 1)
            items.append((name.strip(), value.strip()))
    return items


def _dist_name_version(base: str, folder: str) -> tuple[str, str | None]:
    """Name and version from the METADATA/PKG-INFO header (falls back to the folder name)."""
    stem = folder.rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    for meta_name in ("METADATA", "PKG-INFO"):
        meta = os.path.join(base, meta_name)
        if os.path.isfile(meta):
            with open(meta, "rb") as handle:
                data = handle.read()
            # only the Name and Version headers matter: a Summary or description in another encoding is harmless
            for raw in data.split(b"\n"):
                if not raw.strip():
                    break
                if raw.startswith((b"Name:", b"Version:")):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ValueError(f"{meta_name}: the {raw.split(b':')[0].decode()} header is not UTF-8 "
                                         "text") from None
                    if line.startswith("Name:"):
                        name = line[5:].strip()
                    else:
                        version = line[8:].strip()
            break
    return name, version or None
