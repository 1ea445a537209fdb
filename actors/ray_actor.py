"""One way to turn an actor body into a Ray actor class, for every riskd actor.

Ray is imported lazily: the actor bodies (and their tests) do not need it.
"""

from __future__ import annotations

from typing import Any


def actor_class(body: type, max_restarts: int = 3, num_cpus: float = 0.0) -> Any:
    """``ray.remote(body)`` with the restart policy from config.

    ``num_cpus`` 0: CPU placement is by affinity from config (``*_cpus``), not by
    Ray's CPU accounting, which would refuse to place more actors than cores.
    """
    import ray

    return ray.remote(max_restarts=max_restarts, max_task_retries=1, num_cpus=num_cpus)(body)
