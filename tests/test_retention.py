"""Retention by restic's ``forget`` rules: a table of cases, the parsing of flags and
``DB_KEEP_*`` variables, and the same policies checked against the real ``restic``."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kompose_py.db.retention import (
    Duration,
    Policy,
    apply_policy,
    parse_duration,
    parse_policy,
    removed,
)
from kompose_py.errors import ConfigError, UsageError
from tests.conftest import _missing


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


def kept(times: list[str], policy: Policy, keep_oldest: bool = False) -> list[str]:
    decisions = apply_policy([(t, utc(t)) for t in times], policy, keep_oldest)
    return [d.id for d in decisions if d.keep]


# (dumps, policy, kept newest first) — restic 0.14 rules (keep_oldest=False)
CASES = [
    pytest.param(["2024-01-01 00:00", "2024-01-02 00:00", "2024-01-03 00:00"],
                 Policy(last=2), ["2024-01-03 00:00", "2024-01-02 00:00"], id="last"),
    pytest.param(["2024-01-01 08:00", "2024-01-01 20:00", "2024-01-02 09:00",
                  "2024-01-02 10:00"],
                 Policy(daily=5), ["2024-01-02 10:00", "2024-01-01 20:00"],
                 id="daily-newest-per-day"),
    pytest.param(["2024-01-01 10:00", "2024-01-05 10:00", "2024-01-20 10:00"],
                 Policy(daily=2), ["2024-01-20 10:00", "2024-01-05 10:00"],
                 id="daily-counts-days-with-dumps-only"),
    # 2021-01-03 (Sunday) is ISO week 53 of 2020; 2021-01-04 opens week 1 of 2021
    pytest.param(["2020-12-28 10:00", "2021-01-03 10:00", "2021-01-04 10:00"],
                 Policy(weekly=3), ["2021-01-04 10:00", "2021-01-03 10:00"],
                 id="iso-week-53"),
    pytest.param(["2024-01-31 23:00", "2024-02-01 01:00", "2024-02-29 12:00"],
                 Policy(monthly=3), ["2024-02-29 12:00", "2024-01-31 23:00"], id="monthly"),
    pytest.param(["2022-06-01 00:00", "2022-12-31 23:59", "2023-01-01 00:00"],
                 Policy(yearly=1), ["2023-01-01 00:00"], id="yearly"),
    pytest.param(["2024-03-01 10:00", "2024-03-01 10:59", "2024-03-01 11:00"],
                 Policy(hourly=10), ["2024-03-01 11:00", "2024-03-01 10:59"], id="hourly"),
    # within is measured from the newest dump (2024-03-31), in calendar terms:
    # 2024-03-31 minus 1 month is "2024-02-31" = 2024-03-02, as Go's AddDate says
    pytest.param(["2024-03-01 12:00", "2024-03-02 00:00", "2024-03-02 00:01",
                  "2024-03-31 00:00"],
                 Policy(within=Duration(months=1)),
                 ["2024-03-31 00:00", "2024-03-02 00:01"], id="within-month-end"),
    pytest.param(["2020-01-01 00:00", "2023-06-01 00:00"], Policy(within=Duration(days=1)),
                 ["2023-06-01 00:00"], id="within-from-newest-not-now"),
    pytest.param(["2024-01-01 00:00", "2024-01-02 00:00", "2024-01-08 00:00"],
                 Policy(last=1, weekly=2),
                 ["2024-01-08 00:00", "2024-01-02 00:00"], id="union-of-rules"),
    pytest.param(["2024-01-01 00:00"], Policy(), ["2024-01-01 00:00"], id="empty-keeps-all"),
    pytest.param(["2024-01-01 00:00", "2024-01-02 00:00"], Policy(daily=-1),
                 ["2024-01-02 00:00", "2024-01-01 00:00"], id="minus-one-is-all"),
]


@pytest.mark.parametrize(("times", "policy", "expected"), CASES)
def test_table(times: list[str], policy: Policy, expected: list[str]) -> None:
    assert kept(times, policy) == expected


def test_reasons_list_every_rule_that_keeps() -> None:
    times = ["2024-01-01 00:00", "2024-01-02 00:00", "2024-01-02 05:00"]
    decisions = apply_policy([(t, utc(t)) for t in times],
                             Policy(last=1, daily=2, within=Duration(hours=3)), False)
    assert [(d.id, d.keep, d.reasons) for d in decisions] == [
        ("2024-01-02 05:00", True, ("within 3h", "last snapshot", "daily snapshot")),
        ("2024-01-02 00:00", False, ()),
        ("2024-01-01 00:00", True, ("daily snapshot",)),
    ]
    assert removed(decisions) == ["2024-01-02 00:00"]


def test_keep_oldest_rule_of_restic_016() -> None:
    times = ["2024-01-01 00:00", "2024-01-01 06:00", "2024-01-02 00:00"]
    decisions = apply_policy([(t, utc(t)) for t in times], Policy(daily=5), keep_oldest=True)
    # two days with dumps, counts left: the oldest dump stays too
    assert [d.reasons for d in decisions] == [
        ("daily snapshot",), ("daily snapshot",), ("oldest daily snapshot",)]
    assert kept(times, Policy(daily=5), keep_oldest=False) == times[:0:-1]
    # counts used up: no extra
    assert kept(times, Policy(daily=1), keep_oldest=True) == ["2024-01-02 00:00"]


def test_buckets_by_utc_whatever_the_zone_given() -> None:
    cet = timezone(timedelta(hours=1))
    # 00:30 in UTC+1 is 23:30 UTC the day before: two UTC days, both kept
    items = [("a", datetime(2024, 1, 2, 0, 30, tzinfo=cet)),
             ("b", datetime(2024, 1, 2, 12, 0, tzinfo=cet))]
    decisions = apply_policy(items, Policy(daily=5), False)
    assert [d.id for d in decisions if d.keep] == ["b", "a"]
    assert decisions[1].time == datetime(2024, 1, 1, 23, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="naive"):
        apply_policy([("x", datetime(2024, 1, 1))], Policy(last=1))


def test_same_second_ties_follow_input_order() -> None:
    when = utc("2024-01-01 00:00")
    decisions = apply_policy([("first", when), ("second", when)], Policy(last=1))
    assert [(d.id, d.keep) for d in decisions] == [("second", True), ("first", False)]


@pytest.mark.parametrize(("text", "expected"), [
    ("1y2m3d4h", Duration(1, 2, 3, 4)), ("36h", Duration(hours=36)),
    ("4h1y", Duration(years=1, hours=4)), (" 7d ", Duration(days=7)),
])
def test_parse_duration(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected
    assert str(parse_duration(str(expected))) == str(expected)


@pytest.mark.parametrize(("text", "message"), [
    ("7", "no unit after 7"), ("3w", "invalid unit 'w' after 3"),
    ("d", "expected a number at 'd'"), ("", "empty duration"), ("-1d", "expected a number"),
])
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_duration(text)
    assert "\n" not in info.value.message


def test_policy_from_variables_and_flags() -> None:
    env = {"DB_KEEP_DAILY": "7", "DB_KEEP_WEEKLY": " 4 ", "DB_KEEP_WITHIN": "2d",
           "DB_KEEP_LAST": ""}
    assert parse_policy(None, env) == Policy(daily=7, weekly=4, within=Duration(days=2))
    # any flag: the command line's policy alone
    assert parse_policy({"last": 3, "daily": None}, env) == Policy(last=3)
    assert parse_policy({}, {}) == Policy()
    assert str(parse_policy(None, env)) == "keep 7 daily, 4 weekly, within 2d of the newest"


def test_zero_within_variable_sets_no_rule_and_huge_spans_keep_everything() -> None:
    for zero in ("0", "00", " 0 "):
        assert parse_policy(None, {"DB_KEEP_WITHIN": zero}) == Policy()
    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    times = [datetime(2026, 12, d, tzinfo=timezone.utc) for d in range(1, 6)]
    for span in ("10000y", "2026y", "99999999999h", "99999999999d"):
        decisions = apply_policy([(t, t) for t in times],
                                 Policy(within=parse_duration(span)), now=now)
        assert all(d.keep for d in decisions), span
    # measured from the newest dump before now: one named in the future changes nothing
    future = datetime(2099, 1, 1, tzinfo=timezone.utc)
    kept = {d.id for d in apply_policy([(t, t) for t in [*times, future]],
                                       Policy(within=Duration(days=2)), now=now) if d.keep}
    assert kept == {times[3], times[4], future}


@pytest.mark.parametrize(("flags", "env", "error", "message"), [
    (None, {"DB_KEEP_DAILY": "seven"}, ConfigError,
     r"^DB_KEEP_DAILY=seven: expected a whole number ≥ 0 \(or -1 for all\)$"),
    (None, {"DB_KEEP_LAST": "-2"}, ConfigError, "^DB_KEEP_LAST=-2: expected"),
    (None, {"DB_KEEP_WITHIN": "2w"}, ConfigError,
     r"^DB_KEEP_WITHIN='2w': invalid unit 'w' after 2 "),
    ({"hourly": "x"}, {}, UsageError, "^--keep-hourly x: expected a whole number"),
    ({"within": "5"}, {}, UsageError, "^--keep-within '5': no unit after 5"),
])
def test_policy_errors(flags: dict[str, str] | None, env: dict[str, str],
                       error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_policy(flags, env)


# -- against the real restic ---------------------------------------------------------------

def _restic() -> str:
    found = shutil.which("restic")
    if found is None:
        _missing("restic (apt-get install -y restic)")
    assert found
    return found


def _repository(restic: str, times: list[datetime], tmp_path: Path) -> dict[str, str]:
    """The environment of a restic repository holding one snapshot of one small file at each
    of ``times``. restic derives its key with scrypt on every call (about a second here), so a
    repository that an earlier run on this machine made with the same restic for the same
    times (another Python of the same CI run) is reused; it is made whole in a folder of its
    own and then renamed into place, so a cut-short run never leaves half of one."""
    import hashlib
    import tempfile

    base = {**os.environ, "RESTIC_PASSWORD": "kompose-retention-test", "TZ": "UTC",
            "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    version = subprocess.run([restic, "version"], env=base, capture_output=True, text=True,
                             check=True).stdout
    key = hashlib.sha256("\n".join([version, *map(str, times)]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("KOMPOSE_TEST_CACHE") or tempfile.gettempdir()) \
        / "kompose-test-cache"
    repo = cache / f"restic-{key}"
    if not (repo / "config").is_file():
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f"{repo.name}.", dir=cache)) / "repo"
        env = {**base, "RESTIC_REPOSITORY": str(building)}
        subprocess.run([restic, "init"], env=env, capture_output=True, check=True)
        source = tmp_path / "source"  # the same path in every snapshot: one forget group
        source.mkdir(exist_ok=True)
        (source / "dump.sql").write_text("SELECT 1;\n")
        for when in times:
            subprocess.run([restic, "backup", "--quiet", "--host", "kompose", "--time",
                            f"{when:%Y-%m-%d %H:%M:%S}", "dump.sql"],
                           cwd=source, env=env, capture_output=True, check=True)
        with contextlib.suppress(OSError):  # made meanwhile by another run: use that one
            building.rename(repo)
        shutil.rmtree(building.parent, ignore_errors=True)
    return {**base, "RESTIC_REPOSITORY": str(repo)}


def _history() -> list[datetime]:
    """About three years of irregular dumps: several a day some weeks, gaps of weeks,
    year and ISO-week boundaries, month ends; every second distinct (restic orders equal
    times by its own listing)."""
    rng = random.Random(19)
    when = datetime(2021, 12, 20, 3, 0, tzinfo=timezone.utc)
    times = []
    while len(times) < 45:
        when += timedelta(minutes=rng.choice([7, 50, 61, 300, 1440, 1500, 4000, 20000,
                                              45000]), seconds=rng.randrange(1, 59))
        times.append(when)
    for edge in ("2021-12-20 09:00", "2022-12-31 23:59", "2023-01-01 00:01", "2023-01-02 00:00",
                 "2023-02-28 23:00", "2023-03-31 22:00"):
        times.append(utc(edge) + timedelta(seconds=len(times)))
    return sorted(set(times))


POLICIES = [
    Policy(last=5), Policy(hourly=10), Policy(daily=7), Policy(weekly=6), Policy(monthly=8),
    Policy(yearly=3), Policy(yearly=10), Policy(daily=7, weekly=4, monthly=12, yearly=2),
    Policy(last=2, hourly=3, daily=3, weekly=3, monthly=3, yearly=3),
    Policy(within=Duration(days=10)), Policy(within=Duration(months=2)),
    Policy(within=Duration(years=1, months=1, days=3, hours=7)),
    Policy(within=Duration(hours=100), weekly=3, monthly=100),
]


def _flags(policy: Policy) -> list[str]:
    flags = [f"--keep-{rule}={getattr(policy, rule)}"
             for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly")
             if getattr(policy, rule)]
    return [*flags, f"--keep-within={policy.within}"] if policy.within else flags


def test_matches_debian_restic(tmp_path: Path) -> None:
    restic = _restic()
    # Password in the environment only; restic reads --time and prints times in local time.
    times = _history()
    env = _repository(restic, times, tmp_path)
    version = subprocess.run([restic, "version"], env=env, capture_output=True, text=True,
                             check=True).stdout
    differs_without_oldest_rule = 0
    for policy in POLICIES:
        out = subprocess.run([restic, "forget", "--dry-run", "--json", *_flags(policy)],
                             env=env, capture_output=True, text=True, check=True).stdout
        (group,) = json.loads(out)
        # restic 0.14's reasons carry the snapshot without its id: match them by time
        theirs = {datetime.fromisoformat(r["snapshot"]["time"].replace("Z", "+00:00")):
                  tuple(r["matches"]) for r in group["reasons"]}
        assert len(theirs) == len(group["keep"] or [])
        ours = {d.time: d.reasons
                for d in apply_policy([(t, t) for t in times], policy, keep_oldest=False)
                if d.keep}
        assert ours == theirs, f"{policy} differs from {version.strip()}"
        newer = {d.time for d in apply_policy([(t, t) for t in times], policy) if d.keep}
        differs_without_oldest_rule += newer != set(ours)
    # restic 0.16+'s extra "oldest" keep (the default here) is what Debian 12's 0.14 lacks
    assert "restic 0.14" not in version or differs_without_oldest_rule > 0


def test_restic_edge_cases(tmp_path: Path) -> None:
    """Month ends in --keep-within (Go's AddDate: 31 March minus a month is 2 March in a leap
    year), and restic 0.14's --keep-last=-1, which forgets everything (0.16+ and kompose:
    -1 keeps all)."""
    restic = _restic()
    times = [datetime(2024, 3, 1, 12, tzinfo=timezone.utc),
             datetime(2024, 3, 1, 23, 59, 59, tzinfo=timezone.utc),
             datetime(2024, 3, 2, 0, 0, 30, tzinfo=timezone.utc),
             datetime(2024, 3, 31, tzinfo=timezone.utc),
             # a name that says a time still to come: not "the newest" for --keep-within
             datetime(2099, 1, 1, tzinfo=timezone.utc)]
    env = _repository(restic, times, tmp_path)

    def restic_keeps(*flags: str) -> set[datetime]:
        out = subprocess.run([restic, "forget", "--dry-run", "--json", *flags], env=env,
                             capture_output=True, text=True, check=True).stdout
        (group,) = json.loads(out)
        return {datetime.fromisoformat(s["time"].replace("Z", "+00:00"))
                for s in group["keep"] or []}

    ours = {d.time for d in apply_policy([(t, t) for t in times],
                                         Policy(within=Duration(months=1)), False) if d.keep}
    assert restic_keeps("--keep-within=1m") == ours == set(times[2:])
    for span, kept in (("7d", {times[3], times[4]}), ("10000y", set(times))):
        ours = {d.time for d in apply_policy([(t, t) for t in times],
                                             Policy(within=parse_duration(span)), False)
                if d.keep}
        assert restic_keeps(f"--keep-within={span}") == ours == kept, span
    version = subprocess.run([restic, "version"], env=env, capture_output=True, text=True,
                             check=True).stdout
    if version.startswith("restic 0.14"):
        assert restic_keeps("--keep-last=-1") == set()
    assert all(d.keep for d in apply_policy([(t, t) for t in times], Policy(last=-1)))
