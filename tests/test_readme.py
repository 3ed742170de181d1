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


def test_readmes_result_tables_are_the_committed_reports() -> None:
    """README's headline and verdict tables are copied from the committed study report by
    `boxbench report RUN --readme README.md`, never pasted: a README edited by hand, or a report
    regenerated without refreshing README, fails here."""
    from boxbench.reports.readme import regions, stale_regions

    marked = regions(ROOT / "README.md")
    assert {r.title for r in marked} >= {"Headline", "Verdicts"} and all(len(r.body) > 2 for r in marked)
    assert stale_regions(ROOT / "README.md") == [], "refresh with: boxbench report results/study_cpu --select-best-from results/calibrate_cpu --readme README.md"


def test_marked_tables_fill_from_their_report_and_bad_markers_are_one_line(tmp_path: Path) -> None:
    import pytest

    from helpers import run_cli
    from boxbench.core.errors import UserError
    from boxbench.reports.readme import fill, stale_regions
    from boxbench.reports.table import Table

    run = tmp_path / "run"
    run.mkdir()
    first = Table("Headline: the answer", ["method", "accuracy %"], rows=[["lora", "88.6"]], groups=[(0, "sst2")], note="a note")
    other = Table("Costs", ["method", "s"], rows=[["lora", "575"]])
    (run / "report.md").write_text("# Report\n\n" + first.markdown() + "\n" + other.markdown())
    doc = tmp_path / "README.md"
    doc.write_text('Prose.\n\n<!-- boxbench: run/report.md "Headline" -->\n| old |\n<!-- /boxbench -->\n\nMore prose.\n')
    assert stale_regions(doc) == [f"{doc}:3"]
    assert fill(doc) == 1 and fill(doc) == 0 and stale_regions(doc) == []
    assert doc.read_text() == ('Prose.\n\n<!-- boxbench: run/report.md "Headline" -->\n| method | accuracy % |\n|---|---|\n'
                               "| **sst2** | |\n| lora | 88.6 |\n<!-- /boxbench -->\n\nMore prose.\n")  # the table only, prose kept
    for text, error in [('<!-- boxbench: run/report.md "Nothing" -->\n<!-- /boxbench -->\n', r"has no table titled 'Nothing'"),
                        ('<!-- boxbench: gone/report.md "Headline" -->\n<!-- /boxbench -->\n', r"report .*gone/report.md not found; write it first"),
                        ('<!-- boxbench: run/report.md "Headline" -->\n| x |\n', r":1: region not closed; end it with <!-- /boxbench -->$"),
                        ("<!-- boxbench: run/report.md Headline -->\n", r":1: malformed marker; write <!-- boxbench: PATH/report.md")]:
        doc.write_text(text)
        with pytest.raises(UserError, match=error):
            fill(doc)
    proc = run_cli("report", str(run), "--readme", str(tmp_path / "missing.md"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"boxbench: error: --readme: no file {tmp_path / 'missing.md'}; give the Markdown file whose marked tables to fill"]
