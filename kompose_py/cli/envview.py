"""``env:show`` and ``env:check``: what each stack's environment is, where every value comes
from, and which stack .env values a higher layer replaces (key names only, never values)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kompose_py.backends.choose import backend_for
from kompose_py.cli.output import Painter, plural, relative
from kompose_py.cli.report import write_report
from kompose_py.envfiles import STACK_ENV, StackEnv
from kompose_py.errors import ConfigError, KomposeError
from kompose_py.masking import is_secret_key, mask, secret_values

if TYPE_CHECKING:
    from kompose_py.commands import ReportRequest


def shown_value(key: str, value: str, secrets: Sequence[str]) -> str:
    """A value as kompose may print it: a secret key's value is ``***``, and any secret
    inside another value (a URL with a password) is masked too."""
    return "***" if value and is_secret_key(key) else mask(value, secrets)


def shadow_text(key: str, layer: str) -> str:
    return f"{key} (stack .env value replaced by {layer})"


def _variables(env: StackEnv) -> list[dict[str, Any]]:
    secrets = secret_values(env.values)
    return [{"key": key, "value": shown_value(key, value, secrets),
             "source": env.sources.get(key, STACK_ENV),
             "replaces_stack_value": key in env.shadowed}
            for key, value in sorted(env.values.items())]


def show(request: ReportRequest) -> int:
    envs, root, selected, out = request.envs(), request.root, request.selected, request.out
    if request.as_json:
        write_report(out, request.command, {"stacks": [
            {"stack": s.name, "env_files": [str(f) for f in envs[s.name].files],
             "compose_files": [str(f) for f in backend_for(envs[s.name].values).files(
                 s, envs[s.name].values)],
             "variables": _variables(envs[s.name])} for s in selected]})
        return 0
    paint = Painter(request.color)
    for stack in selected:
        env = envs[stack.name]
        rows = _variables(env)
        files = ", ".join(relative(f, root) for f in env.files) or "none"
        out.write(paint(f"{stack.name}: {plural(len(rows), 'variable')} (env files: {files})",
                        "bold") + "\n")
        width = max((len(r["key"]) for r in rows), default=0)
        for row in rows:
            value = row["value"].replace("\n", "\\n")
            if len(value) > 60:
                value = value[:57] + "..."
            note = paint("  (replaces the stack .env's value)", "yellow") \
                if row["replaces_stack_value"] else ""
            out.write(f"  {row['key'].ljust(width)}  {row['source']:<11}  {value}{note}\n")
    return 0


def check(request: ReportRequest) -> int:
    """Errors: a .env that cannot be read or parsed, a compose file that COMPOSE_FILE names
    and that is not there. Warnings: stack .env values a higher layer replaces; stacks that
    end up with the same compose project name. Exit 1 on errors only."""
    root, selected, builder, out = request.root, request.selected, request.builder, request.out
    paint = Painter(request.color)
    found: dict[str, tuple[list[str], list[str]]] = {}
    projects: dict[str, list[str]] = {}
    for stack in selected:
        errors: list[str] = []
        warnings: list[str] = []
        try:
            env = builder.for_stack(stack.env_file)
        except ConfigError as exc:
            errors.append(exc.message)
        else:
            for key, layer in sorted(env.shadowed.items()):
                warnings.append(shadow_text(key, layer))
            chosen = env.values.get("COMPOSE_FILE")
            separator = env.values.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
            if chosen is not None and "" in chosen.split(separator):
                errors.append(f"COMPOSE_FILE has an empty entry ({env.sources['COMPOSE_FILE']}):"
                              " docker compose fails with it")
            try:
                backend = backend_for(env.values)
            except KomposeError as exc:
                errors.append(exc.message)
                found[stack.name] = (errors, warnings)
                continue
            files = backend.files(stack, env.values)
            for path in files:
                if not path.is_file():
                    errors.append(f"compose file {relative(path, root)} (from COMPOSE_FILE) "
                                  "does not exist")
            # Compose's project folder is the first file's folder: its .env is read too.
            project_dir = files[0].parent if files else stack.path
            if project_dir != stack.path and (project_dir / ".env").is_file():
                warnings.append(f"Compose also reads {relative(project_dir / '.env', root)} "
                                "(the first compose file's folder); hooks, env:show and "
                                "database commands do not")
            projects.setdefault(backend.project(stack, env.values), []).append(stack.name)
            refused, dropped = backend.findings(stack, env.values, request.runner)
            errors += refused
            warnings += dropped
        found[stack.name] = (errors, warnings)
    for project, names in projects.items():
        if len(names) > 1:
            for name in names:
                others = ", ".join(n for n in names if n != name)
                found[name][1].append(f"compose project name {project!r} is also {others}'s: "
                                      "compose treats them as one project")
    error_count = sum(len(e) for e, _ in found.values())
    if request.as_json:
        write_report(out, request.command, {"stacks": [
            {"stack": name, "errors": e, "warnings": w} for name, (e, w) in found.items()]})
        return 1 if error_count else 0
    for name, (errors, warnings) in found.items():
        mark = paint("✗", "red") if errors else paint("!", "yellow") if warnings \
            else paint("✓", "green")
        out.write(f"{mark} {name}\n")
        for text in errors:
            out.write(f"  {paint('error', 'red')}: {text}\n")
        for text in warnings:
            out.write(f"  {paint('warning', 'yellow')}: {text}\n")
    warning_count = sum(len(w) for _, w in found.values())
    out.write(f"{plural(len(found), 'stack')} checked: {plural(error_count, 'error')}, "
              f"{plural(warning_count, 'warning')}\n")
    return 1 if error_count else 0
