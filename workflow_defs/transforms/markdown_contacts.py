"""The `emergency_contacts` schema of `markdown_to_json` (seed README: emergency_contacts.json).

Input: the LLM reply in the shape the emergency-contacts prompt asks for:

    ## Emergency Contacts Analysis
    ### <name>
    **Phone**: … / **Address**: … / **Website**: … / **Category**: … / **Priority**: …
    **Fit Score**: 0-100 / **Reasoning**: … / **Relevant Scenarios**: a, b / **24/7 Available**: yes|no
    ## Meeting Locations
    ### Primary Meeting Location: <name>
    **Address**: … / **Description**: … / **Reasoning**: … / **Practical Details**: …
    **Suitable For**: a, b

Output: `{"contacts": [...], "meeting_locations": [...]}`.

- A heading block is a contact when it has a Category, Priority or Fit Score field; other
  blocks (section headings, notes, malformed items) are dropped, never an error.
- A block is a meeting location when its heading reads "<Primary|Secondary|Tertiary|Backup…>
  Meeting Location[: name]" (any heading level), or when it sits under a "Meeting Locations"
  section and has location fields. Priority comes from the heading, else a Priority field,
  else the order (1st primary, 2nd secondary, 3rd tertiary).
- Scalars absent or written as a placeholder (N/A, unknown, -) are None; lists absent are [].
  `fit_score` is an int 0-100 ("85", "85/100", "85%", "8/10" → 80, "0.85" → 85).
  `available_24hr` is a bool from yes/no wording (None when absent). `has_parking` /
  `is_accessible` are read from the practical details (None when there are none): parking is
  mentioned and not negated ("no parking", "parking unavailable"); wheelchair / ADA /
  step-free / ramp / "accessible" (not "inaccessible", not "accessible by bus").
"""

from __future__ import annotations

import math
import re
from typing import Any

from workflow_defs.transforms.markdown_reading import (
    Fields,
    first_url,
    normalize_label,
    parse_fields,
    split_blocks,
)

_ALIASES = {
    "name": "name",
    "phone": "phone",
    "phone number": "phone",
    "telephone": "phone",
    "tel": "phone",
    "contact number": "phone",
    "emergency number": "phone",
    "address": "address",
    "location": "address",
    "website": "website",
    "web site": "website",
    "web": "website",
    "url": "website",
    "site": "website",
    "link": "website",
    "category": "category",
    "type": "category",
    "priority": "priority",
    "priority level": "priority",
    "fit score": "fit_score",
    "fit": "fit_score",
    "score": "fit_score",
    "relevance score": "fit_score",
    "reasoning": "reasoning",
    "reason": "reasoning",
    "rationale": "reasoning",
    "why": "reasoning",
    "relevant scenarios": "relevant_scenarios",
    "scenarios": "relevant_scenarios",
    "relevant for": "relevant_scenarios",
    "description": "description",
    "practical details": "practical_details",
    "practical information": "practical_details",
    "practical info": "practical_details",
    "details": "practical_details",
    "logistics": "practical_details",
    "suitable for": "suitable_for",
    "best for": "suitable_for",
    "good for": "suitable_for",
}
_CONTACT_MARKERS = ("category", "priority", "fit_score")
_LOCATION_FIELDS = ("address", "description", "reasoning", "practical_details", "suitable_for")
CATEGORIES = ("medical", "government", "community", "utility", "information")
PRIORITIES = ("critical", "important", "helpful")
LOCATION_PRIORITIES = ("primary", "secondary", "tertiary")


def _canon(label: str) -> str | None:
    if label in _ALIASES:
        return _ALIASES[label]
    if "24" in label and any(w in label for w in ("/7", "hour", "hr", " 7")):
        return "available_24hr"  # "24/7 Available", "Available 24 hours", "24hr"…
    return None


_NUMBERING = re.compile(r"^(?:#\s*)?\d+[.):]\s+")
_PLACE_WORDS = r"(?:location|point|place|spot|site|area)"
# Possessive whitespace: each run sits between words that can't be whitespace, so giving
# characters back never helps, and `\s*#?\s*` would otherwise split a long run every way.
_LOCATION_HEADING = re.compile(
    r"^(?:(?P<prio>primary|secondary|tertiary|backup|alternate|alternative|first|second|third)\s++)?"
    r"(?:emergency\s++)?(?:family\s++)?(?:meeting|gathering|rally|rallying|assembly|reunion)\s++"
    + _PLACE_WORDS
    + r"(?:\s*+(?:#\s*+)?(?P<num>\d))?\s*+(?:[:\-\u2013\u2014]\s*(?P<name>.*))?$",
    re.IGNORECASE,
)
_PRIORITY_HEADING = re.compile(
    r"^(?P<prio>primary|secondary|tertiary|backup|alternate|alternative)(?:\s++"
    + _PLACE_WORDS
    + r")?\s*+[:\-\u2013\u2014]\s*(?P<name>.+)$",
    re.IGNORECASE,
)
_PRIORITY_WORDS = {
    "primary": "primary",
    "first": "primary",
    "1": "primary",
    "secondary": "secondary",
    "second": "secondary",
    "backup": "secondary",
    "alternate": "secondary",
    "alternative": "secondary",
    "2": "secondary",
    "tertiary": "tertiary",
    "third": "tertiary",
    "3": "tertiary",
}


def parse_fit_score(text: str | None) -> int | None:
    if not text:
        return None
    m = re.search(r"(\d{1,9}(?:\.\d{1,9})?)\s*(?:/\s*(\d{1,9}(?:\.\d{1,9})?)|%)?", text)
    if m is None:
        return None
    value = float(m.group(1))
    if m.group(2) and float(m.group(2)) > 0:
        value = value / float(m.group(2)) * 100
    elif "." in m.group(1) and value <= 1:
        value *= 100  # "0.85" is a fraction
    return max(0, min(100, math.floor(value + 0.5)))


def parse_yes_no(text: str | None) -> bool | None:
    if text is None:
        return None
    t = text.lower().strip(" *_.:!")
    if re.match(r"(?:yes|y|true|always|✓|✔|✅)\b", t) or t.startswith(("✓", "✔", "✅")):
        return True
    if re.match(r"(?:no|n|false|never|not)\b", t) or t.startswith(("✗", "✘", "❌")):
        return False
    return bool(re.search(r"24\s*/\s*7|24\s*(?:-\s*)?hours?|24\s*hr|around the clock", t))


_NO_PARKING = re.compile(
    r"\b(?:no|without|lacks?|lacking|lack\s+of)\s+(?:[\w-]+\s+){0,2}parking\b"
    r"|\bparking\b[^.;]{0,30}?\b(?:not\s+available|unavailable|prohibited|not\s+(?:permitted|allowed|provided))",
    re.IGNORECASE,
)
_ACCESSIBLE = re.compile(
    r"\b(?:wheelchair|step[\s-]free|ramps?|handicap(?:ped)?|accessibility"
    r"|accessible(?!\s+(?:by|via|from|on)\b))",
    re.IGNORECASE,
)
_ADA = re.compile(r"\bADA\b")  # case-sensitive: "Ada County" is a place
_NOT_ACCESSIBLE = re.compile(
    r"\b(?:in|un)accessible\b|\b(?:not|no|isn't|without)\s+(?:[\w-]+\s+){0,2}"
    r"(?:wheelchair|accessible|accessibility|step[\s-]free|ramps?)\b",
    re.IGNORECASE,
)


def has_parking(details: str | None) -> bool | None:
    if details is None:
        return None
    return "parking" in details.lower() and not _NO_PARKING.search(details)


def is_accessible(details: str | None) -> bool | None:
    if details is None:
        return None
    if _NOT_ACCESSIBLE.search(details):
        return False
    return bool(_ACCESSIBLE.search(details) or _ADA.search(details))


def _known_word(text: str | None, words: tuple[str, ...]) -> str | None:
    """The known value the text names ('Critical - call first' → 'critical'), else the text."""
    if text is None:
        return None
    lowered = text.lower()
    for word in words:
        if re.search(rf"\b{word}\b", lowered):
            return word
    return lowered


def _title(text: str) -> str:
    return _NUMBERING.sub("", text).strip(" *_:")


def _contact(title: str, fields: Fields) -> dict[str, Any]:
    return {
        "name": _title(title) or fields.text("name"),
        "phone": fields.text("phone"),
        "address": fields.text("address"),
        "website": first_url(fields.values.get("website")),
        "category": _known_word(fields.text("category"), CATEGORIES),
        "priority": _known_word(fields.text("priority"), PRIORITIES),
        "fit_score": parse_fit_score(fields.text("fit_score")),
        "reasoning": fields.text("reasoning"),
        "relevant_scenarios": fields.items("relevant_scenarios"),
        "available_24hr": parse_yes_no(fields.text("available_24hr")),
    }


def _location_heading(title: str) -> tuple[str | None, str | None] | None:
    """(priority, name) when the heading names a meeting location, else None."""
    text = _title(title)
    m = _LOCATION_HEADING.match(text) or _PRIORITY_HEADING.match(text)
    if m is None:
        return None
    word = (m.group("prio") or (m.groupdict().get("num") or "")).lower()
    name = (m.group("name") or "").strip(" *_\"'") or None
    return _PRIORITY_WORDS.get(word), name


def _location(
    title: str, heading: tuple[str | None, str | None] | None, fields: Fields, position: int
) -> dict[str, Any]:
    priority, name = heading if heading else (None, _title(title) or None)
    if priority is None:
        stated = _known_word(fields.text("priority"), LOCATION_PRIORITIES)
        if stated in LOCATION_PRIORITIES:
            priority = stated
        elif position < len(LOCATION_PRIORITIES):
            priority = LOCATION_PRIORITIES[position]
    details = fields.text("practical_details")
    return {
        "name": name or fields.text("name"),
        "priority": priority,
        "address": fields.text("address"),
        "description": fields.text("description"),
        "reasoning": fields.text("reasoning"),
        "suitable_for": fields.items("suitable_for") or fields.items("relevant_scenarios"),
        "practical_details": details,
        "has_parking": has_parking(details),
        "is_accessible": is_accessible(details),
    }


def _is_locations_section(title: str) -> bool:
    lowered = normalize_label(title)
    return "contact" not in lowered and bool(
        re.search(r"\b(?:meeting|gathering|rally|assembly|reunion|evacuation)\b", lowered)
    )


def _is_section_title(title: str) -> bool:
    return "contact" in title.lower() or _is_locations_section(title)


def parse_emergency_contacts(text: str) -> dict[str, list[dict[str, Any]]]:
    contacts: list[dict[str, Any]] = []
    locations: list[dict[str, Any]] = []
    in_locations = False
    for block in split_blocks(text)[1]:
        fields = parse_fields(block.lines, _canon)
        if block.level <= 2 or (not fields.values and _is_section_title(block.title)):
            in_locations = _is_locations_section(block.title)
        heading = _location_heading(block.title)
        has_location_fields = any(fields.has(name) for name in _LOCATION_FIELDS)
        if heading is not None and not (heading[1] or has_location_fields):
            heading = None  # "## Meeting Location" with nothing under it is a section title
        if heading is not None or (in_locations and has_location_fields):
            locations.append(_location(block.title, heading, fields, len(locations)))
        elif any(fields.has(name) for name in _CONTACT_MARKERS):
            contacts.append(_contact(block.title, fields))
    return {"contacts": contacts, "meeting_locations": locations}
