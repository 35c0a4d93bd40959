"""Plugins: third-party packages add tasks, architectures, weightings, samplers or variants.

A plugin is a module that registers entries when imported. It is found through the entry-point
group ``lepton_bench.plugins`` (installed packages; loaded by the CLI every time, unless
``--no-plugins`` or ``LEPTON_BENCH_NO_PLUGINS=1``) or named with ``--plugin module.path``. An entry
point may also name a callable, which is called once.

An installed plugin that fails to import is skipped with a ``PluginWarning`` naming its
distribution and entry point, so commands that do not need it still work; an unknown-name error
then says that it failed. A module named with ``--plugin`` that fails is an error: it was asked for.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import warnings
from collections.abc import Sequence

from .errors import ConfigError
from .registry import Registry

ENTRY_POINT_GROUP = "lepton_bench.plugins"
NO_PLUGINS_ENV = "LEPTON_BENCH_NO_PLUGINS"   # set (e.g. 1): skip the installed plugins
_loaded: set[str] = set()   # entry-point values and module names tried in this process


class PluginWarning(UserWarning):
    """An installed plugin that failed to load, or a plugin that registered nothing."""


def installed_plugins_skipped() -> bool:
    """Whether ``LEPTON_BENCH_NO_PLUGINS`` asks to skip the installed plugins (1, true, yes)."""
    return os.environ.get(NO_PLUGINS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def entry_point_name(ep: importlib.metadata.EntryPoint) -> str:
    """``'name = value' (distribution)``: what a user needs to find a plugin to fix or uninstall."""
    dist = getattr(ep, "dist", None)
    dist_name = getattr(dist, "name", None) if dist is not None else None
    return f"'{ep.name} = {ep.value}'" + (f" ({dist_name})" if dist_name else "")


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_plugins(modules: Sequence[str] = (), *, installed: bool | None = None) -> list[str]:
    """Import the installed plugins and the named modules; returns what was newly loaded.

    ``installed``: load the entry points of ``lepton_bench.plugins`` (None: unless
    ``LEPTON_BENCH_NO_PLUGINS`` is set). Each is tried once per process.
    """
    if installed is None:
        installed = not installed_plugins_skipped()
    new = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if installed else ():
        if ep.value in _loaded:
            continue
        _loaded.add(ep.value)   # tried once: a broken plugin warns once, not at every load
        name = entry_point_name(ep)
        before, fresh = Registry.total(), ep.module not in sys.modules
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as e:   # anything: a broken plugin must not stop the commands that do not need it
            Registry.plugin_failures.append(name)
            warnings.warn(f"installed plugin {name} failed to load and is skipped ({_why(e)}); "
                          f"--no-plugins or {NO_PLUGINS_ENV}=1 skips installed plugins",
                          PluginWarning, stacklevel=2)
            continue
        new.append(ep.value)
        if Registry.total() == before and (fresh or callable(obj)):
            warnings.warn(f"installed plugin {name} registered nothing (no task, variant, weighting, ...)",
                          PluginWarning, stacklevel=2)
    for name in modules:
        if name in _loaded:
            continue
        before, fresh = Registry.total(), name not in sys.modules
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--plugin {name}: cannot import it ({e})") from None
        _loaded.add(name)
        new.append(name)
        if Registry.total() == before and fresh:
            warnings.warn(f"--plugin {name} registered nothing (no task, variant, weighting, ...); "
                          f"is it the module that registers them?", PluginWarning, stacklevel=2)
    return new
