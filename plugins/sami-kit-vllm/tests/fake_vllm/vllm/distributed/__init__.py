"""Fake ``vllm.distributed``: records the teardown call the adapter makes between engines."""

from __future__ import annotations


def cleanup_dist_env_and_memory(shutdown_ray: bool = False) -> None:
    from vllm import CALLS

    CALLS.append(("cleanup",))
