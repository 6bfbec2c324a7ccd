"""`edgevlm report`: HTML / Markdown / JSON from bench, quality and verify results, gated against a
baseline (exit 1 on a regression, naming the metric and both values)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", type=Path, nargs="+", metavar="RESULTS",
                   help="edgevlm.bench/2, edgevlm.quality/1 or verify --json files, or folders of them")
    p.add_argument("--out", type=Path, required=True, help="folder for report.html, report.md, report.json")
    p.add_argument("--baseline", type=Path, nargs="+", metavar="RESULTS",
                   help="results to compare against (same kinds); a regression beyond the gates exits 1")
    p.add_argument("--format", default="html,md,json", help="comma-separated subset of html,md,json")
    p.add_argument("--threshold", action="append", default=[], metavar="NAME=N",
                   help="gate thresholds: noise=N (multiple of the runs' own spread, default 1), memory=N and "
                        "energy=N (percent, defaults 10 and 15); repeat for several")
    p.add_argument("--json", type=Path, nargs="?", const=Path("-"), metavar="PATH",
                   help="also write the report JSON here (`--json` alone: print it instead of the summary)")


def report(args) -> int:
    from edgevlm.reports.build import make_report, parse_formats, write_report
    from edgevlm.reports.gates import parse_thresholds

    formats = parse_formats(args.format)
    thresholds = parse_thresholds(args.threshold)
    doc, figures, qualities = make_report(args.results, args.baseline, thresholds)
    written = write_report(doc, figures, qualities, args.out, formats)
    if args.json == Path("-"):
        print(json.dumps(doc, indent=2))
    else:
        if args.json:
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
        _print_summary(doc)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 1 if doc["failures"] else 0


def _print_summary(doc: dict) -> None:
    base = doc["baseline"]
    print(f"report: {doc['status']}; {len(doc['metrics'])} metrics from {len(doc['summary']['sources'])} results")
    if base is not None:
        verdicts = [c["verdict"] for c in base["comparisons"]]
        print(f"against the baseline: {len(verdicts)} compared (" + ", ".join(
            f"{verdicts.count(v)} {v}" for v in ("regression", "within noise", "improved", "not gated")) + ")")
        for n in base["not_comparable"]:
            print(f"not compared ({len(n['metrics'])} metrics): {n['why']}")
    for f in doc["failures"]:
        print(f"FAIL {f['why']}")
