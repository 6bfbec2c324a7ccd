"""The `edgevlm` command line: one parser, subcommands registered from `edgevlm.cli.commands`."""

from __future__ import annotations

import argparse
import logging
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
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--json-logs", action="store_true", help="structured JSON log lines on stderr")
    parser.add_argument("--debug", action="store_true",
                        help="also print the traceback of an error (input and environment errors print one line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands.COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from edgevlm.cli.exit_codes import run_handler
    from edgevlm.progress import setup_logging

    _quiet_third_party()
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.json_logs)
    from edgevlm.cli import commands

    return run_handler(getattr(args, "handler", commands.default_job), args, debug=args.debug)


def _quiet_third_party() -> None:
    # torchao (pulled in by transformers/executorch) logs failed optional CUDA kernels at import;
    # they are irrelevant on CPU and would bury our own output.
    for name in ("torchao", "torch.utils._pytree", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", message=".*register_constant.*")


if __name__ == "__main__":
    sys.exit(main())
