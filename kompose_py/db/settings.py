"""A database stack's connection settings, from its merged environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kompose_py.envfiles import StackEnv
from kompose_py.errors import StepError
from kompose_py.results import StackResult
from kompose_py.stacks import Stack

ACCESS_MODES = ("auto", "host", "container")


@dataclass(frozen=True)
class DbSettings:
    name: str
    host: str
    port: str
    user: str
    password: str | None = field(repr=False)
    maintenance_db: str
    access: str = "auto"  # DB_ACCESS
    container: str = ""  # DB_CONTAINER

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} as {self.user or '(default user)'}"


def is_database_stack(env: StackEnv) -> bool:
    """Only the stack's own .env or -e make a database stack (a DB_NAME in the root .env is a
    shared default, not a database of every stack)."""
    return "DB_NAME" in env.own_keys and bool(env.values.get("DB_NAME"))


def settings_from(values: Mapping[str, str]) -> DbSettings:
    """Connection settings from a stack's environment as it stands (after its pre hooks:
    a DB_PASSWORD a pre hook wrote to $KOMPOSE_ENV_FILE counts)."""
    v = values
    access = (v.get("DB_ACCESS") or "auto").strip().lower()
    if access not in ACCESS_MODES:
        raise StepError(f"DB_ACCESS={v.get('DB_ACCESS')!r}: not one of {', '.join(ACCESS_MODES)}")
    return DbSettings(v["DB_NAME"], v.get("DB_HOST") or "localhost", v.get("DB_PORT") or "5432",
                      v.get("DB_USER", ""), v.get("DB_PASSWORD"),
                      v.get("DB_ADMIN_DATABASE") or "postgres", access,
                      (v.get("DB_CONTAINER") or "").strip())


def settings_for(env: StackEnv) -> DbSettings | None:
    if not is_database_stack(env):
        return None
    return settings_from(env.values)



def skipped(stack: Stack) -> StackResult:
    return StackResult(stack.name, "skipped", message="no DB_NAME in its .env")
