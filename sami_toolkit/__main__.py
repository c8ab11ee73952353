"""``python -m sami_toolkit`` is the same as ``sami-kit``."""

from sami_toolkit.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
