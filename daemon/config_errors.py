"""Turn a msgspec validation error into "file: dotted.path: expected X, found Y".

msgspec reports dict entries as ``[...]`` without the key; this module walks the
target type alongside the raw TOML data to find which key failed, so the message
names the exact field a person has to fix.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi

_PATH = re.compile(r"^(?P<what>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\.\.\.)\]")
_MISSING = object()


class ConfigError(ValueError):
    """A configuration value is wrong; ``str()`` names the file, field, expectation and value."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = source, path, message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


def _struct_for(info: Any, raw: Any) -> Any:
    """The StructType of ``info`` matching ``raw`` (resolving tagged unions by tag)."""
    if isinstance(info, mi.StructType):
        return info
    if isinstance(info, mi.UnionType):
        for member in info.types:
            if isinstance(member, mi.StructType):
                tag_field = member.tag_field
                if tag_field is None or (isinstance(raw, dict) and raw.get(tag_field) == member.tag):
                    return member
    return None


def _inner(info: Any) -> Any:
    while isinstance(info, (mi.Metadata,)):
        info = info.type
    if isinstance(info, mi.UnionType):
        non_none = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(non_none) == 1:
            return _inner(non_none[0])
    return info


def _item_type(info: Any) -> Any:
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return info.item_type
    return None


def _locate(target: type, raw: Any, path: str) -> tuple[str, Any]:
    """Resolve msgspec's path (with ``[...]`` for dict keys) into a dotted path and the raw value."""
    info: Any = mi.type_info(target)
    value: Any = raw
    parts: list[str] = []
    for attr, index in _SEGMENT.findall(path):
        info = _inner(info)
        if attr:
            struct = _struct_for(info, value)
            field = next((f for f in struct.fields if f.encode_name == attr), None) if struct else None
            info = field.type if field else None
            value = value.get(attr, _MISSING) if isinstance(value, dict) else _MISSING
            parts.append(attr)
        elif index == "...":
            if not (isinstance(info, mi.DictType) and isinstance(value, dict)):
                parts.append("[...]")
                continue
            key_found = None
            for key, item in value.items():
                try:
                    msgspec.convert(item, _python_type(info.value_type), strict=False)
                except msgspec.ValidationError:
                    key_found = key
                    break
                except TypeError:
                    break
            if key_found is None:
                parts.append("[...]")
                value = _MISSING
            else:
                parts.append(str(key_found))
                value = value[key_found]
            info = info.value_type
        else:
            info = _item_type(info)
            i = int(index)
            value = value[i] if isinstance(value, list) and i < len(value) else _MISSING
            parts[-1:] = [f"{parts[-1]}[{i}]"] if parts else [f"[{i}]"]
    return ".".join(parts), value


def _python_type(info: Any) -> Any:
    """Rebuild a Python type from a msgspec.inspect type, for re-validation of one entry."""
    info = _inner(info)
    if isinstance(info, mi.StructType):
        return info.cls
    if isinstance(info, mi.UnionType):
        members = tuple(_python_type(t) for t in info.types)
        out = members[0]
        for m in members[1:]:
            out = out | m
        return out
    if isinstance(info, mi.DictType):
        return dict[_python_type(info.key_type), _python_type(info.value_type)]
    if isinstance(info, (mi.ListType, mi.VarTupleType)):
        return list[_python_type(info.item_type)]
    simple = {mi.FloatType: float, mi.IntType: int, mi.StrType: str, mi.BoolType: bool, mi.NoneType: type(None)}
    for cls, py in simple.items():
        if isinstance(info, cls):
            return py
    return Any


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    return f"{value!r} ({type(value).__name__})"


def explain(error: msgspec.ValidationError, target: type, raw: Any, source: str) -> ConfigError:
    """Build the ConfigError for ``error`` raised converting ``raw`` to ``target``."""
    text = str(error)
    m = _PATH.match(text)
    what, path = (m.group("what"), m.group("path")) if m else (text, "")
    dotted, value = _locate(target, raw, path)
    missing = re.match(r"Object missing required field `(\w+)`", what)
    unknown = re.match(r"Object contains unknown field `(\w+)`", what)
    expected = re.match(r"Expected `([^`]+)`(.*?)(?:, got `(\w+)`)?$", what)
    if missing:
        dotted = f"{dotted}.{missing.group(1)}" if dotted else missing.group(1)
        return ConfigError(source, dotted, "required field is missing")
    if unknown:
        dotted = f"{dotted}.{unknown.group(1)}" if dotted else unknown.group(1)
        return ConfigError(source, dotted, "unknown field (misspelt, or not valid here)")
    if expected:
        want = expected.group(1) + expected.group(2)
        return ConfigError(source, dotted, f"expected {want}, found {_describe(value)}")
    if what.startswith("Invalid value"):
        return ConfigError(source, dotted, f"{what.lower()}; found {_describe(value)}")
    return ConfigError(source, dotted, what)
