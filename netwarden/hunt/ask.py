"""Questions in plain language, answered offline by a small deterministic grammar.

A question is matched against ``FORMS`` (each a regular expression over the lower-cased
question and the hunt it maps to); its time phrase (``TIME_PHRASES``) becomes the hunt's
window, counted back from the hunt's now (the newest archived activity). No model, no
network: the same question always runs the same hunt, and ``netwarden ask`` prints the
query it ran. A question that matches no form gets the list of forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from netwarden.errors import ConfigError
from netwarden.hunt.window import Window

_ADDR = r"(?P<addr>[0-9a-f:.]*[0-9a-f](?:%\w+)?)"
_UNITS = {"minute": 60, "min": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


class NotUnderstood(ConfigError):
    """The question matches none of the forms the grammar knows."""

    exit_code = 2


@dataclass(frozen=True)
class Question:
    hunt: str
    arg: str | None
    window: Window
    form: str  # the form it matched (as listed to the user)


#: (form shown to users, pattern, hunt, whether the hunt takes the address)
FORMS: list[tuple[str, str, str, bool]] = [
    ("what did ADDR do [TIME]", rf"what (?:did|has) {_ADDR} (?:do|done)", "host", True),
    ("what happened on ADDR [TIME]", rf"what happened (?:on|to|with) {_ADDR}", "host", True),
    ("who talked to ADDR [TIME]", rf"who (?:talked|talks|connected|spoke) to {_ADDR}", "peers", True),
    ("why was ADDR blocked", rf"why (?:was|is|did) {_ADDR} (?:get )?(?:blocked|banned)", "blocked", True),
    ("top talkers [TIME]", r"(?:who are the |show (?:me )?(?:the )?)?top talkers", "talkers", False),
    ("show beacons [TIME]", r"(?:show|find|list|any) (?:me )?(?:the )?beacon(?:s|ing)?", "beacons", False),
    ("show scans [TIME]", r"(?:show|find|list|any) (?:me )?(?:the )?(?:port )?scan(?:s|ners)?", "scans", False),
    ("show dns tunnels [TIME]", r"(?:show|find|list|any) (?:me )?(?:the )?dns(?: tunnel(?:s|ling)?)?", "dns", False),
    ("show long connections [TIME]", r"(?:show|find|list|any) (?:me )?(?:the )?long(?:est)?(?:[ -]lived)? connections", "long-connections", False),
    ("show rare destinations [TIME]", r"(?:show|find|list|any) (?:me )?(?:the )?rare (?:destinations|hosts|services)", "rare-destinations", False),
]  # fmt: skip

TIME_PHRASES = (
    "in the last hour / N minutes / N hours / N days",
    "today, yesterday, this week, last week",
    "since YYYY-MM-DD[THH:MM]",
)


def forms_help() -> str:
    lines = ["questions I understand (ADDR an IP address; TIME optional):"]
    lines += [f"  {f}" for f, *_ in FORMS]
    lines.append("TIME: " + "; ".join(TIME_PHRASES))
    return "\n".join(lines)


def _day_start(t: float) -> float:
    d = datetime.fromtimestamp(t, tz=UTC)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def parse_time(text: str, now: float) -> tuple[Window, str]:
    """The window a time phrase in ``text`` names, and ``text`` without it."""
    num = r"(?P<n>\d+(?:\.\d+)?|an?|one|two|three|twelve|twenty-four)"
    words = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "twelve": 12, "twenty-four": 24}
    today = _day_start(now)
    week = today - datetime.fromtimestamp(today, tz=UTC).weekday() * 86400
    fixed = {
        "today": (today, None),
        "yesterday": (today - 86400, today),
        "this week": (week, None),
        "last week": (week - 7 * 86400, week),
    }
    for phrase, (since, until) in fixed.items():
        # "last week" is the calendar week; "in the last week" the past seven days
        m = re.search(rf"(?<!the )\b(?:for |from |during )?{phrase}\b", text)
        if m:
            return Window(since, until, now), text.replace(m.group(0), " ")
    m = re.search(rf"\b(?:in |during |over |for )?(?:the )?(?:last|past) (?:{num} )?"
                  r"(?P<u>minute|min|hour|day|week)s?\b", text)  # fmt: skip
    if m:
        n = 1.0 if m.group("n") is None else float(words.get(m.group("n"), m.group("n")))
        return Window(now - n * _UNITS[m.group("u")], None, now), text.replace(m.group(0), " ")
    m = re.search(r"\bsince (?P<t>\d{4}-\d\d-\d\d(?:[t ]\d\d:\d\d(?::\d\d)?)?)", text)
    if m:
        dt = datetime.fromisoformat(m.group("t").replace(" ", "T").upper())
        since = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
        return Window(since, None, now), text.replace(m.group(0), " ")
    return Window(None, None, now), text


def parse(question: str, now: float) -> Question:
    """The hunt a question asks for; ``NotUnderstood`` (with the forms) if none."""
    text = " ".join(question.lower().replace("?", " ").replace(",", " ").split())
    window, rest = parse_time(text, now)
    rest = " ".join(rest.split())
    for form, pattern, hunt, takes_addr in FORMS:
        m = re.fullmatch(rf"(?:please )?{pattern}(?: please)?", rest)
        if m:
            arg = m.group("addr") if takes_addr else None
            return Question(hunt, arg, window, form)
    raise NotUnderstood(f"cannot answer {question!r}: it matches none of the forms above")
