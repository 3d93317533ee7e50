"""``giqa vqa``: DES samples -> grounded VQA samples, then a balanced subset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from giqa.cli._run import add_run_arguments

    p = subparsers.add_parser(
        "vqa", help="build GIQA-VQA samples from DES samples",
        description="Generate Yes/No and What/Which/Why/How QA pairs from DES samples with an LLM, filter and "
                    "ground them (OUT/samples.jsonl), then balance Yes vs No and Yes/No vs open "
                    "(OUT/balanced.jsonl).",
    )
    p.add_argument("--input", required=True, help="DES samples.jsonl (from giqa des)")
    p.add_argument("--no-balance", action="store_true", help="do not write balanced.jsonl")
    add_run_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from giqa.cli._run import print_summary, run
    from giqa.pipeline.balance import balance_vqa, vqa_counts
    from giqa.pipeline.config import VqaConfig
    from giqa.pipeline.records import read_input_items, read_jsonl, write_jsonl_atomic
    from giqa.pipeline.vqa import VqaPipeline

    pipeline = VqaPipeline.from_preset(args.preset, config=VqaConfig(seed=args.seed))
    inputs = pipeline.make_inputs(read_input_items(args.input))
    summary = run(pipeline, inputs, args)
    extra: dict = {"preset": args.preset}
    if not args.no_balance:
        samples = list(read_jsonl(Path(args.out) / "samples.jsonl"))
        balanced = balance_vqa(samples, seed=args.seed)
        write_jsonl_atomic(Path(args.out) / "balanced.jsonl", balanced)
        extra.update({"all_counts": vqa_counts(samples), "balanced_counts": vqa_counts(balanced)})
    print_summary(summary, extra)
    return 0
