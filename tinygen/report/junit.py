"""JUnit XML: one testsuite per board, one testcase per output tensor."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

from ..verify.results import VerifyReport


def _properties(report: VerifyReport) -> list[tuple[str, str]]:
    props = [("bit_exact", str(report.bit_exact).lower())]
    if report.place:
        props += [("place", report.place), ("port", report.port)]
    acc = report.accuracy
    if acc:
        props += [(f"accuracy.{k}", f"{acc[k]:.6f}") for k in ("float", "int8", "device")
                  if acc.get(k) is not None]
        if acc.get("float_vs_int8_top1") is not None:
            props.append(("top1_agreement.float_int8", f"{acc['float_vs_int8_top1']:.6f}"))
        props.append(("classes", ",".join(acc["classes"])))
        label = report.place or report.port
        level = label if label in acc["confusion"] else "int8"
        props.append(("confusion", json.dumps(acc["confusion"][level])))
    det = report.detection
    if det:
        props += [(f"map50.{k}", f"{det[k]:.6f}") for k in ("float", "int8", "device")
                  if det.get(k) is not None]
        props.append(("classes", ",".join(det["classes"])))
    lat = report.latency
    for key in ("ms", "energy_uj", "macs_per_cycle", "macs_per_instruction"):
        if lat.get(key) is not None:
            props.append((f"latency.{key}", f"{lat[key]:.6g}"))
    if report.calibration:
        props.append(("calibration", str(report.calibration.get("source"))))
        props.append(("calibration.synthetic", str(bool(report.calibration.get("synthetic"))).lower()))
    props += [(f"warning.{i}", w) for i, w in enumerate(report.warnings)]
    return props


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
            suite.set("hostname", report.place or report.port)
        props = ET.SubElement(suite, "properties")
        for name, value in _properties(report):
            ET.SubElement(props, "property", name=name, value=value)
        for o in report.outputs:
            case = ET.SubElement(suite, "testcase", classname=f"{report.board}.{report.runtime}",
                                 name=f"output{o.index}:{o.name}"
                                 + (f"@{report.place or report.port}" if len(reports) > 1 else ""))
            if not o.passed:
                f = ET.SubElement(case, "failure",
                                  message=f"max |delta| {o.max_abs_diff_lsb} LSB > "
                                          f"tolerance {report.tolerance_lsb}")
                f.text = json.dumps(asdict(o))
        if report.accuracy is not None or report.detection is not None or report.failures:
            # One test case for the model's quality, so a CI view shows it beside the outputs.
            suite.set("tests", str(int(suite.get("tests", "0")) + 1))
            case = ET.SubElement(suite, "testcase", classname=f"{report.board}.{report.runtime}",
                                 name="quality" + (f"@{report.port}" if len(reports) > 1 else ""))
            if report.failures:
                suite.set("failures", str(int(suite.get("failures", "0")) + 1))
                f = ET.SubElement(case, "failure", message="; ".join(report.failures))
                f.text = json.dumps(report.accuracy or report.detection)
            if report.warnings:
                ET.SubElement(case, "system-out").text = "\n".join(report.warnings)
        suites.append(suite)
    root = suites[0]
    if len(suites) > 1:
        root = ET.Element("testsuites")
        root.extend(suites)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)

