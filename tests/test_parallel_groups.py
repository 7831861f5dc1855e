"""`make test` runs two pytest-xdist workers with ``--dist loadgroup``; a module whose tests share
a module-scoped fixture (a federation, the demo run) must stay on one worker, or the fixture is
built twice (issue seen: a 2.5-minute Flower run built on both workers). tests/conftest.py marks
such modules; this module is one of them and checks that xdist really grouped it (pytest 9.2's
node ids broke the grouping silently, pytest-dev/pytest-xdist#1386). Run serially, without xdist,
there is nothing to group and the node id is the plain one."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def shared():
    return os.getpid()


def test_a_module_with_a_module_fixture_is_one_xdist_group(request, shared):
    nodeid = request.node.nodeid
    if os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup"):
        assert nodeid.endswith("@tests/test_parallel_groups.py"), nodeid
    else:
        assert "@" not in nodeid, nodeid


def test_its_tests_run_in_the_process_that_built_the_fixture(shared):
    assert shared == os.getpid()
