"""``giqa des``: descriptions + images -> grounded DES samples (resumable)."""

from __future__ import annotations

import argparse

from giqa.cli._run import add_run_arguments, print_summary, resolve_config, run


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "des", help="build GIQA-DES samples from images and quality descriptions",
        description="Run the DES pipeline (input check, tags, detection, refinement, fusion) over a JSONL "
                    'file of {"image": path under --root, "description": text, "id"?: str, "tags"?: [...]}. '
                    "Exit status 1 when the run stops early (fail-fast) or cannot start.",
    )
    p.add_argument("--input", required=True, help="descriptions (JSONL, a JSON list, Parquet, or a directory of them)")
    p.add_argument("--root", default=None, help="image root; image paths must stay inside it (or des.root in --config)")
    p.add_argument("--no-filter", action="store_true", help="skip the IQA-Filter (Box-Merge still runs)")
    add_run_arguments(p)
    g = p.add_argument_group("DES backends and thresholds")
    g.add_argument("--detector", default=None, metavar="NAME", help="detector: a preset or registry name")
    g.add_argument("--detector-model", default=None, metavar="ID", help="detector model id or directory")
    g.add_argument("--box-threshold", type=float, default=None, help="detector box threshold (Grounding DINO: 0.35)")
    g.add_argument("--filter", default=None, metavar="NAME", help="quality filter: a preset or registry name")
    g.add_argument("--filter-model", default=None, metavar="ID", help="quality-filter model id or directory")
    g.add_argument("--area-thr", type=float, default=None, help="Box-Merge T_a (default: 0.256)")
    g.add_argument("--cover-thr", type=float, default=None, help="Box-Merge T_o (default: 0.95)")
    g.add_argument("--filter-threshold", type=float, default=None, help="keep boxes with P(yes) >= this (default: 0.5)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from giqa.errors import ConfigError
    from giqa.models.roles import Role
    from giqa.pipeline.des import DesPipeline
    from giqa.pipeline.inputs import read_input_rows

    config = resolve_config(args, "des", ("llm", "detector", "quality_filter"))
    if config.des.root is None:
        raise ConfigError("giqa des needs the image root: --root, or des.root in --config")
    pipeline = DesPipeline(llm=config.backend(Role.llm), detector=config.backend(Role.detector),
                           quality_filter=config.backend(Role.quality_filter), config=config.des,
                           preset=config.preset or "paper")
    summary = run(pipeline, read_input_rows(args.input), config, args.out)
    print_summary(summary, {"preset": config.preset or "paper"})
    return 0
