"""Reading a selector's text before it runs: positions, names, and what of the device it uses.

Where this sits: ``corral.devices.cel`` compiles with an engine that has no type checker and
reports names, not positions, for the checks made here; this module finds where a name is
used (line/column), which identifiers are macro variables, and which device fields the
expression reads. When every use of ``device`` is a plain field read with literal keys
(``device.driver``, ``device.attributes["gpu.nvidia.com"].model``,
``device.capacity["gpu.nvidia.com"]["memory"]``), the answer depends on those fields only, so
``cel_cache`` keys answers by them: devices that differ only in, say, a ``uuid`` attribute the
selector never reads share one evaluation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""(?P<string>[rRbB]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))"""
    r"""|(?P<ident>[A-Za-z_]\w*)"""
)
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


def _key(group: str) -> str:
    return rf"""(?:"(?P<{group}1>[^"\\]*)"|'(?P<{group}2>[^'\\]*)')"""


_ACCESS = re.compile(
    r"\bdevice\s*\.\s*(?:"
    r"(?P<flag>driver|allowMultipleAllocations)\b"
    rf"|(?P<section>attributes|capacity)\s*\[\s*{_key('domain')}\s*\]"
    rf"(?:\s*\.\s*(?P<field>[A-Za-z_]\w*)|\s*\[\s*{_key('name')}\s*\])?"
    r")(?!\s*\()"
)

Reference = tuple[str, str, str]  # (section, domain, name)


@dataclass(frozen=True)
class Uses:
    """What an expression reads of the device.

    ``fields`` is None when some use is not a plain literal-keyed read (then the whole device
    matters); ``domains`` are the (section, domain) pairs looked up with a literal key.
    """

    fields: tuple[Reference, ...] | None
    domains: tuple[tuple[str, str], ...]


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of an offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def identifiers(text: str) -> list[tuple[str, int]]:
    """Identifier tokens outside string literals, with their offsets."""
    return [(m.group("ident"), m.start()) for m in _TOKEN.finditer(text) if m.group("ident")]


def first_use(text: str, name: str, *, call: bool) -> tuple[int, int]:
    """Where ``name`` is first used (as a call when ``call``); (1, 1) when not found."""
    for ident, offset in identifiers(text):
        called = text[offset + len(ident) :].lstrip().startswith("(")
        selected = text[:offset].rstrip().endswith(".")  # a field or a method, not a variable
        if ident == name and called == call and (call or not selected):
            return position(text, offset)
    return 1, 1


def macro_variables(text: str) -> set[str]:
    """Names bound by ``all/exists/exists_one/map/filter``."""
    return set(_MACRO_VARIABLE.findall(text))


def _either(match: re.Match[str], group: str) -> str | None:
    first = match.group(f"{group}1")
    return first if first is not None else match.group(f"{group}2")


def device_uses(text: str) -> Uses:
    strings = [m.span() for m in _TOKEN.finditer(text) if m.group("string")]

    def in_string(offset: int) -> bool:
        return any(start <= offset < end for start, end in strings)

    accesses = [m for m in _ACCESS.finditer(text) if not in_string(m.start())]
    uses = sum(1 for ident, _ in identifiers(text) if ident == "device")
    domains: set[tuple[str, str]] = set()
    fields: set[Reference] = set()
    plain = "device" not in macro_variables(text) and uses == len(accesses)
    for m in accesses:
        if m.group("flag"):
            continue
        domain = _either(m, "domain") or ""
        domains.add((m.group("section"), domain))
        name = m.group("field") or _either(m, "name")
        if name is None:
            plain = False  # the whole domain map is used (`in`, size(), passed on)
        else:
            fields.add((m.group("section"), domain, name))
    return Uses(tuple(sorted(fields)) if plain else None, tuple(sorted(domains)))
