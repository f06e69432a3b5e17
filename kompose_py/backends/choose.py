"""Which backend runs a stack: the table of backends and :func:`backend_for`, from the stack's
merged environment (``KOMPOSE_ORCHESTRATOR`` in a stack .env, the root .env or ``-e``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kompose_py.errors import ConfigError

if TYPE_CHECKING:  # the protocol is for the type checker: no import on the start-up path
    from kompose_py.backends.base import Backend

ORCHESTRATOR_KEY = "KOMPOSE_ORCHESTRATOR"
# name -> "module:object", imported when a stack uses it.
BACKENDS = {"compose": "kompose_py.backends.compose:COMPOSE",
            "swarm": "kompose_py.backends.swarm:SWARM"}


def orchestrator_name(env: Mapping[str, str]) -> str:
    """The orchestrator the environment names, as :func:`backend_for` reads it (not checked:
    a report names what was asked for without importing the backend)."""
    return (env.get(ORCHESTRATOR_KEY) or "compose").strip().lower()


def backend_for(env: Mapping[str, str]) -> Backend:
    """The stack's backend (default: Compose); a name kompose does not know is a
    configuration error."""
    chosen = orchestrator_name(env)
    target = BACKENDS.get(chosen)
    if target is None:
        raise ConfigError(f"{ORCHESTRATOR_KEY}={env.get(ORCHESTRATOR_KEY)!r}: not one of "
                          f"{', '.join(BACKENDS)}")
    import importlib

    module, _, name = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module), name)
    return backend
