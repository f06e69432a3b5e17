"""carryover's text and decisions without a server (the server tests: test_carryover_pg.py)."""

from __future__ import annotations

from typing import Any

from kompose_py.db.postgres import carryover
from kompose_py.db.postgres.carryover import Step


def facts(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "shop", "owner": "shop_owner", "encoding": "UTF8", "lc_collate": "C.UTF-8",
        "lc_ctype": "C.UTF-8", "locale_provider": "c", "locale": None, "icu_rules": None,
        "connection_limit": -1, "allow_connections": True, "is_template": False,
        "comment": None, "tablespace": "pg_default", "tablespace_ok": True,
        "me": "shop_owner", "me_superuser": False, "me_createdb": True,
        "me_createrole": False, "server_version": 170002, "default_acl": True, "acl": [],
        "settings": [], "roles": [{"name": "shop_owner", "superuser": False, "can_set": True,
                                   "can_admin": False}], "params": []}
    base.update(changes)
    return base


def test_quoting() -> None:
    assert carryover.ident('we"ird') == '"we""ird"'
    assert carryover.literal("it's") == "'it''s'"
    assert carryover.literal("a\\b'") == "E'a\\\\b'''"


def test_list_settings_are_given_back_element_by_element() -> None:
    assert carryover.setting_sql('search_path=app_data, "$user", public') == (
        "search_path", '"search_path"', "'app_data', '$user', 'public'")
    assert carryover.setting_sql('search_path=""') == ("search_path", '"search_path"', "''")
    # Not a list parameter: the value stays one literal, '=' and ',' included.
    assert carryover.setting_sql("my.setting=a=b, c") == (
        "my.setting", '"my"."setting"', "'a=b, c'")


def test_create_scratch_keeps_owner_locale_and_provider() -> None:
    text = carryover.create_scratch(facts(locale_provider="i", locale="de-DE",
                                          icu_rules="&a < b"), "shop_kompose_new_1")
    assert text == ('CREATE DATABASE "shop_kompose_new_1" WITH OWNER "shop_owner" TEMPLATE '
                    "template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' "
                    "LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' ICU_RULES '&a < b'")
    assert "BUILTIN_LOCALE 'C.UTF-8'" in carryover.create_scratch(
        facts(locale_provider="b", locale="C.UTF-8"), "x")
    assert "TABLESPACE \"fast\"" in carryover.create_scratch(facts(tablespace="fast"), "x")


def test_acl_is_replayed_in_array_order_as_each_grantor() -> None:
    acl = [
        {"position": 1, "grantor": "shop_owner", "grantee": None, "privilege": "CONNECT",
         "grantable": False},
        {"position": 2, "grantor": "shop_owner", "grantee": "app", "privilege": "TEMPORARY",
         "grantable": True},
        {"position": 2, "grantor": "shop_owner", "grantee": "app", "privilege": "CONNECT",
         "grantable": False},
        {"position": 3, "grantor": "app", "grantee": "reader", "privilege": "TEMPORARY",
         "grantable": False}]
    roles = [{"name": "shop_owner", "superuser": False, "can_set": True, "can_admin": False},
             {"name": "app", "superuser": False, "can_set": True, "can_admin": False}]
    steps, dropped = carryover.carry_over(facts(default_acl=False, acl=acl, roles=roles), "n")
    assert dropped == []
    assert [s.sql for s in steps] == [
        'REVOKE ALL ON DATABASE "n" FROM PUBLIC, "shop_owner"',
        'GRANT CONNECT ON DATABASE "n" TO PUBLIC',
        'GRANT CONNECT ON DATABASE "n" TO "app"; '
        'GRANT TEMPORARY ON DATABASE "n" TO "app" WITH GRANT OPTION',
        'SET ROLE "app"; GRANT TEMPORARY ON DATABASE "n" TO "reader"; RESET ROLE']
    # A grantor the role cannot act for: granted by the owner instead, and said.
    roles[1]["can_set"] = False
    steps, dropped = carryover.carry_over(facts(default_acl=False, acl=acl, roles=roles), "n")
    assert steps[-1].sql == 'GRANT TEMPORARY ON DATABASE "n" TO "reader"'
    assert dropped == ["TEMPORARY on database shop to reader: granted by shop_owner instead "
                       "of app"]


def test_a_member_of_the_owner_acts_as_the_owner() -> None:
    f = facts(me="kompose", connection_limit=5, comment="c",
              settings=[{"role": None, "config": ["work_mem=8MB"]}],
              params=[{"name": "work_mem", "role": "shop_owner", "context": "user",
                       "can_set": False}])
    steps, dropped = carryover.carry_over(f, "n")
    assert dropped == []
    assert [s.sql for s in steps] == [
        'SET ROLE "shop_owner"; ALTER DATABASE "n" SET "work_mem" TO \'8MB\'; RESET ROLE',
        'SET ROLE "shop_owner"; ALTER DATABASE "n" WITH CONNECTION LIMIT 5; RESET ROLE',
        'SET ROLE "shop_owner"; COMMENT ON DATABASE "n" IS \'c\'; RESET ROLE']


def test_superuser_has_no_blockers_and_a_superuser_role_needs_one() -> None:
    settings = [{"role": "postgres", "config": ["work_mem=1MB"]}]
    roles = [{"name": "postgres", "superuser": True, "can_set": False, "can_admin": False}]
    assert carryover.blockers(facts(me="root", me_superuser=True, settings=settings,
                                    roles=roles)) == []
    lines = [b.line for b in carryover.blockers(facts(settings=settings, roles=roles))]
    assert lines == ["role postgres: its setting work_mem=1MB in database shop (ALTER ROLE … "
                     "IN DATABASE) may not be set by shop_owner; to allow it: connect as a "
                     "superuser"]


def test_no_createdb_and_no_owner_membership_are_blockers() -> None:
    f = facts(me="kompose", me_createdb=False, server_version=150004,
              roles=[{"name": "shop_owner", "superuser": False, "can_set": False,
                      "can_admin": False}])
    assert [b.line for b in carryover.blockers(f)] == [
        'role kompose: cannot create databases (the scratch copy); to allow it: ALTER ROLE '
        '"kompose" CREATEDB, or connect as a superuser',
        "role shop_owner: owns database shop, and kompose may not create a database owned by "
        'it; to allow it: connect as shop_owner or a superuser, or GRANT "shop_owner" TO '
        '"kompose"']
    assert not any(b.waivable for b in carryover.blockers(f))


def test_swap_and_drop_text() -> None:
    assert carryover.swap_script("shop", "shop_new", "shop_old") == (
        'BEGIN;\nALTER DATABASE "shop" RENAME TO "shop_old";\n'
        'ALTER DATABASE "shop_new" RENAME TO "shop";\nCOMMIT;')
    assert carryover.drop_steps("x") == ('ALTER DATABASE "x" WITH IS_TEMPLATE false',
                                         'DROP DATABASE IF EXISTS "x"')


def test_recovery() -> None:
    def plan(existing: set[str], phase: str = "connections-off",
             allowed: bool = True) -> list[str]:
        return [s.sql for s in carryover.recovery("t", "t_new", "t_old", existing, phase,
                                                  allowed)]

    # Killed before the swap committed: the scratch goes, the target opens again.
    assert plan({"t", "t_new"}) == [*carryover.drop_steps("t_new"),
                                    carryover.allow_connections("t")]
    # ... unless it refused connections before the import.
    assert plan({"t", "t_new"}, allowed=False) == list(carryover.drop_steps("t_new"))
    # Killed after the commit: the replaced copy goes; the target is the new one.
    assert plan({"t", "t_old"}) == list(carryover.drop_steps("t_old"))
    # Killed during the load: only the scratch.
    assert plan({"t", "t_new"}, phase="load") == list(carryover.drop_steps("t_new"))
    # A journal of the older two-statement swap, killed between its renames.
    steps = carryover.recovery("t", "t_new", "t_old", {"t_old", "t_new"}, "rename-in", True)
    assert steps[0] == Step('ALTER DATABASE "t_old" RENAME TO "t"',
                            "t was missing: its previous copy t_old is put back")
    assert [s.sql for s in steps[1:]] == [*carryover.drop_steps("t_new"),
                                          carryover.allow_connections("t")]
