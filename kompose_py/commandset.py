"""The command names kompose knows, in one light module: dispatch, ``hooks:check`` and shell
completion read them from here (completion must not import the command layer)."""

from __future__ import annotations

# kompose's own commands (they contain a colon), each with what it does.
KOMPOSE_COMMANDS: dict[str, str] = {
    "db:export": "dump each database stack's database",
    "db:import": "load a dump into a stack's database, safely",
    "db:cleanup": "keep the newest dumps only",
    "db:list": "list each stack's dumps",
    "db:shell": "an interactive psql on one stack's database, wherever it lives",
    "db:recover": "put right an import that was interrupted half-way",
    "hooks:list": "list the hooks that apply to each stack",
    "hooks:check": "check hooks files: syntax, misspelt names, permissions",
    "env:show": "show each stack's environment and where each value comes from",
    "env:check": "check each stack's environment",
}

# Docker Compose v2 subcommands.
COMPOSE_COMMANDS = (
    "attach", "build", "commit", "config", "cp", "create", "down", "events", "exec", "export",
    "images", "kill", "logs", "ls", "pause", "port", "ps", "publish", "pull", "push", "restart",
    "rm", "run", "scale", "start", "stats", "stop", "top", "unpause", "up", "version", "volumes",
    "wait", "watch",
)
