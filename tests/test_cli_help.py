"""Every command of the three CLIs (``passgate``, ``passgated``, ``passgate-hub``) has a help line,
and --help reads as plain text (no docstring markup such as double backticks)."""

from __future__ import annotations

import argparse
import importlib

import pytest

Command = tuple[str, str | None, argparse.ArgumentParser]


def commands(parser: argparse.ArgumentParser, path: str = "") -> list[Command]:
    """Every command and group under ``parser``: (name, its help line, its own parser)."""
    found: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{path}{name}", helps.get(name), sub))
                found += commands(sub, f"{path}{name} ")
    return found


@pytest.mark.parametrize(("module", "some"), [
    ("passgate.cli", {"issue", "verify", "denylist build"}),
    ("passgated.cli", {"run", "simulate", "reset", "maintenance"}),
    ("passgate_hub.cli", {"serve", "issue", "gate create", "key rotate", "revoke"}),
])
def test_every_command_has_plain_help(module: str, some: set[str]) -> None:
    parser = importlib.import_module(module).build_parser()
    found = commands(parser)
    assert some <= {name for name, _, _ in found}
    assert [name for name, line, _ in found if not line] == []
    for text in [parser.format_help()] + [sub.format_help() for _, _, sub in found]:
        assert "``" not in text
