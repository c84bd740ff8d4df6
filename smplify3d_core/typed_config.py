"""Typed configuration sections: dataclasses whose fields carry their documentation and range.

Every tunable of the frame path is a field of a small dataclass declared with :func:`setting`
(default, one-line description, optional numeric range or allowed values). The same metadata
drives four things, so a setting has one name and one description everywhere:

* loading YAML (:func:`section_from_dict`: nested mappings, unknown keys are an error naming
  the valid ones, values checked against type, range and choices);
* the flat dotted names used as ROS parameters and as ``--set name=value`` on the command line
  (:func:`flatten_fields`: ``proposals.cluster_distance``);
* the ROS parameter descriptors (the node builds them from :class:`FieldSpec`);
* the documented YAML files in ``config/`` (a test checks they list every field).

No ROS import here: the ROS layer turns :class:`FieldSpec` into ``ParameterDescriptor``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key, the value and what is allowed."""


def setting(default, doc: str, *, min: Optional[float] = None, max: Optional[float] = None,
            choices: Optional[Sequence[str]] = None, nullable: bool = False):
    """A dataclass field with its documentation.

    default: the default value (tuples for fixed-size vectors); doc: one line shown by
    ``ros2 param describe`` and ``--help``; min/max: inclusive numeric range; choices: allowed
    strings; nullable: None (YAML ``null``, a ROS empty string) is allowed too.
    """
    metadata = {"doc": doc, "min": min, "max": max, "choices": tuple(choices) if choices else None,
                "nullable": nullable}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls, doc: str):
    """A nested section field (a dataclass of settings) with its documentation."""
    return field(default_factory=cls, metadata={"doc": doc, "section": True})


@dataclass(frozen=True)
class FieldSpec:
    """One setting, flattened: ``name`` (dotted), ``kind`` (bool/int/float/str/float_list), default,
    doc, range and choices, and ``path`` (the attribute names from the root section)."""

    name: str
    path: Tuple[str, ...]
    kind: str
    default: Any
    doc: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None
    nullable: bool = False

    def allowed(self) -> str:
        """What the setting accepts, in words (for error messages)."""
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.min is not None or self.max is not None:
            lo = "-inf" if self.min is None else f"{self.min:g}"
            hi = "inf" if self.max is None else f"{self.max:g}"
            text = f"a {self.kind} in [{lo}, {hi}]"
        else:
            text = {"float_list": "a list of numbers"}.get(self.kind, f"a {self.kind}")
        return text + (" or null" if self.nullable else "")


def _kind_of(annotation) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace("typing.", "").replace("Optional[", "").rstrip("]")
    if text.startswith(("Tuple", "tuple", "List", "list")):
        return "float_list"
    for kind in ("bool", "int", "float", "str"):
        if text == kind:
            return kind
    raise TypeError(f"unsupported setting type {annotation!r}")


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def flatten_fields(cls, prefix: str = "", path: Tuple[str, ...] = ()) -> List[FieldSpec]:
    """Every setting of dataclass ``cls`` and its sections, depth first, with dotted names."""
    hints = _hints(cls)
    specs: List[FieldSpec] = []
    for f in fields(cls):
        name = f"{prefix}{f.name}"
        if f.metadata.get("section"):
            specs += flatten_fields(hints[f.name], f"{name}.", path + (f.name,))
            continue
        if "doc" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting(): it has no documentation")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        meta = f.metadata
        specs.append(FieldSpec(name, path + (f.name,), _kind_of(hints[f.name]), default, meta["doc"], meta["min"],
                               meta["max"], meta["choices"], meta["nullable"]))
    return specs


def check_value(spec: FieldSpec, value, source: str = "config"):
    """``value`` converted to the setting's type; ConfigError naming the setting when it does not fit."""
    def fail(why: str):
        raise ConfigError(f"{source}: {spec.name} = {value!r} is invalid ({why}); allowed: {spec.allowed()}")

    if value is None:
        if spec.nullable:
            return None
        fail("null is not allowed")
    if spec.kind == "bool":
        if not isinstance(value, bool):
            fail("not a boolean")
        return value
    if spec.kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("not a number")
        if spec.kind == "int" and float(value) != int(value):
            fail("not an integer")
        number = int(value) if spec.kind == "int" else float(value)
        if number != number:
            fail("NaN")
        if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
            fail("out of range")
        return number
    if spec.kind == "str":
        if not isinstance(value, str):
            fail("not a string")
        if spec.choices and value not in spec.choices:
            fail("not an allowed value")
        return value
    values = list(value) if isinstance(value, (list, tuple)) else fail("not a list")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        fail("not a list of numbers")
    if isinstance(spec.default, tuple) and len(values) != len(spec.default):
        fail(f"needs {len(spec.default)} numbers")
    return tuple(float(v) for v in values)


def section_from_dict(cls, data: Optional[dict], source: str = "config", prefix: str = ""):
    """An instance of dataclass ``cls`` from a nested mapping; missing keys keep their defaults.

    Unknown keys raise ConfigError listing the valid ones; every value goes through :func:`check_value`.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the file'} must be a mapping of keys to values, "
                          f"got {type(data).__name__}")
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f" under {prefix.rstrip('.')!r}" if prefix else ""
        raise ConfigError(f"{source}: unknown keys {unknown}{where}; valid keys are {sorted(known)}")
    specs = {s.path[-1]: s for s in flatten_fields(cls, prefix) if len(s.path) == 1}
    values = {}
    for key, value in data.items():
        f = known[key]
        if f.metadata.get("section"):
            values[key] = section_from_dict(hints[key], value, source, f"{prefix}{key}.")
        else:
            values[key] = check_value(specs[key], value, source)
    return cls(**values)


def section_to_dict(instance) -> dict:
    """The nested mapping of a settings dataclass (tuples as lists, as YAML writes them)."""
    out = {}
    for f in fields(instance):
        value = getattr(instance, f.name)
        if is_dataclass(value):
            out[f.name] = section_to_dict(value)
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def flat_values(instance) -> Dict[str, Any]:
    """{dotted name: value} of every setting of a settings dataclass instance."""
    out = {}
    for spec in flatten_fields(type(instance)):
        value = instance
        for part in spec.path:
            value = getattr(value, part)
        out[spec.name] = value
    return out


def with_overrides(instance, overrides: Dict[str, Any], source: str = "overrides"):
    """A copy of ``instance`` with dotted-name settings replaced (each value checked)."""
    specs = {s.name: s for s in flatten_fields(type(instance))}
    unknown = sorted(set(overrides) - set(specs))
    if unknown:
        raise ConfigError(f"{source}: unknown settings {unknown}; valid names are {sorted(specs)}")
    nested = section_to_dict(instance)
    for name, value in overrides.items():
        checked = check_value(specs[name], value, source)
        target = nested
        for part in specs[name].path[:-1]:
            target = target[part]
        target[specs[name].path[-1]] = list(checked) if isinstance(checked, tuple) else checked
    return section_from_dict(type(instance), nested, source)


def parse_override(text: str, source: str = "--set") -> Tuple[str, Any]:
    """``name=value`` (value parsed as YAML: numbers, true/false, null, [lists]) -> (name, value)."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"{source} {text!r}: expected name=value, e.g. proposals.cluster_distance=0.3")
    name, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} {text!r}: the value is not valid YAML ({error})") from error
    return name.strip(), value


#: Column of the ``#`` that starts a setting's comment in the generated YAML files.
YAML_COMMENT_COLUMN = 53


def yaml_scalar(value) -> str:
    """One setting's value as YAML flow text (``""`` for an empty string, ``[a, b]`` for a vector)."""
    import json

    import yaml

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    plain = text and yaml.safe_load(text) == text and not any(c in text for c in "#:{}[],&*!|>'\"%@`")
    return text if plain else json.dumps(text)


def settings_yaml_lines(cls, indent: str = "") -> List[str]:
    """The lines of a YAML block listing every setting of dataclass ``cls`` with its default and its
    documentation as a comment; sections become nested blocks after a blank line."""
    hints = _hints(cls)
    lines: List[str] = []
    for f in fields(cls):
        if f.metadata.get("section"):
            lines += ["", f"{indent}{f.name}:  # {f.metadata['doc']}"]
            lines += settings_yaml_lines(hints[f.name], indent + "  ")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        entry = f"{indent}{f.name}: {yaml_scalar(default)}"
        lines.append(f"{entry.ljust(YAML_COMMENT_COLUMN - 1)} # {f.metadata['doc']}")
    return lines
