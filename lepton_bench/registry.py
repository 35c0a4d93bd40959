"""One generic name -> object registry, used for tasks, architectures, weightings,
samplers, variants and grids (timm's ``register_model`` / ``list_models`` style)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; ``@reg.register("name")`` adds one, ``reg.get`` finds it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, help: str | None = None):
        """Register ``obj`` under ``name``; without ``obj`` it works as a decorator."""

        def add(o: T) -> T:
            if name in self._items and self._items[name] is not o:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            doc = help or getattr(o, "help", None) or (getattr(o, "__doc__", None) or "")
            self._help[name] = " ".join(doc.strip().split("\n\n")[0].split())  # first paragraph
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if len(self._items) > 12:
            known = f"`lepton-bench list {self.kind}s` shows all {len(self._items)}"
        else:
            known = f"known: {', '.join(sorted(self._items)) or 'none'}"
        return f"unknown {self.kind} {name!r}{hint} ({known})"

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch ``pattern``."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

