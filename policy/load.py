"""Reading a policy file: YAML in, a validated :class:`~policy.model.Policy` out, or ``file:line`` errors.

The YAML is *composed* (PyYAML's node graph, which keeps the line of every key and value) and the
plain data is built from the nodes by hand, recording the line of each path
(``("conduits", 0, "allow", 1, "functions", 2)``). pydantic validates the data; every error it
reports carries the path of the offending key or value, which the line map turns into
``policy.yaml:17: conduits[0].allow[1].functions[2]: unknown Modbus function name 'bogus'``. The checks
pydantic cannot make alone (duplicate ids, conduits naming unknown zones, duplicate keys, which
PyYAML silently merges) are made here with the same paths.

A policy file is configuration written by a person, but it is still read with care: the size, the
nesting depth and the number of nodes (alias expansion, the "billion laughs") are capped.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from policy.model import ModbusAllow, MqttAllow, OpcUaAllow, OtherAllow, Policy
from sensor.errors import UserError

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_NODES = 500_000
MAX_DEPTH = 64

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str


class PolicyError(UserError):
    """A policy file that cannot be used; ``str()`` is one ``file:line: message`` line per problem."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(f"{source}:{p.line}: {p.message}" for p in self.problems))


class _Builder:
    """Turns a composed YAML node graph into plain data, remembering where each path is."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.lines: dict[PathKey, int] = {}
        self.problems: list[Problem] = []
        self.nodes = 0

    def build(self, node: yaml.Node, path: PathKey, depth: int = 0) -> Any:
        self.nodes += 1
        line = node.start_mark.line + 1
        self.lines.setdefault(path, line)
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _TooComplex(line)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(Problem(key_node.start_mark.line + 1, "a key must be a plain value"))
                    continue
                key = self.loader.construct_object(key_node)
                if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        Problem(key_node.start_mark.line + 1, "merge keys ('<<') are not supported")
                    )
                    continue
                key_line = key_node.start_mark.line + 1
                if key in out:
                    self.problems.append(
                        Problem(
                            key_line,
                            f"{_dotted((*path, key))}: duplicate key {key!r} (first on line "
                            f"{self.lines.get((*path, key), '?')})",
                        )
                    )
                    continue
                self.lines[(*path, key)] = key_line
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)


class _TooComplex(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


_MODELS: dict[str, type[BaseModel]] = {
    "modbus": ModbusAllow,
    "opcua": OpcUaAllow,
    "mqtt": MqttAllow,
    "other": OtherAllow,
    "address": BaseModel,
    "asset": BaseModel,
}


def _locate(data: Any, loc: Sequence[str | int], lines: dict[PathKey, int]) -> tuple[PathKey, int]:
    """Map a pydantic error location onto the YAML path and line.

    Union tags (``modbus``, ``address``...) are components pydantic adds that the data does not
    have: they are skipped. The deepest path present in the file gives the line.
    """
    path: list[str | int] = []
    cur = data
    for part in loc:
        in_dict = isinstance(cur, dict) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if in_dict or in_list:
            path.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and part not in _MODELS:
            # a missing or unknown key: report it at its parent
            path.append(part)
            break
    key = tuple(path)
    while key and key not in lines:
        key = key[:-1]
    return tuple(path), lines.get(key, 1)


def _allowed_keys(data: Any, loc: Sequence[str | int]) -> list[str]:
    """Keys the model at ``loc`` accepts (for 'did you mean')."""
    model: type[BaseModel] | None = Policy
    cur: Any = data
    for part in loc[:-1]:
        if model is None:
            return []
        if isinstance(part, str) and part in _MODELS:
            model = _MODELS[part] if _MODELS[part] is not BaseModel else None
            continue
        if isinstance(part, int):
            cur = cur[part] if isinstance(cur, list) and part < len(cur) else None
            continue
        field = model.model_fields.get(part)
        if field is None:
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        cur = cur.get(part) if isinstance(cur, dict) else None
        model = _inner_model(field.annotation)
    if model is None:
        return []
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _message(err: Any, data: Any, path: PathKey) -> str:
    kind = err["type"]
    where = _dotted(path)
    if kind == "extra_forbidden":
        key = err["loc"][-1]
        allowed = _allowed_keys(data, err["loc"])
        hint = difflib.get_close_matches(str(key), allowed, n=1)
        text = f"{where}: unknown key {key!r}"
        if hint:
            text += f" (did you mean {hint[0]!r}?)"
        elif allowed:
            text += f" (expected one of: {', '.join(allowed)})"
        return text
    if kind == "missing":
        return f"{where}: required key missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{where}: {msg}, got {err.get('input')!r}"
    if kind in {
        "int_type",
        "int_parsing",
        "string_type",
        "list_type",
        "dict_type",
        "model_type",
        "bool_type",
    }:
        return f"{where}: {msg}, got {err.get('input')!r}"
    return f"{where}: {msg}"


def _cross_checks(data: dict[str, Any], lines: dict[PathKey, int]) -> list[Problem]:
    """What the schema alone cannot say: unique ids, conduit ends that exist.

    Runs on the raw data (best effort on malformed parts) so that one run reports every problem.
    """
    problems: list[Problem] = []

    def line(*path: str | int) -> int:
        key: PathKey = tuple(path)
        while key and key not in lines:
            key = key[:-1]
        return lines.get(key, 1)

    def items(name: str) -> list[tuple[int, dict[str, Any]]]:
        value = data.get(name)
        if not isinstance(value, list):
            return []
        return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]

    zone_ids: dict[str, int] = {}
    for i, zone in items("zones"):
        zone_id = zone.get("id")
        if not isinstance(zone_id, str):
            continue
        if zone_id in zone_ids:
            problems.append(
                Problem(
                    line("zones", i, "id"),
                    f"zones[{i}].id: duplicate zone id {zone_id!r} (first on line {zone_ids[zone_id]})",
                )
            )
        else:
            zone_ids[zone_id] = line("zones", i, "id")
    conduit_ids: dict[str, int] = {}
    for i, conduit in items("conduits"):
        conduit_id = conduit.get("id")
        if isinstance(conduit_id, str):
            if conduit_id in conduit_ids:
                problems.append(
                    Problem(
                        line("conduits", i, "id"),
                        f"conduits[{i}].id: duplicate conduit id {conduit_id!r} "
                        f"(first on line {conduit_ids[conduit_id]})",
                    )
                )
            else:
                conduit_ids[conduit_id] = line("conduits", i, "id")
        for key in ("from", "to"):
            zone_id = conduit.get(key)
            if isinstance(zone_id, str) and zone_id not in zone_ids:
                hint = difflib.get_close_matches(zone_id, list(zone_ids), n=1)
                problems.append(
                    Problem(
                        line("conduits", i, key),
                        f"conduits[{i}].{key}: unknown zone {zone_id!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                    )
                )
    return problems


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy text; raises :class:`PolicyError` listing every problem with its line."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise PolicyError(source, [Problem(1, f"file larger than {MAX_FILE_BYTES} bytes")])
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # control characters are refused before parsing starts
        line = text[: exc.position].count("\n") + 1
        raise PolicyError(source, [Problem(line, f"YAML error: {exc.reason}")]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            what = exc.problem or exc.context or "invalid YAML"
            raise PolicyError(source, [Problem(line, f"YAML syntax error: {what}")]) from None
        except yaml.YAMLError as exc:
            raise PolicyError(source, [Problem(1, f"YAML error: {exc}")]) from None
        except RecursionError:
            # PyYAML's parser and composer recurse once per nesting level, before MAX_DEPTH can be
            # checked: "[[[[..." a few thousand deep must be a problem, not a traceback.
            raise PolicyError(source, [Problem(1, "policy too large or too deeply nested")]) from None
        if root is None:
            raise PolicyError(source, [Problem(1, "empty policy file")])
        builder = _Builder(loader)
        try:
            data = builder.build(root, ())
        except _TooComplex as exc:
            raise PolicyError(source, [Problem(exc.line, "policy too large or too deeply nested")]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise PolicyError(source, [Problem(mark.line + 1 if mark else 1, f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise PolicyError(source, [Problem(1, "a policy file is a mapping (version, zones, conduits...)")])
    problems = list(builder.problems)
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            path, line = _locate(data, err["loc"], builder.lines)
            problems.append(Problem(line, _message(err, data, path)))
    problems += _cross_checks(data, builder.lines)
    if problems or policy is None:
        raise PolicyError(source, problems)
    return policy


def load_policy_with_lines(path: Path) -> tuple[Policy, dict[PathKey, int]]:
    """Load a file; also return the line map (for lint messages)."""
    text = _read(path)
    policy = parse_policy(text, str(path))
    return policy, line_map(text)


def line_map(text: str) -> dict[PathKey, int]:
    """The path -> line map of already valid policy text."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        builder = _Builder(loader)
        if root is not None:
            builder.build(root, ())
        return builder.lines
    finally:
        loader.dispose()


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PolicyError(str(path), [Problem(1, f"file larger than {MAX_FILE_BYTES} bytes")])
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read policy: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(str(path), [Problem(line, "not UTF-8 text")]) from None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; raises :class:`PolicyError` (a UserError: exit 2 in the CLI)."""
    return parse_policy(_read(path), str(path))
