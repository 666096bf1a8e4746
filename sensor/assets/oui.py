"""MAC address vendor lookup from Wireshark's ``manuf`` database (installed with tshark).

The file maps IEEE registration blocks to organisations, one per line, tab separated::

    +-------------------------------+-----------+--------------------------------+
    | prefix                        | short     | long name (optional)           |
    +-------------------------------+-----------+--------------------------------+
    | 00:00:0C                      | Cisco     | Cisco Systems, Inc             |   MA-L, 24-bit
    | 00:1B:C5:00:00:00/36          | Converging| Converging Systems Inc.        |   MA-S, 36-bit
    | 70:B3:D5:00:00:00/28 (or /28) | ...       | ...                            |   MA-M, 28-bit
    +-------------------------------+-----------+--------------------------------+

Blocks are IEEE MA-L (24 bits), MA-M (28 bits) and MA-S/IAB (36 bits); the longest matching prefix wins.
The file is parsed once, lazily, on the first lookup (about 50,000 lines, a few hundred milliseconds), so
a sensor that never needs a vendor never pays for it. A missing file means "no vendor", never an error.

Addresses that name no manufacturer get none: the locally administered bit (IEEE 802 §8.2: second
least significant bit of the first octet, e.g. randomised or virtual MACs), group (multicast) addresses
and the all-zero address (the loopback interface's pseudo-Ethernet header).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

DEFAULT_MANUF_PATHS: Final = (
    Path("/usr/share/wireshark/manuf"),
    Path("/usr/local/share/wireshark/manuf"),
    Path("/opt/homebrew/share/wireshark/manuf"),
)
LOCALLY_ADMINISTERED: Final = 0x02
GROUP_ADDRESS: Final = 0x01
MAX_VENDOR_CHARS: Final = 128


def _mac_int(text: str) -> tuple[int, int] | None:
    """(value as a 48-bit int, number of hex digits given) of a MAC or prefix in any common notation."""
    digits = text.replace(":", "").replace("-", "").replace(".", "")
    if not digits or len(digits) > 12:
        return None
    try:
        value = int(digits, 16)
    except ValueError:
        return None
    return value << (4 * (12 - len(digits))), len(digits)


class OuiDatabase:
    """Longest-prefix lookup of a MAC's vendor; parses the manuf file on first use."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._by_bits: dict[int, dict[int, str]] | None = None
        self._cache: dict[str, str | None] = {}

    def _find_path(self) -> Path | None:
        if self.path is not None:
            return self.path if self.path.is_file() else None
        return next((p for p in DEFAULT_MANUF_PATHS if p.is_file()), None)

    def _load(self) -> dict[int, dict[int, str]]:
        tables: dict[int, dict[int, str]] = {}
        path = self._find_path()
        if path is None:
            log.info("no Wireshark manuf file found: MAC vendors will not be named")
            return tables
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            log.warning("cannot read %s: %s", path, error)
            return tables
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                continue
            prefix, _, bits_text = fields[0].strip().partition("/")
            parsed = _mac_int(prefix)
            if parsed is None:
                continue
            value, ndigits = parsed
            bits = int(bits_text) if bits_text.isdigit() else ndigits * 4
            if not 8 <= bits <= 48:
                continue
            name = (fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]).strip()
            key = value >> (48 - bits)
            tables.setdefault(bits, {})[key] = name[:MAX_VENDOR_CHARS]
        return tables

    def lookup(self, mac: str) -> str | None:
        """Vendor of ``mac`` (``aa:bb:cc:dd:ee:ff``), or None (unknown, local, group, missing database)."""
        try:
            return self._cache[mac]
        except KeyError:
            pass
        vendor = self._lookup(mac)
        if len(self._cache) < 65536:
            self._cache[mac] = vendor
        return vendor

    def _lookup(self, mac: str) -> str | None:
        parsed = _mac_int(mac)
        if parsed is None or parsed[1] != 12:
            return None
        value = parsed[0]
        first_octet = value >> 40
        if value == 0 or first_octet & (LOCALLY_ADMINISTERED | GROUP_ADDRESS):
            return None
        if self._by_bits is None:
            self._by_bits = self._load()
        for bits in sorted(self._by_bits, reverse=True):
            name = self._by_bits[bits].get(value >> (48 - bits))
            if name is not None:
                return name
        return None


_DEFAULT: OuiDatabase | None = None


def default_database() -> OuiDatabase:
    """The process-wide database (parsed once, on first lookup)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = OuiDatabase()
    return _DEFAULT
