"""``giqa vqa``: DES samples -> grounded VQA samples, then a balanced subset."""

from __future__ import annotations

import argparse


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from giqa.cli._run import add_run_arguments

    p = subparsers.add_parser(
        "vqa", help="build GIQA-VQA samples from DES samples",
        description="Generate Yes/No and What/Which/Why/How QA pairs from DES samples with an LLM, filter and "
                    "ground them (OUT/samples.jsonl), then balance Yes vs No and Yes/No vs open "
                    "(OUT/balanced.jsonl). Exit status 1 when the run stops early (fail-fast) or cannot start.",
    )
    p.add_argument("--input", required=True, help="DES samples: samples.jsonl or the run directory of giqa des")
    p.add_argument("--no-balance", action="store_true", help="do not write balanced.jsonl")
    add_run_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from giqa.cli._run import print_summary, resolve_config, run
    from giqa.data.io import iter_run_samples, write_jsonl_atomic
    from giqa.models.roles import Role
    from giqa.pipeline.balance import balance_vqa, vqa_counts
    from giqa.pipeline.inputs import read_input_rows
    from giqa.pipeline.vqa import VqaPipeline

    config = resolve_config(args, "vqa", ("llm",))
    pipeline = VqaPipeline(llm=config.backend(Role.llm), config=config.vqa, preset=config.preset or "paper")
    summary = run(pipeline, read_input_rows(args.input), config, args.out)
    extra: dict[str, object] = {"preset": config.preset or "paper"}
    if not args.no_balance:
        samples = list(iter_run_samples(args.out))
        balanced = balance_vqa(samples, seed=config.vqa.seed)
        write_jsonl_atomic(f"{args.out}/balanced.jsonl", balanced)
        extra.update({"all_counts": vqa_counts(samples), "balanced_counts": vqa_counts(balanced)})
    print_summary(summary, extra)
    return 0
