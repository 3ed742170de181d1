"""A report's tables kept inside another Markdown file (a README, a paper's notes) between markers, so
the numbers a reader finds there are the committed report's, never pasted by hand::

    <!-- boxbench: results/study_cpu/report.md "Headline" -->
    (written by `boxbench report RUN --readme README.md`)
    <!-- /boxbench -->

The path is relative to the file; the quoted text is the start of a table's title in that report. Only
the table itself is copied (header, rows, dataset separators): the prose around it is the file's own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from boxbench.core.errors import UserError
from boxbench.core.results import write_atomically

START = re.compile(r'^<!-- boxbench: (\S+) "([^"]+)" -->$')
END = "<!-- /boxbench -->"


@dataclass(frozen=True)
class Region:
    """One marked table: where its lines lie in the file, and what should fill them."""

    line: int  # 1-based line of the start marker
    report: Path
    title: str
    body: list[str]  # the lines between the markers now


def report_table(report: Path, title: str, where: str) -> list[str]:
    """The Markdown table lines of the first section of ``report`` whose title starts with ``title``."""
    if not report.is_file():
        raise UserError(f"{where}: report {report} not found; write it first (boxbench report RUN_DIR)")
    lines = report.read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("### " + title)), None)
    if start is None:
        raise UserError(f"{where}: {report} has no table titled {title!r}; use the start of a '### ' title in it")
    table: list[str] = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            table.append(line)
        elif table or line.startswith("#"):
            break
    return table


def regions(doc: Path) -> list[Region]:
    """The marked regions of ``doc``, in order; a malformed marker is a one-line error naming its line."""
    if not doc.is_file():
        raise UserError(f"--readme: no file {doc}; give the Markdown file whose marked tables to fill")
    lines, out, i = doc.read_text().splitlines(), [], 0
    while i < len(lines):
        m = START.match(lines[i].strip())
        if m is None:
            if lines[i].strip().startswith("<!-- boxbench:"):
                raise UserError(f'{doc}:{i + 1}: malformed marker; write <!-- boxbench: PATH/report.md "Title start" -->')
            i += 1
            continue
        end = next((k for k in range(i + 1, len(lines)) if lines[k].strip() == END), None)
        if end is None:
            raise UserError(f"{doc}:{i + 1}: region not closed; end it with {END}")
        out.append(Region(i + 1, (doc.parent / m.group(1)).resolve(), m.group(2), lines[i + 1:end]))
        i = end + 1
    return out


def stale_regions(doc: Path) -> list[str]:
    """``file:line`` of each region whose table differs from its report's (empty: all current)."""
    return [f"{doc}:{r.line}" for r in regions(doc) if r.body != report_table(r.report, r.title, f"{doc}:{r.line}")]


def fill(doc: Path) -> int:
    """Rewrite every marked region of ``doc`` with its report's table (atomically); how many changed."""
    lines = doc.read_text().splitlines()
    changed = 0
    for r in reversed(regions(doc)):  # from the end: earlier regions' line numbers stay valid
        table = report_table(r.report, r.title, f"{doc}:{r.line}")
        if table != r.body:
            lines[r.line:r.line + len(r.body)] = table
            changed += 1
    if changed:
        write_atomically(doc.parent, {doc.name: ("\n".join(lines) + "\n").encode()}, "the marked tables")
    return changed
