"""The `edgevlm` command line: one parser, subcommands registered from `edgevlm.cli.commands`."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build_parser() -> argparse.ArgumentParser:
    from edgevlm.cli import commands

    parser = argparse.ArgumentParser(
        prog="edgevlm",
        description="Export MiniCPM-V models to phone NPUs. With no command, runs the default job on the "
                    "embedded default model.",
    )
    parser.add_argument("--version", action="version", version=f"edgevlm {edgevlm_version()}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="debug also shows other packages' warnings (hidden and counted otherwise)")
    parser.add_argument("--json-logs", action="store_true", help="structured JSON log lines on stderr")
    parser.add_argument("--debug", action="store_true",
                        help="also print the traceback of an error (input and environment errors print one line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands.COMMANDS:
        command.register(sub)
    return parser


def edgevlm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgevlm")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    from edgevlm.cli.exit_codes import run_handler
    from edgevlm.progress import setup_logging
    from edgevlm.third_party import capture_third_party

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.json_logs)
    from edgevlm.cli import commands

    with capture_third_party(show=args.log_level == "debug") as hidden:
        code = run_handler(getattr(args, "handler", commands.default_job), args, debug=args.debug)
    if hidden.summary():
        print(hidden.summary(), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
