"""One generic name -> object registry, used for tasks, architectures, weightings,
samplers, variants and grids (timm's ``register_model`` / ``list_models`` style)."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import ClassVar, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; ``@reg.register("name")`` adds one, ``reg.get`` finds it.

    ``describe(obj)`` gives the description of an entry registered without help (default:
    ``describe_fields``, e.g. "architecture hard, weighting ew, sampler all" for a variant).
    """

    _all: ClassVar[weakref.WeakSet[Registry]] = weakref.WeakSet()   # every registry, for ``total``
    plugin_failures: ClassVar[list[str]] = []   # installed plugins that failed to load ("'name = module'
                                                # (distribution)"): unknown-name errors name them

    def __init__(self, kind: str, describe: Callable[[T], str] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._module: dict[str, str] = {}   # name -> the module that registered it
        self._describe = describe or describe_fields
        self._on_new: list[Callable[[str, T], None]] = []
        self._derived: set[str] = set()
        self._loaders: list[Callable[[], object]] = []
        Registry._all.add(self)

    @classmethod
    def total(cls) -> int:
        """Entries in all registries together (a plugin that adds none is told so)."""
        return sum(len(r) for r in list(cls._all))

    def register(self, name: str, obj: T | None = None, *, help: str | None = None, derived: bool = False,
                 credit: str | None = None):
        """Register ``obj`` under ``name``; without ``obj`` it works as a decorator. A ``derived`` entry
        (made from another registry's, e.g. ``hard-<weighting>``, and ``credit``-ed to the module of that
        entry) may be replaced once by the module it is credited to (a plugin's own ``hard-<its
        weighting>``); by no other."""
        module = credit or _caller_module()

        def add(o: T) -> T:
            if name in self._items and self._items[name] is not o:
                if name in self._derived and self._module[name] == module:
                    self._derived.discard(name)
                    del self._items[name]
                else:
                    raise ConfigError(f"{self.kind} {name!r} is already registered by {self._module[name]}; "
                                      f"{module} cannot register it again (pick another name)")
            new = name not in self._items
            self._items[name] = o
            if derived:
                self._derived.add(name)
            self._module.setdefault(name, module)
            self._help[name] = " ".join((help or _own_doc(o)).strip().split("\n\n")[0].split())  # 1st paragraph
            if new:
                for listen in list(self._on_new):
                    listen(name, o)
            return o

        return add(obj) if obj is not None else add

    def when_registered(self, listen: Callable[[str, T], None]) -> None:
        """Call ``listen(name, obj)`` for each entry registered so far and for each later one (how
        every weighting gets its ``hard-<name>`` variant, a plugin's included)."""
        self._on_new.append(listen)
        for name, o in list(self._items.items()):
            listen(name, o)

    def load_with(self, loader: Callable[[], object]) -> None:
        """Call ``loader`` once, before the first listing or a lookup of a name not (yet) registered
        (membership tests see what is registered so far): where entries
        are derived from a registry this one must not import at its own import (the weightings, which
        need torch, give the variants their ``hard-<name>``)."""
        self._loaders.append(loader)

    def _load(self) -> None:
        while self._loaders:
            self._loaders.pop(0)()

    def module(self, name: str) -> str:
        """The module that registered ``name`` (where a plugin's entry comes from)."""
        return self._module[name]

    def get(self, name: str) -> T:
        if name not in self._items:   # only a miss loads the derived entries (a lookup stays cheap)
            self._load()
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
        failed = f"; plugin {', '.join(self.plugin_failures)} failed to load" if self.plugin_failures else ""
        return f"unknown {self.kind} {name!r}{hint} ({known}){failed}"

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch ``pattern``."""
        self._load()
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def help(self, name: str) -> str:
        """The entry's one-line description: its help, else ``describe(obj)``."""
        if name not in self._items:
            self._load()
        if name not in self._items:
            return ""
        return self._help[name] or self._describe(self._items[name])

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._items))

    def __len__(self) -> int:
        self._load()
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())


def _own_doc(o: object) -> str:
    """``o.help``, else a docstring that describes ``o`` itself: a class's or function's own, not
    the class docstring an instance inherits, nor the signature dataclasses write for a class
    without one."""
    text = getattr(o, "help", None)
    if isinstance(text, str) and text:
        return text
    doc = getattr(o, "__doc__", None)
    if not doc or doc is type(o).__doc__:
        return ""   # an instance: its ``__doc__`` is its class's, which says nothing of this entry
    name = getattr(o, "__name__", None)
    if dataclasses.is_dataclass(o) and name and doc.startswith(f"{name}("):
        return ""   # the generated "Name(field: type, ...)" of a dataclass without a docstring
    return doc


def describe_fields(o: object) -> str:
    """A fallback description from a dataclass instance's short text fields other than name and
    help, e.g. "architecture hard, weighting ew, sampler all"."""
    if not dataclasses.is_dataclass(o) or isinstance(o, type):
        return ""
    parts = []
    for f in dataclasses.fields(o):
        value = getattr(o, f.name)
        if f.name not in ("name", "help") and isinstance(value, str) and value:
            parts.append(f"{f.name} {value}")
    return ", ".join(parts)


def _caller_module() -> str:
    """The module registering an entry: the first caller outside this file that is a module's
    top level or lies outside lepton_bench (so a plugin calling ``register_variant`` is named,
    not variants.py)."""
    f = sys._getframe(2)   # 0: here, 1: register
    first = None
    while f is not None:
        mod = f.f_globals.get("__name__", "?")
        if mod != __name__:
            first = first or mod
            if f.f_code.co_name == "<module>" or not mod.startswith("lepton_bench"):
                return mod
        f = f.f_back
    return first or "?"
