"""Turn a msgspec validation error into "file: dotted.path: expected X, found Y".

msgspec reports dict entries as ``[...]`` without the key. To name the key, each
entry of that dict is decoded alone (the rest of the document unchanged): the
entry that reproduces the original error is the one at fault. The target type is
then walked along the resolved path to say what a field accepts (the allowed
values of a choice, the families of a tagged union).

Checks in ``__post_init__`` name their field by starting the message with
``"<field>: "``; the field is then appended to the path.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import msgspec
import msgspec.inspect as mi

_PATH = re.compile(r"^(?P<what>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\.\.\.)\]")
_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*): (.*)$", re.S)
_MISSING = object()


class ConfigError(ValueError):
    """A configuration value is wrong; ``str()`` names the file, field, expectation and value."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


def _set_at(root: Any, keys: list[Any], value: Any) -> None:
    node = root
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


def _locate(target: type, raw: Any, path: str, original: str) -> tuple[list[Any], Any]:
    """Resolve msgspec's path into the real keys and indices, and the raw value there."""
    keys: list[Any] = []
    value: Any = raw
    for attr, index in _SEGMENT.findall(path):
        if attr:
            keys.append(attr)
            value = value.get(attr, _MISSING) if isinstance(value, dict) else _MISSING
        elif index != "...":
            keys.append(int(index))
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else _MISSING
        else:
            found = None
            if isinstance(value, dict):
                for key, item in value.items():
                    if keys:
                        trial = copy.deepcopy(raw)
                        _set_at(trial, keys, {key: item})
                    else:
                        trial = {key: item}
                    try:
                        msgspec.convert(trial, target)
                    except msgspec.ValidationError as exc:
                        if str(exc) == original:
                            found = key
                            break
            if found is None:
                keys.append("[...]")
                value = _MISSING
            else:
                keys.append(found)
                value = value[found]
    return keys, value


def _dotted(keys: list[Any]) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _unwrap(info: Any) -> Any:
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        members = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(members) == 1:
            return _unwrap(members[0])
    return info


def _field_type(target: type, raw: Any, keys: list[Any]) -> tuple[Any, Any]:
    """(type info of the field at ``keys``, the struct or union that holds it)."""
    info: Any = mi.type_info(target)
    parent: Any = None
    value: Any = raw
    for key in keys:
        info = _unwrap(info)
        parent = info
        if isinstance(key, int):
            info = getattr(info, "item_type", None)
            value = value[key] if isinstance(value, list) and key < len(value) else None
            continue
        if isinstance(info, mi.DictType):
            info = info.value_type
        else:
            structs = info.types if isinstance(info, mi.UnionType) else (info,)
            struct = next((s for s in structs if isinstance(s, mi.StructType) and
                           (s.tag_field is None or (isinstance(value, dict) and value.get(s.tag_field) == s.tag))),
                          None)
            if isinstance(info, mi.UnionType) and struct is None:
                return info, parent
            field = next((f for f in struct.fields if f.encode_name == key), None) if struct else None
            info = field.type if field else None
        value = value.get(key) if isinstance(value, dict) else None
    return info, parent


def _choices(info: Any, parent: Any, last_key: Any) -> list[Any] | None:
    info = _unwrap(info)
    if isinstance(info, mi.LiteralType):
        return list(info.values)
    if isinstance(info, (mi.ListType, mi.VarTupleType)):
        return _choices(info.item_type, None, None)
    if isinstance(info, mi.UnionType) or isinstance(parent, mi.UnionType):
        union = info if isinstance(info, mi.UnionType) else parent
        tags = [s.tag for s in union.types if isinstance(s, mi.StructType) and s.tag_field == last_key]
        return tags or None
    return None


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    return f"{value!r} ({type(value).__name__})"


def explain(error: msgspec.ValidationError, target: type, raw: Any, source: str) -> ConfigError:
    """Build the ConfigError for ``error`` raised converting ``raw`` to ``target``."""
    text = str(error)
    m = _PATH.match(text)
    what, path = (m.group("what"), m.group("path")) if m else (text, "")
    keys, value = _locate(target, raw, path, text)
    dotted = _dotted(keys)

    def at(extra: str) -> str:
        return f"{dotted}.{extra}" if dotted else extra

    if mm := re.match(r"Object missing required field `(\w+)`", what):
        return ConfigError(source, at(mm.group(1)), "required field is missing")
    if mm := re.match(r"Object contains unknown field `(\w+)`", what):
        return ConfigError(source, at(mm.group(1)), "unknown field (misspelt, or not valid here)")
    if mm := re.match(r"Expected `([^`]+)`(.*?)(?:, got `(\w+)`)?$", what):
        return ConfigError(source, dotted, f"expected {mm.group(1)}{mm.group(2)}, found {_describe(value)}")
    if what.startswith(("Invalid value", "Invalid enum value")):
        info, parent = _field_type(target, raw, [k for k in keys if k != "[...]"])
        choices = _choices(info, parent, keys[-1] if keys else None)
        expected = f"one of {', '.join(repr(c) for c in choices)}" if choices else "a valid value"
        return ConfigError(source, dotted, f"expected {expected}, found {_describe(value)}")
    if "RFC3339" in what:
        kind = "a date (YYYY-MM-DD)" if "date" in what and "datetime" not in what else \
            "a date-time (YYYY-MM-DDTHH:MM:SSZ)"
        return ConfigError(source, dotted, f"expected {kind}, found {_describe(value)}")
    if mm := _FIELD_PREFIX.match(what):
        return ConfigError(source, at(mm.group(1)), mm.group(2))
    return ConfigError(source, dotted, what)
