"""Package discovery for the wheel (all other metadata lives in pyproject.toml).

``find_packages`` lists every ``sami_toolkit.*`` subpackage on disk, so adding one can never leave it out of the
wheel; ``principles/`` (a top-level folder of the repository) ships as ``sami_toolkit.principle_sets``.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["sami_toolkit", "sami_toolkit.*"]), "sami_toolkit.principle_sets"])
