"""Tests stand on their own: no test reads a folder outside the repository (issue 11, point 9).

The y-Aware reference numbers used to be read from ``../shared/fixtures``; in a fresh clone
without that folder five loss tests errored. Fixture data now lives in ``tests/fixtures/`` (its
README says where the numbers come from). This scan keeps it so: no test source names a path
that climbs out of the repository to a ``shared`` folder.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
OUTSIDE = re.compile(r"""\.\./shared|/work/shared|parents\[\d\]\.parent\s*/\s*["']shared|["']shared["']\s*/\s*["']fixtures""")


def test_no_test_reads_outside_the_repository():
    offenders = [f"{path.relative_to(TESTS)}:{n}" for path in sorted(TESTS.rglob("*.py")) if path != Path(__file__)
                 for n, line in enumerate(path.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, offenders


def test_fixtures_are_in_the_repository_and_described():
    readme = (TESTS / "fixtures" / "README.md").read_text()
    data = [p for p in (TESTS / "fixtures").iterdir() if p.name != "README.md"]
    assert data and all(p.name in readme for p in data)
