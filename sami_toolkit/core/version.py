"""The sami-kit version, in the lowest layer so that every layer can record it without importing the facade.

The root package ``sami_toolkit`` re-exports upper layers, so a layer module importing it would import upwards
(and could import itself back). ``pyproject.toml`` carries the same number for packaging.
"""

from __future__ import annotations

__version__ = "0.1.0"
