"""Suricata rule text -> :class:`ParsedRule` (syntax only; meaning is compiled in ``keywords.py``).

A rule is one line (a trailing ``\\`` continues it)::

    action proto src_addr src_port direction dst_addr dst_port (option; option:value; ...)

* ``action``: alert, pass, drop, reject, rejectsrc, rejectdst, rejectboth (Suricata 7 rule format);
* ``direction``: ``->`` or ``<>``;
* options are ``name`` or ``name:value`` separated by ``;``. Inside a value, ``\\;``, ``\\"`` and
  ``\\\\`` are escapes and a quoted string may hold ``;``.

suricata-update writes a disabled rule as the rule text behind ``# ``; :func:`parse_rules_text`
keeps those with ``enabled=False`` so ``rules list`` can show them, and skips other comments.
Nothing here raises anything but :class:`RuleSyntaxError`, which carries ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ACTIONS = frozenset({"alert", "pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth"})
DIRECTIONS = frozenset({"->", "<>"})

# A commented-out rule as suricata-update writes it: "# alert ..." (one or more '#').
_DISABLED = re.compile(r"^#+\s*(?=(?:alert|pass|drop|reject|rejectsrc|rejectdst|rejectboth)\s)")


class RuleSyntaxError(ValueError):
    """A rule that cannot be parsed; the message starts with ``file:line:`` when known."""


@dataclass(frozen=True, slots=True)
class ParsedRule:
    action: str
    proto: str
    src: str
    src_port: str
    direction: str
    dst: str
    dst_port: str
    options: tuple[tuple[str, str | None], ...]
    raw: str
    enabled: bool = True
    file: str = ""
    line: int = 0
    sid: int = 0
    gid: int = 1
    rev: int = 1
    msg: str = ""
    metadata: dict[str, list[str]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return self.gid, self.sid

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else f"line {self.line}"

    def option(self, name: str) -> str | None:
        for key, value in self.options:
            if key == name:
                return value
        return None


def _split_options(body: str, where: str) -> list[tuple[str, str | None]]:
    """Split ``name:value; name; ...`` honouring quotes and backslash escapes."""
    options: list[tuple[str, str | None]] = []
    buf: list[str] = []
    in_quotes = False
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n:
            buf.append(ch)
            buf.append(body[i + 1])
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == ";" and not in_quotes:
            _add_option("".join(buf), options, where)
            buf.clear()
            i += 1
            continue
        buf.append(ch)
        i += 1
    if in_quotes:
        raise RuleSyntaxError(f"{where}: unterminated quoted string in options")
    if "".join(buf).strip():
        raise RuleSyntaxError(f"{where}: last option is not terminated by ';'")
    return options


def _add_option(text: str, options: list[tuple[str, str | None]], where: str) -> None:
    text = text.strip()
    if not text:
        return
    name, sep, value = text.partition(":")
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise RuleSyntaxError(f"{where}: bad option name {name!r}")
    options.append((name.lower(), value.strip() if sep else None))


def unquote(value: str) -> str:
    """The text of an option value: surrounding quotes removed, ``\\;`` ``\\"`` ``\\\\`` unescaped."""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    return re.sub(r'\\([;"\\:])', r"\1", value)


def _split_header(header: str, where: str) -> list[str]:
    """Header fields split on whitespace, keeping ``[a, b]`` lists (which may hold spaces) whole."""
    fields: list[str] = []
    buf: list[str] = []
    depth = 0
    for ch in header:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise RuleSyntaxError(f"{where}: unbalanced ']' in header")
        if ch.isspace() and depth == 0:
            if buf:
                fields.append("".join(buf))
                buf.clear()
            continue
        if not (ch.isspace() and depth > 0):
            buf.append(ch)
    if depth:
        raise RuleSyntaxError(f"{where}: unbalanced '[' in header")
    if buf:
        fields.append("".join(buf))
    return fields


def _int_option(value: str | None, name: str, where: str) -> int:
    if value is None or not value.strip().isdigit():
        raise RuleSyntaxError(f"{where}: {name} needs a non-negative integer, got {value!r}")
    return int(value.strip())


def parse_metadata(value: str) -> dict[str, list[str]]:
    """``metadata: key value, key value`` -> ``{key: [values]}`` (keys lower case)."""
    out: dict[str, list[str]] = {}
    for item in unquote(value).split(","):
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition(" ")
        out.setdefault(key.lower(), []).append(val.strip())
    return out


def parse_rule(text: str, file: str = "", line: int = 0, enabled: bool = True) -> ParsedRule:
    """Parse one rule. Raises :class:`RuleSyntaxError` with ``file:line`` in the message."""
    where = f"{file}:{line}" if file else f"line {line}"
    text = text.strip()
    open_at = text.find("(")
    if open_at < 0 or not text.endswith(")"):
        raise RuleSyntaxError(f"{where}: a rule needs an option block '( ... )' at its end")
    header = _split_header(text[:open_at], where)
    if len(header) != 7:
        raise RuleSyntaxError(
            f"{where}: header needs 7 fields (action proto src sport dir dst dport), got {len(header)}"
        )
    action, proto, src, sport, direction, dst, dport = header
    if action not in ACTIONS:
        raise RuleSyntaxError(f"{where}: unknown action {action!r}")
    if direction not in DIRECTIONS:
        raise RuleSyntaxError(f"{where}: direction must be '->' or '<>', got {direction!r}")
    options = _split_options(text[open_at + 1 : -1], where)
    sid = gid = rev = None
    msg = ""
    metadata: dict[str, list[str]] = {}
    for name, value in options:
        if name == "sid":
            sid = _int_option(value, "sid", where)
        elif name == "gid":
            gid = _int_option(value, "gid", where)
        elif name == "rev":
            rev = _int_option(value, "rev", where)
        elif name == "msg":
            msg = unquote(value or "")
        elif name == "metadata" and value:
            for key, vals in parse_metadata(value).items():
                metadata.setdefault(key, []).extend(vals)
    if sid is None:
        raise RuleSyntaxError(f"{where}: rule has no sid")
    return ParsedRule(
        action=action,
        proto=proto.lower(),
        src=src,
        src_port=sport,
        direction=direction,
        dst=dst,
        dst_port=dport,
        options=tuple(options),
        raw=text,
        enabled=enabled,
        file=file,
        line=line,
        sid=sid,
        gid=1 if gid is None else gid,
        rev=1 if rev is None else rev,
        msg=msg,
        metadata=metadata,
    )


def parse_rules_text(text: str, file: str = "") -> tuple[list[ParsedRule], list[RuleSyntaxError]]:
    """Every rule of a rules file, enabled or commented out, and the errors of the bad ones.

    A bad rule never stops the others from loading: it is returned as an error (and counted by the
    engine), the way Suricata reports a rule it cannot load and carries on.
    """
    rules: list[ParsedRule] = []
    errors: list[RuleSyntaxError] = []
    pending: list[str] = []
    start = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if pending:
            pending.append(stripped)
        else:
            if not stripped:
                continue
            start = lineno
            pending = [stripped]
        if stripped.endswith("\\"):
            pending[-1] = pending[-1][:-1]
            continue
        joined = " ".join(pending).strip()
        pending = []
        enabled = True
        if joined.startswith("#"):
            m = _DISABLED.match(joined)
            if m is None:
                continue  # an ordinary comment
            joined = joined[m.end() :]
            enabled = False
        try:
            rules.append(parse_rule(joined, file, start, enabled))
        except RuleSyntaxError as exc:
            if enabled:  # a commented-out line that does not parse is just a comment
                errors.append(exc)
    if pending:
        errors.append(RuleSyntaxError(f"{file}:{start}: rule continues past the end of the file"))
    return rules, errors
