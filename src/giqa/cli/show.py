"""``giqa show``: draw a sample's boxes and phrases on its image, write a PNG."""

from __future__ import annotations

import argparse


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser("show", help="draw a sample's boxes and phrases on its image (PNG)")
    p.add_argument("samples", help="samples JSONL (from giqa des / giqa vqa)")
    p.add_argument("--root", required=True, help="image root the sample paths are relative to")
    p.add_argument("--id", default=None, help="sample id (default: the first sample)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from giqa.errors import GiqaError
    from giqa.data.io import read_jsonl
    from giqa.render import render_sample

    found = None
    for s in read_jsonl(args.samples):
        if args.id is None or s.get("id") == args.id:
            found = s
            break
    if found is None:
        raise GiqaError(f"no sample {'with id ' + repr(args.id) if args.id else ''} in {args.samples}")
    image = render_sample(found, args.root)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG")
    print(f"wrote {out} ({image.width}x{image.height}, {len(found.get('regions') or [])} region(s))")
    return 0
