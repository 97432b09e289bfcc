"""The `animateme` console command. Each subcommand lives in its own module under
`animateme.commands`, which adds its parsers through `add_commands(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

from animateme_blender.core.errors import AnimateMeError

# One line per command module; a new command is a new module plus a line here.
COMMAND_MODULES = (
    "animateme.commands.data",
    "animateme.commands.evaluate",
    "animateme.commands.realdata",
    "animateme.commands.diffusion",
    "animateme.commands.generate",
    "animateme.commands.registration",
    "animateme.commands.rig",
    "animateme.commands.farm",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animateme", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnimateMeError as error:
        print(f"animateme: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("animateme: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
