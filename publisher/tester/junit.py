"""JUnit XML: read pytest's cases, write one merged report (GitLab shows it), count a report's results."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from publisher.core.types import TestReport
from publisher.errors import FaaspubError

Outcome = Literal["passed", "failed", "error", "skipped"]


@dataclass(frozen=True)
class Case:
    """One test case with its outcome; ``message`` and ``detail`` explain a failure."""

    suite: str
    name: str
    outcome: Outcome
    seconds: float = 0.0
    message: str = ""
    detail: str = ""
    classname: str = ""


def read_pytest(path: Path, suite: str = "pytest") -> list[Case]:
    """The cases of a pytest ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    cases = []
    for case in root.iter("testcase"):
        outcome: Outcome = "passed"
        message = detail = ""
        for tag, kind in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                outcome = kind  # type: ignore[assignment]
                message = node.get("message", "")
                detail = node.text or ""
                break
        cases.append(
            Case(
                suite,
                case.get("name", "?"),
                outcome,
                float(case.get("time") or 0),
                message,
                detail,
                case.get("classname", ""),
            )
        )
    return cases


def write(cases: list[Case], path: Path) -> None:
    """Write ``cases`` grouped into one ``<testsuite>`` per suite under ``<testsuites name="faaspub">``."""
    root = ET.Element("testsuites", name="faaspub")
    suites: dict[str, list[Case]] = {}
    for case in cases:
        suites.setdefault(case.suite, []).append(case)
    for name, members in suites.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=name,
            tests=str(len(members)),
            failures=str(sum(c.outcome == "failed" for c in members)),
            errors=str(sum(c.outcome == "error" for c in members)),
            skipped=str(sum(c.outcome == "skipped" for c in members)),
            time=f"{sum(c.seconds for c in members):.3f}",
        )
        for case in members:
            node = ET.SubElement(
                suite,
                "testcase",
                name=case.name,
                classname=case.classname or name,
                time=f"{case.seconds:.3f}",
            )
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(case.outcome)
            if tag:
                child = ET.SubElement(node, tag, message=case.message)
                child.text = case.detail
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def read_report(path: Path) -> TestReport:
    """Counts and failed cases of a JUnit XML report (``<testsuites>`` or a single ``<testsuite>``)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise FaaspubError(f"cannot read the JUnit report {path}: {exc}") from None
    if root.tag not in ("testsuite", "testsuites"):
        raise FaaspubError(f"{path}: not a JUnit report (root element <{root.tag}>)")
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    report = TestReport(junit_path=path)
    for suite in suites:
        tests, failed, errors, skipped = (
            _count(path, suite, key) for key in ("tests", "failures", "errors", "skipped")
        )
        report.failed += failed
        report.errors += errors
        report.skipped += skipped
        report.passed += tests - failed - errors - skipped
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                report.failures.append(f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":"))
    return report


def _count(path: Path, suite: ET.Element, key: str) -> int:
    value = suite.get(key, "0")
    try:
        return int(value)
    except ValueError:
        name = suite.get("name", "")
        raise FaaspubError(f"{path}: testsuite {name!r} has {key}={value!r}, not a whole number") from None
