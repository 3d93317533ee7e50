"""``giqa`` command line. Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Modules are
imported only to build the parser; heavy imports happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

# module name in giqa.cli -> registered by it (order = order in --help)
SUBCOMMAND_MODULES = ("des", "vqa", "show", "bench", "train", "build")


def build_parser() -> argparse.ArgumentParser:
    from giqa import __version__

    parser = argparse.ArgumentParser(prog="giqa", description="Grounding-IQA datasets, models and benchmark.")
    parser.add_argument("--version", action="version", version=f"giqa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"giqa.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"giqa.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from giqa.errors import GiqaError

    try:
        return int(args.func(args) or 0)
    except GiqaError as exc:
        print(f"giqa {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
