"""Principle sets shipped with sami-kit (installed as the package ``sami_toolkit.principle_sets``)."""
