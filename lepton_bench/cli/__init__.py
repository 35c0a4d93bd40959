"""Command line: the only package that parses arguments or prints for people.

``main`` loads the plugins (their entries appear in the help), parses, dispatches to a command and
turns every user error into one ``lepton-bench: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import os
import sys

from ..errors import LeptonError
from .commands import cmd_cache, cmd_list, cmd_prepare, cmd_report, cmd_run, cmd_worker
from .parser import KINDS, build_parser

__all__ = ["KINDS", "build_parser", "main"]


def _plugin_flags(argv: list[str]) -> tuple[list[str], bool]:
    """(``--plugin`` modules, ``--no-plugins``) from the global options before the command, read
    ahead of the parser, whose help lists the registries with the plugins' entries in them.
    Unique prefixes count, as argparse takes them (``--no``, ``--plug=m``)."""
    modules, skip = [], False
    it = iter(argv)
    for a in it:
        if not a.startswith("--") or a == "--":
            if a.startswith("-"):
                continue   # -h
            break          # the command: its own options follow
        flag, eq, value = a.partition("=")
        if len(flag) > 2 and "--no-plugins".startswith(flag):
            skip = True
        elif len(flag) > 2 and "--plugin".startswith(flag):
            modules.append(value if eq else next(it, ""))
    return [m for m in modules if m], skip


def _load_plugins(modules: list[str]) -> None:
    """Load the plugins; their warnings as one ``lepton-bench: warning: ...`` line each."""
    import warnings

    from ..plugins import PluginWarning, load_plugins

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PluginWarning)
            load_plugins(modules)
    finally:
        for w in caught:
            if issubclass(w.category, PluginWarning):
                print(f"lepton-bench: warning: {w.message}", file=sys.stderr)
            else:   # a plugin's own warnings, as Python would show them
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    from ..plugins import NO_PLUGINS_ENV

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        modules, no_plugins = _plugin_flags(argv)
        if no_plugins:
            os.environ[NO_PLUGINS_ENV] = "1"   # the grid's worker processes inherit it
        _load_plugins(modules)
        args = build_parser().parse_args(argv)
        code = {"run": cmd_run, "list": cmd_list, "report": cmd_report, "prepare": cmd_prepare,
                "cache": cmd_cache, "_worker": cmd_worker}[args.command](args)
        sys.stdout.flush()   # a reader that has gone (``| head``) shows here, not at exit
        return code
    except BrokenPipeError:
        # the Python docs' recipe: no more output, and no second error when Python flushes at exit
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):   # a stdout without a file descriptor (captured): nothing to flush
            pass
        return 1
    except LeptonError as e:
        print(f"lepton-bench: error: {_first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lepton-bench: interrupted; nothing was recorded for the unfinished run", file=sys.stderr)
        return 130
