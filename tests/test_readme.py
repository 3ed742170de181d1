"""README's set-up section is what a newcomer copies: exactly two commands (the main job, the tests),
and CI (`.ci/run`) runs the test command as written there, character for character."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", setup, re.S)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_command_verbatim() -> None:
    commands = _setup_commands()
    assert len(commands) == 2, f"README's 'Set up' must hold exactly two bash commands, found {len(commands)}"
    main, tests = commands
    assert "\n" not in main and "\n" not in tests, "each set-up command is one line a newcomer copies"
    assert "benchmarks/suites/quick.yaml" in main and "--report" in main
    assert "pytest" in tests
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines, ".ci/run must run README's test command exactly as README writes it"


def test_the_main_command_names_a_shipped_suite() -> None:
    suite = re.search(r"boxbench run (\S+)", _setup_commands()[0])
    assert suite and (ROOT / suite.group(1)).is_file()
