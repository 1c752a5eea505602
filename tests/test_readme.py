"""CI runs exactly the README's two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_two_setup_commands_and_ci_runs_them_verbatim() -> None:
    commands = readme_setup_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    install, tests = commands
    assert "torch==2.13.0" in install and "pytest" in tests
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci_lines and tests in ci_lines
