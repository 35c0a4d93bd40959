"""Plugins: third-party packages add tasks, architectures, weightings, samplers or variants.

A plugin is a module that registers entries when imported. It is found through the entry-point
group ``lepton_bench.plugins`` (installed packages; loaded by the CLI every time) or named with
``--plugin module.path``. An entry point may also name a callable, which is called once.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence

from .errors import ConfigError

ENTRY_POINT_GROUP = "lepton_bench.plugins"
_loaded: set[str] = set()


def load_plugins(modules: Sequence[str] = ()) -> list[str]:
    """Import every installed plugin and the named modules; returns what was newly loaded."""
    new = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in _loaded:
            continue
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"plugin {ep.name!r} ({ep.value}) failed to load: "
                              f"{type(e).__name__}: {e}") from None
        _loaded.add(ep.value)
        new.append(ep.value)
    for name in modules:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--plugin {name}: cannot import it ({e})") from None
        _loaded.add(name)
        new.append(name)
    return new
