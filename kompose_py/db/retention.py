"""Which dumps a retention policy keeps: the rules of restic's ``forget``.

A policy is any mix of ``--keep-last N``, ``--keep-hourly/-daily/-weekly/-monthly/-yearly N``
and ``--keep-within DURATION``. A dump is kept when any rule keeps it, and every rule that
keeps it is listed (restic's "reasons"), so a dry-run can say why each survivor stays.

How the rules count, as restic does:

- Dumps are walked newest first. ``last`` keeps the N newest. Each calendar rule keeps the
  newest dump of each of its N most recent buckets *that hold a dump* (days without a dump do
  not use up a count), so ``--keep-daily 7`` keeps 7 days' worth even after a week of outages.
- Buckets are by the UTC time of the dump (the time in its name): an hour, a day, an ISO
  week (Monday first; 2021-01-03 belongs to week 53 of 2020), a month, a year.
- ``within 1y2m3d4h`` keeps every dump made strictly after the newest dump minus that span,
  the span taken in calendar terms (years, months, days, then hours, normalised as Go's
  ``AddDate`` does: 31 March minus one month is 3 March, not 28 February). It is measured from
  the newest dump, not from now, so a stack whose exports stopped keeps its last backups; a
  dump whose name says a time still to come is not "the newest" (restic's rule), and a span
  that reaches before year 1 keeps everything.
- ``keep_oldest`` (restic 0.16 and later): when a calendar or ``last`` rule still has counts
  left at the oldest dump, that oldest dump is kept too ("oldest daily snapshot"), so a young
  history is not thinned below what the policy asks for. restic 0.14/0.15 (Debian 12's 0.14.0)
  do not do this: ``keep_oldest=False`` gives their answer exactly.
- A count of -1 means "every bucket" (restic 0.16+). A policy with no rule keeps everything.
- Ties (two dumps of the same second) are ordered as given: the later one in the input is the
  newer one, as the same-second counter in a dump's name says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from kompose_py.errors import ConfigError, UsageError

T = TypeVar("T")

COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
ENV_NAMES = {rule: f"DB_KEEP_{rule.upper()}" for rule in (*COUNT_RULES, "within")}
FLAG_NAMES = {rule: f"--keep-{rule}" for rule in (*COUNT_RULES, "within")}
_REASON = {"last": "last snapshot", "hourly": "hourly snapshot", "daily": "daily snapshot",
           "weekly": "weekly snapshot", "monthly": "monthly snapshot",
           "yearly": "yearly snapshot"}
_DURATION_PART = re.compile(r"(\d+)([a-zA-Z]?)")


@dataclass(frozen=True)
class Duration:
    """restic's calendar span: ``6y5m234d37h`` (each unit at most once counts: a repeated
    unit replaces the earlier value, as in restic)."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __bool__(self) -> bool:
        return any((self.years, self.months, self.days, self.hours))

    def __str__(self) -> str:
        return "".join(f"{value}{unit}" for value, unit in (
            (self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h"))
            if value)

    def before(self, when: datetime) -> datetime:
        """``when`` minus this span, the way Go's ``AddDate`` then ``Add`` count it; a span
        that reaches before year 1 gives the earliest time (it keeps every dump, as restic's
        does)."""
        try:
            month0 = when.month - 1 - self.months
            year = when.year - self.years + month0 // 12
            first = when.replace(year=year, month=month0 % 12 + 1, day=1)
            return first + timedelta(days=when.day - 1 - self.days, hours=-self.hours)
        except (OverflowError, ValueError):
            return EARLIEST


EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration = field(default_factory=Duration)

    @property
    def empty(self) -> bool:
        return not any(getattr(self, rule) for rule in COUNT_RULES) and not self.within

    def __str__(self) -> str:
        """One line for dry-runs and logs: ``keep 3 last, 7 daily, within 1m``."""
        parts = [f"{'all' if getattr(self, r) == -1 else getattr(self, r)} {r}"
                 for r in COUNT_RULES if getattr(self, r)]
        if self.within:
            parts.append(f"within {self.within} of the newest")
        return "keep " + ", ".join(parts) if parts else "keep everything (no rule given)"


@dataclass(frozen=True)
class Decision(Generic[T]):
    id: T
    time: datetime  # UTC
    keep: bool
    reasons: tuple[str, ...]  # empty for a removed one


def parse_duration(text: str, name: str = "--keep-within") -> Duration:
    """``1y2m3d4h`` (any subset, any order). Raises UsageError naming ``name``."""
    value = text.strip()
    parts: dict[str, int] = {}
    pos = 0
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if match is None:
            raise UsageError(f"{name} {text!r}: expected a number at {value[pos:]!r} "
                             f"(a span like 7d, 2m, 1y6m, 36h)")
        number, unit = match.groups()
        if unit not in ("y", "m", "d", "h"):
            raise UsageError(f"{name} {text!r}: "
                             + (f"invalid unit {unit!r} after {number}" if unit else
                                f"no unit after {number}")
                             + " (units: y years, m months, d days, h hours)")
        parts[unit] = int(number)
        pos = match.end()
    if not value:
        raise UsageError(f"{name}: empty duration (a span like 7d, 2m, 1y6m, 36h)")
    return Duration(parts.get("y", 0), parts.get("m", 0), parts.get("d", 0), parts.get("h", 0))


def _count(value: int | str, name: str, error: type[UsageError]) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"-?\d+", text) or int(text) < -1:
        raise error(f"{name}={value}: expected a whole number ≥ 0 (or -1 for all)"
                    if error is ConfigError else
                    f"{name} {value}: expected a whole number ≥ 0 (or -1 for all)")
    return int(text)


def parse_policy(flags: Mapping[str, int | str | None] | None = None,
                 env: Mapping[str, str] | None = None,
                 sources: Mapping[str, str] | None = None) -> Policy:
    """The policy of a run: from the command line if any ``--keep-*`` flag was given, else
    from the ``DB_KEEP_*`` variables.

    ``flags``: keys ``last``, ``hourly``, …, ``within`` (None or absent: not given).
    ``env``: the stack's variables; empty values count as unset. Flags replace the variables'
    policy as a whole rather than rule by rule: ``--keep-last 3`` on the command line means
    exactly that, not "3 last plus whatever the stack's .env also keeps". ``sources``: where
    each variable was set (its layer), named in the error of one that does not read.
    Raises UsageError (a flag) or ConfigError (a variable) with one line naming it.
    """
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = set(given) - set(ENV_NAMES)
    if unknown:
        raise UsageError(f"unknown retention rule(s): {', '.join(sorted(unknown))}")
    if given:
        flagged: dict[str, Any] = {rule: _rule(rule, value, FLAG_NAMES[rule], UsageError)
                                   for rule, value in given.items()}
        return Policy(**flagged)
    values = {rule: env[var] for rule, var in ENV_NAMES.items()
              if env and env.get(var, "").strip()}
    if "within" in values and re.fullmatch(r"0+", str(values["within"]).strip()):
        del values["within"]  # DB_KEEP_WITHIN=0: no rule, as 0 is for every DB_KEEP_* count
    rules: dict[str, Any] = {}
    for rule, value in values.items():
        try:
            rules[rule] = _rule(rule, value, ENV_NAMES[rule], ConfigError)
        except ConfigError as exc:
            if sources is None:
                raise
            where = sources.get(ENV_NAMES[rule], "the environment")
            raise ConfigError(f"{exc.message} (set in {where})") from None
    return Policy(**rules)


def _rule(rule: str, value: int | str, name: str, error: type[UsageError]) -> int | Duration:
    """One rule's value: a count, or the span of ``within``."""
    if rule != "within":
        return _count(value, name, error)
    try:
        return parse_duration(str(value), name)
    except UsageError as exc:
        if error is ConfigError:
            raise ConfigError(exc.message.replace(f"{name} ", f"{name}=", 1)) from None
        raise


def _bucket(rule: str, when: datetime, nr: int) -> int:
    if rule == "last":
        return nr
    if rule == "hourly":
        return ((when.year * 100 + when.month) * 100 + when.day) * 100 + when.hour
    if rule == "daily":
        return (when.year * 100 + when.month) * 100 + when.day
    if rule == "weekly":
        year, week, _ = when.isocalendar()
        return year * 100 + week
    if rule == "monthly":
        return when.year * 100 + when.month
    return when.year


def apply_policy(items: Iterable[tuple[T, datetime]], policy: Policy,
                 keep_oldest: bool = True, now: datetime | None = None
                 ) -> list[Decision[T]]:
    """Every item with its fate, newest first. Times must be timezone-aware (compared and
    bucketed in UTC). ``keep_oldest``: restic 0.16+'s rule (see the module text). ``now``
    (default: the clock): ``within`` is measured from the newest item before it, as restic
    does, so a dump whose name says a future time cannot push every real one out."""
    listed: list[tuple[int, T, datetime]] = []
    for index, (ident, when) in enumerate(items):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"{ident!r}: a naive time ({when}); retention needs UTC")
        listed.append((index, ident, when.astimezone(timezone.utc)))
    listed.sort(key=lambda item: (item[2], item[0]), reverse=True)
    if policy.empty:
        return [Decision(ident, when, True, ("policy is empty",))
                for _, ident, when in listed]
    if not listed:
        return []
    left = {rule: getattr(policy, rule) for rule in COUNT_RULES}
    last_seen: dict[str, int | None] = dict.fromkeys(COUNT_RULES)
    if policy.within:
        clock = now or datetime.now(timezone.utc)
        newest = max((when for _, _, when in listed if when < clock), default=EARLIEST)
        cutoff: datetime | None = policy.within.before(newest)
    else:
        cutoff = None
    decisions: list[Decision[T]] = []
    for nr, (_, ident, when) in enumerate(listed):
        reasons: list[str] = []
        if cutoff is not None and when > cutoff:
            reasons.append(f"within {policy.within}")
        oldest = nr == len(listed) - 1
        for rule in COUNT_RULES:
            if left[rule] == 0:
                continue
            value = _bucket(rule, when, nr)
            if value != last_seen[rule]:
                reasons.append(_REASON[rule])
            elif keep_oldest and oldest:
                reasons.append("oldest " + _REASON[rule])
            else:
                continue
            last_seen[rule] = value
            if left[rule] > 0:
                left[rule] -= 1
        decisions.append(Decision(ident, when, bool(reasons), tuple(reasons)))
    return decisions


def removed(decisions: Sequence[Decision[T]]) -> list[T]:
    return [d.id for d in decisions if not d.keep]
