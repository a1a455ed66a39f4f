"""A small YAML writer for the vamc configs, so the plugin needs no PyYAML.

It covers what the configs contain: nested mappings (key order kept), lists of scalars
(written in flow style, ``size: [256, 256]``, as VastModelZOO's older configs do), lists of
mappings (block style, ``- type: Resize``), and scalars (bool, int, float, str, None). Strings
that YAML would read as something else are written as JSON strings, which are valid YAML.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

_PLAIN = re.compile(r"^[A-Za-z_./~][A-Za-z0-9_./~+-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ValueError(f"cannot write {v} to a vamc config")
        return repr(v)
    text = str(v)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _emit(obj: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = scalar(str(k))
            if _is_scalar(v):
                out.append(f"{pad}{key}: {scalar(v)}")
            elif isinstance(v, Mapping):
                if not v:
                    out.append(f"{pad}{key}: {{}}")
                else:
                    out.append(f"{pad}{key}:")
                    _emit(v, indent + 2, out)
            elif isinstance(v, (list, tuple)):
                if all(_is_scalar(x) for x in v):
                    out.append(f"{pad}{key}: [{', '.join(scalar(x) for x in v)}]")
                else:
                    out.append(f"{pad}{key}:")
                    _emit(list(v), indent + 2, out)
            else:
                raise TypeError(f"cannot write {type(v).__name__} to YAML")
    elif isinstance(obj, list):
        for item in obj:
            if _is_scalar(item):
                out.append(f"{pad}- {scalar(item)}")
            elif isinstance(item, Mapping):
                sub: list[str] = []
                _emit(item, indent + 2, sub)
                first = sub[0][indent + 2:] if sub else "{}"
                out.append(f"{pad}- {first}")
                out.extend(sub[1:])
            else:
                raise TypeError("nested lists are not used in vamc configs")
    else:
        out.append(pad + scalar(obj))


def dump(obj: Mapping[str, Any], header: str = "") -> str:
    out: list[str] = [f"# {line}" if line else "#" for line in header.splitlines()]
    _emit(obj, 0, out)
    return "\n".join(out) + "\n"
