"""Example sami-kit plugin: registers the ``length`` judge.

This module is imported whenever sami-kit loads plugins (even for ``sami-kit --help``), so it imports only
``sami_toolkit.hookimpl``; the component module is imported inside the hook.
"""

from sami_toolkit import hookimpl


@hookimpl
def register_judges(register):
    from .judge import LengthJudge

    register(LengthJudge, aliases=("shorter",))
