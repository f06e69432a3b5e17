"""What a restore must carry from the target database to its replacement, as SQL text.

A plain-format dump holds the contents of a database, not the database itself: its owner,
ACL (with who granted what), ``ALTER DATABASE … SET`` and ``ALTER ROLE … IN DATABASE … SET``
values, connection limit, comment, template and connection flags live in shared catalogs.
This module reads them from one row of :data:`FACTS_QUERY` (run on the maintenance database
by the role that will import) and decides, with PostgreSQL's own permission rules:

- :func:`create_scratch`: the CREATE DATABASE for the scratch copy, owned by the target's
  owner from the start, so that the dump loads as it would into the original (a
  publication's ``ALTER … OWNER TO`` needs the new owner to have CREATE on the database);
- :func:`blockers`: what the importing role could not put back, one item each, before
  anything is touched;
- :func:`carry_over`: the statements that give the loaded copy every database-level
  property, each run as the role PostgreSQL needs (``SET ROLE`` keeps a grantor);
- :func:`swap_script`, :func:`drop_steps`, :func:`recovery`: the atomic swap and what is
  left to put right after a crash.

Rules verified on PostgreSQL 15 and 17 (tests/test_carryover_pg.py):
- only a superuser, the role itself, or (15) a CREATEROLE role / (16+) a CREATEROLE role
  with ADMIN OPTION on it may ``ALTER ROLE r IN DATABASE d SET``; the owner of ``d`` may not;
- a parameter that is not user-settable (``log_min_duration_statement``) or a placeholder
  (``my.setting``) needs superuser or ``GRANT SET ON PARAMETER`` for the acting role;
- ``GRANT … GRANTED BY other`` is refused ("grantor must be current user"); a grant is
  recorded with its grantor only when made after ``SET ROLE grantor`` (15: membership,
  16+: membership WITH SET);
- ``CREATE DATABASE … OWNER r`` needs CREATEDB and membership (16+: WITH SET) in r;
- both ``ALTER DATABASE … RENAME`` run in one transaction, also for a non-superuser owner.

Text only: nothing here connects. Identifiers and literals are quoted here, the way
PostgreSQL's quote_ident/quote_literal do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Facts = Mapping[str, Any]

# One row for the database named by the literal; every column is plain JSON, so the same
# row comes back through psycopg and through psql's jsonb wrapping.
FACTS_QUERY = """\
SELECT d.datname AS name, pg_get_userbyid(d.datdba) AS owner,
  pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS lc_collate,
  d.datctype AS lc_ctype, to_jsonb(d) ->> 'datlocprovider' AS locale_provider,
  coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale') AS locale,
  to_jsonb(d) ->> 'daticurules' AS icu_rules,
  d.datconnlimit AS connection_limit, d.datallowconn AS allow_connections,
  d.datistemplate AS is_template, shobj_description(d.oid, 'pg_database') AS comment,
  ts.spcname AS tablespace, has_tablespace_privilege(ts.oid, 'CREATE') AS tablespace_ok,
  current_user AS me, me.rolsuper AS me_superuser, me.rolcreatedb AS me_createdb,
  me.rolcreaterole AS me_createrole,
  current_setting('server_version_num')::int AS server_version,
  d.datacl IS NULL AS default_acl,
  coalesce((SELECT jsonb_agg(jsonb_build_object(
      'position', u.n, 'grantor', pg_get_userbyid(a.grantor),
      'grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
      'privilege', a.privilege_type, 'grantable', a.is_grantable)
      ORDER BY u.n, a.privilege_type)
    FROM unnest(d.datacl) WITH ORDINALITY AS u(item, n), aclexplode(ARRAY[u.item]) a),
    '[]') AS acl,
  coalesce((SELECT jsonb_agg(jsonb_build_object(
      'role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END,
      'config', to_jsonb(s.setconfig)) ORDER BY s.setrole)
    FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '[]') AS settings,
  coalesce((SELECT jsonb_agg(jsonb_build_object(
      'name', r.rolname, 'superuser', r.rolsuper,
      -- SET ROLE r: membership on 15, membership WITH SET from 16 on (the CASE keeps 15
      -- from parsing the mode it does not know)
      'can_set', CASE WHEN current_setting('server_version_num')::int >= 160000
                      THEN pg_has_role(r.oid, 'SET') ELSE pg_has_role(r.oid, 'MEMBER') END,
      'can_admin', me.rolcreaterole AND NOT r.rolsuper AND
                   (current_setting('server_version_num')::int < 160000
                    OR pg_has_role(r.oid, 'MEMBER WITH ADMIN OPTION'))))
    FROM pg_roles r WHERE r.oid = d.datdba
      OR r.oid IN (SELECT a.grantor FROM aclexplode(d.datacl) a)
      OR r.oid IN (SELECT s.setrole FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)),
    '[]') AS roles,
  coalesce((SELECT jsonb_agg(jsonb_build_object(
      'name', p.name, 'role', r.rolname,
      'context', (SELECT g.context FROM pg_settings g WHERE lower(g.name) = lower(p.name)),
      'can_set', has_parameter_privilege(r.oid, p.name, 'SET')))
    FROM (SELECT DISTINCT split_part(c, '=', 1) AS name, s.setrole
          FROM pg_db_role_setting s, unnest(s.setconfig) c
          WHERE s.setdatabase = d.oid) p
    JOIN pg_roles r ON r.oid IN (me.oid, d.datdba, p.setrole)), '[]') AS params
FROM pg_database d
JOIN pg_tablespace ts ON ts.oid = d.dattablespace
JOIN pg_roles me ON me.rolname = current_user
WHERE d.datname = {name}"""


def facts_query(database: str) -> str:
    return FACTS_QUERY.format(name=literal(database))


# Sessions of ``database`` that the connecting role may end (a non-superuser: those of
# roles it is a member of), for the steps that need the database to itself.
TERMINATE_QUERY = """\
SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
WHERE datname = {name} AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND pg_has_role(usesysid, 'MEMBER')"""


def terminate_query(database: str) -> str:
    return TERMINATE_QUERY.format(name=literal(database))


# -- quoting ---------------------------------------------------------------------------------
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def ident(name: str) -> str:
    """Always quoted: a keyword or a mixed-case name is then never a problem."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


def grantee_sql(grantee: str | None) -> str:
    return "PUBLIC" if grantee is None else ident(grantee)


# Parameters whose list elements PostgreSQL quotes one by one when it stores them
# (GUC_LIST_QUOTE): given back as one literal they would become a single element.
_LIST_QUOTED = frozenset({"search_path", "temp_tablespaces", "session_preload_libraries",
                          "local_preload_libraries", "shared_preload_libraries"})
_LIST_ITEM = re.compile(r'\s*("(?:[^"]|"")*"|[^,]*?)\s*(?:,|$)')


def setting_sql(item: str) -> tuple[str, str, str]:
    """``name=value`` as pg_db_role_setting stores it -> (name, the name as SQL, the value
    as SQL for ``SET name TO …``)."""
    name, _, value = item.partition("=")
    name_sql = ".".join(ident(part) for part in name.split("."))
    if name.lower() not in _LIST_QUOTED:
        return name, name_sql, literal(value)
    items: list[str] = []
    for match in _LIST_ITEM.finditer(value):
        if match.end() == match.start():
            break
        element = match[1]
        if element.startswith('"') and element.endswith('"') and len(element) >= 2:
            element = element[1:-1].replace('""', '"')
        items.append(literal(element))
    return name, name_sql, ", ".join(items) if items else "''"


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One statement (or a ``SET ROLE …; …; RESET ROLE`` group) and what it does.

    A group sent as one simple query runs in one implicit transaction: when it fails, the
    SET ROLE is undone with it. psql reading it from stdin runs the parts one by one; its
    session ends on the first error (ON_ERROR_STOP), which undoes the SET ROLE as well."""

    sql: str
    what: str


@dataclass(frozen=True)
class Blocker:
    """Something of the target the importing role cannot put back."""

    role: str
    item: str
    allow: str
    # False: no import can go on without it (the scratch copy cannot be created as needed),
    # not even one that carries only what it can.
    waivable: bool = True

    @property
    def line(self) -> str:
        return f"role {self.role}: {self.item}; to allow it: {self.allow}"


def _as(role: str | None, body: str) -> str:
    return body if role is None else f"SET ROLE {ident(role)}; {body}; RESET ROLE"


# -- decisions ---------------------------------------------------------------------------------
class _Rights:
    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.me = str(facts["me"])
        self.superuser = bool(facts["me_superuser"])
        self.v16 = int(facts["server_version"]) >= 160000
        self.roles = {str(r["name"]): r for r in facts.get("roles") or []}
        self.params = {(str(p["name"]).lower(), str(p["role"])): p
                       for p in facts.get("params") or []}

    def can_set_role(self, role: str) -> bool:
        if self.superuser or role == self.me:
            return True
        return bool(self.roles.get(role, {}).get("can_set"))

    def role_superuser(self, role: str) -> bool:
        return bool(self.roles.get(role, {}).get("superuser"))

    def param_ok(self, name: str, role: str) -> bool:
        """May ``role`` (the current user after SET ROLE) store ``name`` in a setting?"""
        if (self.superuser and role == self.me) or self.role_superuser(role):
            return True
        entry = self.params.get((name.lower(), role))
        if entry is None:
            return False
        return entry.get("context") == "user" or bool(entry.get("can_set"))

    def set_role_hint(self, role: str) -> str:
        return f"GRANT {ident(role)} TO {ident(self.me)}" + (" WITH SET TRUE" if self.v16
                                                             else "")

    # Who runs each kind of statement: None = the connecting role itself.
    def owner_actor(self) -> str | None:
        owner = str(self.facts["owner"])
        return None if owner == self.me else owner

    def database_setting_actor(self, name: str) -> tuple[bool, str | None]:
        """ALTER DATABASE … SET needs ownership and the right to set the parameter: as the
        connecting role (ownership through membership), else as the owner."""
        if self.superuser:
            return True, None
        owner = str(self.facts["owner"])
        if self.can_set_role(owner) and self.param_ok(name, owner):
            return True, self.owner_actor()
        if self.param_ok(name, self.me):
            return True, None
        return False, None

    def role_setting_actor(self, role: str, name: str) -> tuple[bool, str | None]:
        """ALTER ROLE r IN DATABASE … SET: a superuser; r itself (after SET ROLE r); or a
        CREATEROLE role (16+: with ADMIN OPTION on r) - each with the right to set the
        parameter."""
        if self.superuser:
            return True, None
        if role == self.me:
            return self.param_ok(name, role), None
        if self.can_set_role(role) and self.param_ok(name, role):
            return True, role
        if self.roles.get(role, {}).get("can_admin") and self.param_ok(name, self.me):
            return True, None
        return False, None


def blockers(facts: Facts) -> list[Blocker]:
    """Everything of the target that the connecting role cannot carry over, one item each.
    Empty for a superuser. To be asked before anything is created or loaded."""
    rights = _Rights(facts)
    if rights.superuser:
        return []
    me, db, owner = rights.me, str(facts["name"]), str(facts["owner"])
    found: list[Blocker] = []
    if not facts.get("me_createdb"):
        found.append(Blocker(me, "cannot create databases (the scratch copy)",
                             f"ALTER ROLE {ident(me)} CREATEDB, or connect as a superuser",
                             waivable=False))
    if not rights.can_set_role(owner):
        found.append(Blocker(owner, f"owns database {db}, and {me} may not create a database "
                                    f"owned by it", f"connect as {owner} or a superuser, or "
                                                    f"{rights.set_role_hint(owner)}",
                             waivable=False))
    if facts.get("tablespace") not in (None, "pg_default") and not facts.get("tablespace_ok"):
        found.append(Blocker(me, f"may not create databases in tablespace "
                                 f"{facts['tablespace']}",
                             f"GRANT CREATE ON TABLESPACE {ident(str(facts['tablespace']))} "
                             f"TO {ident(me)}, or connect as a superuser", waivable=False))
    for entry in facts.get("settings") or []:
        role = entry.get("role")
        for item in entry.get("config") or []:
            name = str(item).partition("=")[0]
            if role is None:
                ok, _ = rights.database_setting_actor(name)
                if not ok:
                    found.append(Blocker(owner, f"setting {item} of database {db} needs the "
                                                f"right to set parameter {name}",
                                         f"connect as a superuser, or GRANT SET ON PARAMETER "
                                         f"{name} TO {ident(me)}"))
                continue
            ok, _ = rights.role_setting_actor(str(role), name)
            if not ok:
                found.append(Blocker(str(role), f"its setting {item} in database {db} "
                                                f"(ALTER ROLE … IN DATABASE) may not be set by "
                                                f"{me}", _role_setting_hint(rights, str(role))))
    for grant in _acl_items(facts):
        grantor = grant["grantor"]
        if grantor != owner and not rights.can_set_role(grantor):
            found.append(Blocker(grantor, f"its grant of {', '.join(grant['privileges'])} on "
                                          f"database {db} to {grant['grantee'] or 'PUBLIC'} "
                                          f"can only be made by {grantor}",
                                 f"connect as a superuser, or {rights.set_role_hint(grantor)}"))
    return found


def _role_setting_hint(rights: _Rights, role: str) -> str:
    if rights.role_superuser(role):
        return "connect as a superuser"
    admin = (f"ALTER ROLE {ident(rights.me)} CREATEROLE and GRANT {ident(role)} TO "
             f"{ident(rights.me)} WITH ADMIN OPTION") if rights.v16 else \
        f"ALTER ROLE {ident(rights.me)} CREATEROLE"
    return f"connect as a superuser or as {role}, or {admin}"


def _acl_items(facts: Facts) -> list[dict[str, Any]]:
    """The ACL as its items, in array order: (grantor, grantee) with the privileges without
    and with grant option. Replayed in this order, every grant option a grant depends on is
    in place before it, and the array comes out in the same order."""
    items: dict[int, dict[str, Any]] = {}
    for row in facts.get("acl") or []:
        item = items.setdefault(int(row["position"]), {
            "grantor": str(row["grantor"]), "grantee": row.get("grantee"),
            "privileges": [], "plain": [], "grantable": []})
        item["privileges"].append(str(row["privilege"]))
        item["grantable" if row.get("grantable") else "plain"].append(str(row["privilege"]))
    return [items[k] for k in sorted(items)]


# -- statements ------------------------------------------------------------------------------
def create_scratch(facts: Facts, scratch: str) -> str:
    """CREATE DATABASE for the scratch copy: owned by the target's owner, same encoding,
    locale, provider and tablespace, from template0 (template1's extras stay out)."""
    parts = [f"CREATE DATABASE {ident(scratch)} WITH OWNER {ident(str(facts['owner']))}",
             "TEMPLATE template0", f"ENCODING {literal(str(facts['encoding']))}",
             f"LC_COLLATE {literal(str(facts['lc_collate']))}",
             f"LC_CTYPE {literal(str(facts['lc_ctype']))}"]
    provider = {"i": "icu", "b": "builtin", "c": "libc"}.get(str(facts.get("locale_provider")))
    if provider and provider != "libc":
        parts.append(f"LOCALE_PROVIDER {provider}")
        if facts.get("locale"):
            key = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
            parts.append(f"{key} {literal(str(facts['locale']))}")
        if facts.get("icu_rules"):
            parts.append(f"ICU_RULES {literal(str(facts['icu_rules']))}")
    if facts.get("tablespace") not in (None, "pg_default"):
        parts.append(f"TABLESPACE {ident(str(facts['tablespace']))}")
    return " ".join(parts)


def carry_over(facts: Facts, scratch: str) -> tuple[list[Step], list[str]]:
    """Statements that give the loaded ``scratch`` every database-level property of the
    target, in order, and what had to be left out or changed (empty when :func:`blockers`
    is; with blockers, only when all of them are ``waivable``). Run them as the connecting
    role after the load, before the swap."""
    rights = _Rights(facts)
    db, owner, new = str(facts["name"]), str(facts["owner"]), ident(scratch)
    owner_actor = None if rights.superuser else rights.owner_actor()
    steps: list[Step] = []
    dropped: list[str] = []
    if not facts.get("default_acl"):
        # From the owner's default to an empty ACL, then every item again in array order.
        revoke = f"REVOKE ALL ON DATABASE {new} FROM PUBLIC, {ident(owner)}"
        steps.append(Step(_as(owner_actor, revoke),
                          "start from an empty ACL"))
        granted_options: set[tuple[str, str]] = set()
        for item in _acl_items(facts):
            grantor, grantee = item["grantor"], item["grantee"]
            actor = grantor
            if grantor != owner and not (
                    rights.can_set_role(grantor)
                    and all((grantor, p) in granted_options for p in item["privileges"])):
                actor = owner
                dropped.append(f"{', '.join(item['privileges'])} on database {db} to "
                               f"{grantee or 'PUBLIC'}: granted by {owner} instead of {grantor}")
            body = []
            for key, suffix in (("plain", ""), ("grantable", " WITH GRANT OPTION")):
                if item[key]:
                    body.append(f"GRANT {', '.join(item[key])} ON DATABASE {new} TO "
                                f"{grantee_sql(grantee)}{suffix}")
            if grantee is not None:
                granted_options.update((grantee, p) for p in item["grantable"])
            # A grant by the owner: as the owner (a superuser's grant counts as the owner's);
            # by anyone else: after SET ROLE to them, the only way it is recorded as theirs.
            run_as = owner_actor if actor == owner else actor
            steps.append(Step(_as(run_as, "; ".join(body)),
                              f"grant {', '.join(item['privileges'])} to "
                              f"{grantee or 'PUBLIC'} as {actor}"))
    for entry in facts.get("settings") or []:
        role = entry.get("role")
        for item in entry.get("config") or []:
            name, name_sql, value_sql = setting_sql(str(item))
            if role is None:
                ok, actor_or_none = rights.database_setting_actor(name)
                statement = f"ALTER DATABASE {new} SET {name_sql} TO {value_sql}"
                where = f"database {db}"
            else:
                ok, actor_or_none = rights.role_setting_actor(str(role), name)
                statement = (f"ALTER ROLE {ident(str(role))} IN DATABASE {new} SET {name_sql} "
                             f"TO {value_sql}")
                where = f"role {role} in database {db}"
            if not ok:
                dropped.append(f"setting {item} of {where}: not set")
                continue
            steps.append(Step(_as(actor_or_none, statement), f"setting {item} of {where}"))
    if int(facts.get("connection_limit", -1)) != -1:
        steps.append(Step(_as(owner_actor, f"ALTER DATABASE {new} WITH CONNECTION LIMIT "
                                          f"{int(facts['connection_limit'])}"),
                          "connection limit"))
    if facts.get("comment") is not None:
        steps.append(Step(_as(owner_actor,
                              f"COMMENT ON DATABASE {new} IS {literal(str(facts['comment']))}"),
                          "comment"))
    if facts.get("is_template"):
        steps.append(Step(_as(owner_actor, f"ALTER DATABASE {new} WITH IS_TEMPLATE true"),
                          "template flag"))
    if facts.get("allow_connections") is False:
        steps.append(Step(_as(owner_actor, f"ALTER DATABASE {new} WITH ALLOW_CONNECTIONS false"),
                          "refuses connections, as the target did"))
    return steps, dropped


# -- the swap --------------------------------------------------------------------------------
def refuse_connections(target: str) -> str:
    return f"ALTER DATABASE {ident(target)} WITH ALLOW_CONNECTIONS false"


def allow_connections(target: str) -> str:
    return f"ALTER DATABASE {ident(target)} WITH ALLOW_CONNECTIONS true"


def swap_script(target: str, scratch: str, aside: str) -> str:
    """Both renames in one transaction: the target's name always names one complete
    database, whatever is killed when. Sent as one text: psql (stdin, ON_ERROR_STOP) ends
    its session on an error, which rolls back; psycopg must ROLLBACK itself when it fails
    (an explicit BEGIN leaves the session in the failed transaction)."""
    return (f"BEGIN;\nALTER DATABASE {ident(target)} RENAME TO {ident(aside)};\n"
            f"ALTER DATABASE {ident(scratch)} RENAME TO {ident(target)};\nCOMMIT;")


def swap_statements(target: str, scratch: str, aside: str) -> Sequence[str]:
    """The two renames, for a caller that runs them in a transaction of its own."""
    return (f"ALTER DATABASE {ident(target)} RENAME TO {ident(aside)}",
            f"ALTER DATABASE {ident(scratch)} RENAME TO {ident(target)}")


def drop_steps(database: str) -> Sequence[str]:
    """A template database cannot be dropped: the flag goes first (its owner may clear it)."""
    return (f"ALTER DATABASE {ident(database)} WITH IS_TEMPLATE false",
            f"DROP DATABASE IF EXISTS {ident(database)}")


def recovery(target: str, scratch: str, aside: str, existing: set[str], phase: str,
             connections_were_allowed: bool) -> list[Step]:
    """What puts right a crash of an import, from the names that exist now. With the atomic
    swap the target's name always exists: an aside copy means the swap committed (it is
    dropped), a scratch copy that it did not (dropped too); a target that still refuses
    connections from the step before the swap is opened again. A journal of an older
    kompose (two-statement swap) may still find the target missing: the aside copy is put
    back."""
    steps: list[Step] = []
    if target not in existing and aside in existing:
        steps.append(Step(f"ALTER DATABASE {ident(aside)} RENAME TO {ident(target)}",
                          f"{target} was missing: its previous copy {aside} is put back"))
        existing = (existing - {aside}) | {target}
        swapped = False
    else:
        swapped = aside in existing or phase == "drop-old"
    if aside in existing:
        steps += [Step(s, f"the swap had completed: dropping the replaced copy {aside}")
                  for s in drop_steps(aside)]
    if scratch in existing:
        steps += [Step(s, f"dropping the scratch copy {scratch}") for s in drop_steps(scratch)]
    if not swapped and phase != "load" and connections_were_allowed and target in existing:
        steps.append(Step(allow_connections(target),
                          f"{target} refused connections for the swap: allowing them again"))
    return steps
