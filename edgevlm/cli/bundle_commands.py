"""`edgevlm bundle`: an export laid out for an Android or iOS app project (edgevlm/app_bundle.py),
with INTEGRATION.md, a size table against the stores' limits, and an `edgevlm.bundle/1` JSON."""

from __future__ import annotations

import argparse
import json
from functools import cache
from importlib import resources
from pathlib import Path

from edgevlm.cli.artifact_commands import artifacts_arg, artifacts_dir

BUNDLE_SCHEMA_ID = "edgevlm.bundle/1"


@cache
def bundle_schema() -> dict:
    return json.loads(resources.files("edgevlm").joinpath("assets", "schemas", "bundle-v1.schema.json").read_text())


def validate_bundle(result: dict) -> None:
    """Raises jsonschema.ValidationError naming the first field that does not fit."""
    import jsonschema

    jsonschema.validate(result, bundle_schema())


def bundle_args(p: argparse.ArgumentParser) -> None:
    from edgevlm.app_bundle import PLATFORMS

    artifacts_arg(p)
    p.add_argument("--platform", required=True, choices=PLATFORMS)
    p.add_argument("--out", type=Path, required=True, help="folder to create (atomic: all or nothing)")
    p.add_argument("--json", type=Path, help="also write the result (schema edgevlm.bundle/1) here")
    p.add_argument("--no-verify", action="store_true",
                   help="development only: skip `edgevlm verify`'s checks before copying (the copies are still "
                        "hashed against the manifest)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier bundle in --out")


def bundle(args) -> int:
    from edgevlm.app_budget import LIMITS, budget_warnings
    from edgevlm.app_bundle import check_export, part_sizes, plan_bundle, write_bundle
    from edgevlm.app_integration import integration_markdown
    from edgevlm.export.manifest import read_manifest
    from edgevlm.outputs import atomic_directory, check_output
    from edgevlm.progress import log

    folder = artifacts_dir(args)
    manifest = read_manifest(folder)
    files = plan_bundle(folder, manifest, args.platform)  # refuse an unusable export before any work
    check_output(args.out, args.overwrite, kind="bundle")
    if args.no_verify:
        log.warning("--no-verify: %s is bundled without `edgevlm verify`'s checks (I/O contract, numerics)", folder)
        verification = {"run": "skipped", "detail": "--no-verify; copies hashed against the manifest only"}
    else:
        verification = {"run": "verify", "detail": check_export(folder)}
    with atomic_directory(args.out, args.overwrite, kind="bundle") as tmp:
        write_bundle(files, tmp)
        sizes = part_sizes(files)
        warnings = budget_warnings(sizes, LIMITS[args.platform])
        (tmp / "INTEGRATION.md").write_text(integration_markdown(args.platform, manifest, files, sizes, warnings))
        result = {"schema": BUNDLE_SCHEMA_ID, "platform": args.platform, "artifacts": str(folder),
                  "out": str(args.out), "verification": verification,
                  "files": [{"path": f.dest, "part": f.part, "bytes": f.bytes, "sha256": f.copy_sha256,
                             "checked_against": f.checked} for f in files],
                  "parts": sizes, "total_bytes": sum(sizes.values()), "warnings": warnings}
        validate_bundle(result)  # inside the block: a result that does not fit publishes nothing
    print_bundle(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def print_bundle(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"wrote {result['out']}: {len(result['files'])} files for {result['platform']}, each hashed "
                  "after copying")
    table = Table(title="sizes (uncompressed)")
    for column, justify in (("part", "left"), ("bytes", "right"), ("MiB", "right")):
        table.add_column(column, justify=justify)
    for part, n in result["parts"].items():
        table.add_row(part, f"{n:,}", f"{n / 2 ** 20:.2f}")
    table.add_row("total", f"{result['total_bytes']:,}", f"{result['total_bytes'] / 2 ** 20:.2f}", style="bold")
    console.print(table)
    console.print(f"verification: {result['verification']['run']} ({result['verification']['detail']})")
    for w in result["warnings"]:
        console.print(f"[yellow]warning[/]: {w['measured']} {w['measured_bytes'] / 1e6:.0f} MB is over the "
                      f"{w['limit']} limit ({w['limit_bytes'] / 1e6:.0f} MB; {w['source']}): {w['advice']}")
    console.print(f"next: follow {result['out']}/INTEGRATION.md")
