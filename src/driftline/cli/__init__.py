"""The ``driftline`` command line: one module per command group, each parsing its arguments and
calling the service-level function that does the work (``driftline.service`` wires everything).

Command modules import nothing heavy at module level, so ``--help`` and short commands stay fast.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence

from driftline.cli import alerts, compare, reference, serve, simulate, stream
from driftline.cli._args import LOG_LEVELS, UsageError

__all__ = ["UsageError", "build_parser", "main"]
GROUPS = (compare, simulate, reference, stream, serve, alerts)

Command = Callable[[str, str, str], argparse.ArgumentParser]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from driftline import logs

    logs.setup(args.log_level or "WARNING")
    try:
        return int(args.run(args) or 0)
    except UsageError as exc:
        print(f"driftline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        # The interpreter's last collection walks every object numba and polars created: ≈0.2 s
        # of a short command such as compare. Nothing is left to collect, so skip it.
        gc.freeze()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftline", description="Model monitoring and drift detection.")
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="WARNING unless given (serve: its log_level setting); also after the command",
    )
    # the same option after the command; SUPPRESS keeps the value given before it when absent
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    for group in GROUPS:
        group.register(command)
    return p
