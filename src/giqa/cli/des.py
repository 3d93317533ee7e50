"""``giqa des``: descriptions + images -> grounded DES samples (resumable)."""

from __future__ import annotations

import argparse

from giqa.cli._run import add_run_arguments, print_summary, run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "des", help="build GIQA-DES samples from images and quality descriptions",
        description="Run the four-stage DES pipeline (tags, detection, refinement, fusion) over a JSONL "
                    'file of {"image": path under --root, "description": text, "id"?: str}.',
    )
    p.add_argument("--input", required=True, help="descriptions JSONL")
    p.add_argument("--root", required=True, help="image root; image paths must stay inside it")
    p.add_argument("--no-filter", action="store_true", help="skip the IQA-Filter (Box-Merge still runs)")
    add_run_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from giqa.pipeline.config import DesConfig
    from giqa.pipeline.des import DesPipeline
    from giqa.pipeline.records import read_input_items

    config = DesConfig(root=args.root, seed=args.seed)
    pipeline = DesPipeline.from_preset(args.preset, config=config, quality_filter=not args.no_filter)
    inputs = pipeline.make_inputs(read_input_items(args.input))
    summary = run(pipeline, inputs, args)
    print_summary(summary, {"preset": args.preset})
    return 0
