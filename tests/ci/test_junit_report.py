"""Counting a JUnit report: the one reader the CLI and the GitLab release path share."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from publisher.errors import FaaspubError
from publisher.tester.junit import read_report

TWO_SUITES = """<?xml version="1.0"?>
<testsuites>
  <testsuite name="pytest" tests="4" failures="1" errors="0" skipped="1">
    <testcase classname="tests.test_a" name="test_ok"/>
    <testcase classname="tests.test_a" name="test_bad"><failure message="boom"/></testcase>
    <testcase classname="tests.test_a" name="test_later"><skipped/></testcase>
    <testcase classname="tests.test_a" name="test_ok2"/>
  </testsuite>
  <testsuite name="examples" tests="2" failures="0" errors="1" skipped="0">
    <testcase name="example-1"><error message="crashed"/></testcase>
    <testcase name="example-2"/>
  </testsuite>
</testsuites>
"""


def test_counts_and_failed_cases_of_every_suite(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(TWO_SUITES)
    report = read_report(path)
    assert (report.passed, report.failed, report.errors, report.skipped) == (3, 1, 1, 1)
    assert report.failures == ["tests.test_a::test_bad", "example-1"]
    assert report.junit_path == path


def test_a_single_testsuite_root_is_a_report(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuite tests="2" failures="0" errors="0" skipped="0"><testcase name="a"/></testsuite>'
    )
    report = read_report(path)
    assert (report.passed, report.failed, report.failures) == (2, 0, [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<html><body/></html>", "not a JUnit report (root element <html>)"),
        ("<testsuites>", "cannot read"),
        ('<testsuite name="unit" tests="many"/>', "testsuite 'unit' has tests='many', not a whole number"),
    ],
)
def test_what_is_not_a_report_is_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(content)
    with pytest.raises(FaaspubError, match=re.escape(message)):
        read_report(path)


def test_a_missing_report_is_named(tmp_path: Path) -> None:
    with pytest.raises(FaaspubError, match=r"cannot read the JUnit report .*missing\.xml"):
        read_report(tmp_path / "missing.xml")
