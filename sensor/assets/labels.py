"""Names and tags people give assets (as opposed to what the inventory infers from traffic).

An operator names a PLC ``Line 1 filler PLC`` and tags it ``line1``, ``safety``; a policy zone written
as ``{tag: line1}`` or ``{asset: "Line 1 filler PLC"}`` then holds it from the first packet it sends,
because the labels come from the store, not from behaviour the sensor has yet to see.

Labels are kept apart from the inferred inventory (store tables ``asset_labels`` and ``asset_label_tags``,
migration 0002), so the sensor writing an asset back never overwrites what a person gave it, and an
address can be labelled before it is ever seen (a new device about to be installed).

The values are operator input reaching a policy engine and a web page, so they are validated here, in
one place, for the CLI, the API and the store alike:

* a name: printable text without control characters, 1..``MAX_NAME_CHARS`` characters after trimming;
* a tag: ``MAX_TAG_CHARS`` at most, starting with a letter or digit, then letters, digits and ``_ . : / -``
  (no spaces: a tag is a word a YAML policy names), at most ``MAX_TAGS_PER_ASSET`` per asset;
* at most ``MAX_LABELLED_ASSETS`` labelled addresses in a store (labels outlive evicted assets, so this
  cap is what bounds them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sensor.errors import UserError

MAX_NAME_CHARS: Final = 128
MAX_TAG_CHARS: Final = 64
MAX_TAGS_PER_ASSET: Final = 32
MAX_LABELLED_ASSETS: Final = 100_000
TAG_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
_TAG: Final = re.compile(TAG_PATTERN)


class LabelError(UserError):
    """A name or tag that breaks the rules above (the API answers 422, the CLI exits 2)."""


@dataclass(frozen=True, slots=True)
class AssetLabels:
    """What people call one address: a name ("" for none) and tags (sorted, unique)."""

    ip: str
    name: str = ""
    tags: tuple[str, ...] = ()
    updated_at: float = 0.0
    updated_by: str = ""

    @property
    def empty(self) -> bool:
        return not self.name and not self.tags

    def values(self) -> set[str]:
        """The labels a policy zone may name: the name and every tag."""
        out = set(self.tags)
        if self.name:
            out.add(self.name)
        return out

    def to_record(self) -> dict[str, object]:
        return {
            "ip": self.ip,
            "name": self.name,
            "tags": list(self.tags),
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def check_address(ip: str) -> str:
    """The canonical text of an IP address (``10.0.0.01`` is refused; ``::FFFF:a.b.c.d`` is lowered)."""
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise LabelError(f"{ip[:64]!r} is not an IP address") from None


def check_name(name: str) -> str:
    """A trimmed, printable name of at most ``MAX_NAME_CHARS`` characters ("" clears the name)."""
    text = name.strip()
    if len(text) > MAX_NAME_CHARS:
        raise LabelError(f"a name has at most {MAX_NAME_CHARS} characters (got {len(text)})")
    if not text.isprintable():
        raise LabelError("a name may not hold control or other non-printable characters")
    return text


def check_tag(tag: str) -> str:
    if not tag:
        raise LabelError("a tag may not be empty")
    if len(tag) > MAX_TAG_CHARS:
        raise LabelError(f"a tag has at most {MAX_TAG_CHARS} characters: {tag[:MAX_TAG_CHARS]!r}...")
    if not _TAG.match(tag):
        raise LabelError(f"tag {tag!r}: letters, digits and _ . : / - only, starting with a letter or digit")
    return tag


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Valid, unique, sorted tags; more than ``MAX_TAGS_PER_ASSET`` is refused, not cut."""
    out: set[str] = set()
    for tag in tags:
        out.add(check_tag(tag))
        if len(out) > MAX_TAGS_PER_ASSET:
            raise LabelError(f"an asset has at most {MAX_TAGS_PER_ASSET} tags")
    return tuple(sorted(out))


__all__ = [
    "MAX_LABELLED_ASSETS",
    "MAX_NAME_CHARS",
    "MAX_TAGS_PER_ASSET",
    "MAX_TAG_CHARS",
    "TAG_PATTERN",
    "AssetLabels",
    "LabelError",
    "check_address",
    "check_name",
    "check_tag",
    "check_tags",
]
