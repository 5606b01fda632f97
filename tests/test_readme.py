"""The README's commands are real: every `robustness ...` line in it parses with the CLI as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from robustness.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    blocks = [block.replace("\\\n", " ") for block in blocks]  # join continued lines
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("robustness ")]


def test_every_readme_command_parses_with_the_real_cli() -> None:
    commands = _commands()
    assert any(c.startswith("robustness dashboard") for c in commands)
    for command in commands:
        argv = shlex.split(command)
        ctx = main.make_context("robustness", argv[1:])
        sub = main.get_command(ctx, argv[1])
        assert sub is not None, command
        sub.make_context(argv[1], argv[2:])  # raises on an unknown option or a bad value
