"""Versioned prompt templates shipped as package data.

Files are named ``<name>.v<version>.txt`` (a template) or ``<name>.v<version>.json`` (a list of
strings, e.g. the DES question pool). :func:`load` returns the highest version unless a version
is named (``load("tag_extraction.v1")``). Templates use ``$name`` placeholders
(:class:`string.Template`), so JSON braces in them need no escaping. A template may be split
into chat messages by lines ``[system]`` and ``[user]``.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["Prompt", "load", "available", "question_pool"]

_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<ver>\d+)\.(?P<ext>txt|json)$")
_SECTION = re.compile(r"^\[(system|user|assistant)\]\s*$")


@dataclass(frozen=True)
class Prompt:
    """A template: ``name``, ``version`` (``"v1"``), ``text`` (raw file text)."""

    name: str
    version: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.name}.{self.version}"

    def render(self, **values: Any) -> str:
        """The text with ``$placeholders`` filled (a missing value raises ``KeyError``)."""
        return string.Template(self.text).substitute({k: str(v) for k, v in values.items()})

    def messages(self, **values: Any) -> list[dict[str, str]]:
        """Chat messages ``[{"role", "content"}]`` from the ``[system]``/``[user]`` sections."""
        text = self.render(**values)
        out: list[dict[str, str]] = []
        role, buf = "user", []  # type: str, list[str]
        for line in text.splitlines():
            m = _SECTION.match(line)
            if m:
                if "".join(buf).strip():
                    out.append({"role": role, "content": "\n".join(buf).strip()})
                role, buf = m.group(1), []
            else:
                buf.append(line)
        if "".join(buf).strip():
            out.append({"role": role, "content": "\n".join(buf).strip()})
        return out

    def items(self) -> list[str]:
        """The list of a ``.json`` prompt (e.g. the question pool)."""
        data = json.loads(self.text)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ValueError(f"prompt {self.id} is not a list of strings")
        return data


@lru_cache(maxsize=None)
def _index() -> dict[str, dict[int, str]]:
    table: dict[str, dict[int, str]] = {}
    for entry in resources.files(__name__).iterdir():
        m = _FILE.match(entry.name)
        if m:
            table.setdefault(m["name"], {})[int(m["ver"])] = entry.name
    return table


def available() -> dict[str, list[str]]:
    """Prompt names and their versions."""
    return {name: [f"v{v}" for v in sorted(vs)] for name, vs in sorted(_index().items())}


@lru_cache(maxsize=None)
def load(name: str) -> Prompt:
    """The prompt ``name`` (highest version) or ``name.vN`` (that version); KeyError otherwise."""
    base, _, ver = name.partition(".v")
    versions = _index().get(base)
    if not versions:
        raise KeyError(f"no prompt named {base!r}; available: {', '.join(sorted(_index()))}")
    if ver:
        if not ver.isdigit() or int(ver) not in versions:
            raise KeyError(f"prompt {base!r} has no version v{ver}; has {available()[base]}")
        v = int(ver)
    else:
        v = max(versions)
    text = resources.files(__name__).joinpath(versions[v]).read_text(encoding="utf-8")
    return Prompt(name=base, version=f"v{v}", text=text)


def question_pool(name: str = "des_questions") -> list[str]:
    """The DES question pool (15 questions)."""
    return load(name).items()
