"""JUnit XML: one testsuite per board, one testcase per output tensor."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

from ..verify.results import VerifyReport


def write_junit(reports: VerifyReport | list[VerifyReport], path: Path) -> None:
    """One testsuite per board (in a testsuites element when there are several)."""
    if isinstance(reports, VerifyReport):
        reports = [reports]
    suites = []
    for report in reports:
        suite = ET.Element("testsuite", name=f"tinygen.verify.{report.board}",
                           tests=str(len(report.outputs)),
                           failures=str(sum(not o.passed for o in report.outputs)),
                           time=f"{report.duration_s:.3f}")
        if len(reports) > 1:
            suite.set("hostname", report.port)
        for o in report.outputs:
            case = ET.SubElement(suite, "testcase", classname=f"{report.board}.{report.runtime}",
                                 name=f"output{o.index}:{o.name}"
                                 + (f"@{report.port}" if len(reports) > 1 else ""))
            if not o.passed:
                f = ET.SubElement(case, "failure",
                                  message=f"max |delta| {o.max_abs_diff_lsb} LSB > "
                                          f"tolerance {report.tolerance_lsb}")
                f.text = json.dumps(asdict(o))
        suites.append(suite)
    root = suites[0]
    if len(suites) > 1:
        root = ET.Element("testsuites")
        root.extend(suites)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)

