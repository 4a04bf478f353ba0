"""The order in which the test suite's modules start (tests/conftest.py), which scripts/test.sh's
two test processes rely on: the module reading the demo run first, then the real-Slurm tests,
and the demo run's readers kept in one module."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ("pytester",)

SUITE_CONFTEST = Path(__file__).with_name("conftest.py")

# The suite's ordering hook in a throwaway project, with stand-ins for the fixtures it looks at.
CONFTEST = f'''
import importlib.util
import pytest

spec = importlib.util.spec_from_file_location("rbda_suite_conftest", {str(SUITE_CONFTEST)!r})
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)
pytest_collection_modifyitems = suite.pytest_collection_modifyitems

def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: stand-in")
    config.addinivalue_line("markers", "slow: stand-in")

@pytest.fixture(scope="session")
def demo_study():
    return {{}}
'''


def collected(pytester, **modules: str) -> list[str]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**modules)
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    return [line for line in result.outlines if "::" in line], result


def test_modules_start_by_rank_and_keep_their_order_otherwise(pytester):
    lines, _ = collected(
        pytester,
        test_a="def test_one(): pass\ndef test_two(): pass\n",
        test_b="import pytest\n@pytest.mark.slow\ndef test_long(): pass\ndef test_short(): pass\n",
        test_c="import pytest\npytestmark = pytest.mark.slurm\ndef test_cluster(): pass\n",
        test_d="def test_plan(): pass\ndef test_reads(demo_study): pass\n",
        test_e="def test_last(): pass\n",
    )
    assert [line.split("::")[0] for line in lines] == [
        "test_d.py", "test_d.py", "test_c.py", "test_b.py", "test_b.py", "test_a.py", "test_a.py", "test_e.py"]
    # within a module, the tests keep their order
    assert lines[:2] == ["test_d.py::test_plan", "test_d.py::test_reads"]


def test_readers_of_the_demo_run_in_two_modules_are_refused(pytester):
    _, result = collected(
        pytester,
        test_a="def test_reads(demo_study): pass\n",
        test_b="def test_also_reads(demo_study): pass\n",
    )
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*demo_study*test_a.py*test_b.py*one module*"])
