"""The README and docs/ stay true: every relative link reaches a file, every ``python -m lepton_bench`` command
of a bash block parses against the CLI (and names registered variants and grids), and every Python block
compiles and imports what it names from lepton_bench."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import textwrap

import pytest

from lepton_bench.cli import build_parser
from lepton_bench.grid.presets import GRIDS
from lepton_bench.variants import VARIANTS

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks(lang: str):
    for page in PAGES:
        for kind, body in BLOCK.findall(page.read_text()):
            if kind == lang:
                yield page, body


def commands():
    """(page, argv after ``python -m lepton_bench``) of every command in a bash block."""
    for page, body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            for part in re.split(r"&&|;|\|", line):
                words = shlex.split(part.split(">")[0].replace("&", " "))
                if words[:3] in (["python", "-m", "lepton_bench"], ["python3", "-m", "lepton_bench"]):
                    yield page, words[3:]


def test_the_pages_have_commands_and_python_to_check():
    assert len(PAGES) >= 10 and len(list(commands())) >= 20 and len(list(blocks("python"))) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_every_command_parses_and_names_registered_entries():
    parser = build_parser()
    for page, argv in commands():
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"{page.name}: python -m lepton_bench {' '.join(argv)}") from e
        if getattr(args, "variant", None):
            assert args.variant in VARIANTS, f"{page.name}: unknown variant {args.variant}"
        if getattr(args, "grid", None):
            assert args.grid in GRIDS, f"{page.name}: unknown grid {args.grid}"


def test_every_python_block_compiles_and_its_lepton_bench_imports_exist():
    for page, body in blocks("python"):
        tree = ast.parse(textwrap.dedent(body), filename=page.name)   # a block in a list item is indented
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lepton_bench"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"), f"{page.name}: {node.module}.{alias.name}"
