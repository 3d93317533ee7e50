"""``giqa train --config cfg.json|yaml [--resume]``: supervised fine-tuning (giqa.train)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a LLaVA-style model on GIQA data",
        description=(
            "Supervised fine-tuning with the paper's defaults (AdamW, lr 2e-5, cosine, warmup 0.03, "
            "batch 64, 2 epochs). The config is a JSON or YAML TrainConfig (see docs/train.md). The "
            "final model lands in <output_dir>/final and loads with LlavaVLM(model_id=...)."
        ),
    )
    parser.add_argument("--config", required=True, help="TrainConfig file (.json, .yaml or .yml)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in output_dir (a new run if there is none)",
    )
    parser.add_argument("--output-dir", default=None, help="override the config's output_dir")
    parser.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import logging
    import os

    from giqa.train import load_config, train

    overrides = {}
    if args.output_dir is not None:
        overrides["output_dir"] = os.path.abspath(args.output_dir)
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    config = load_config(args.config, **overrides)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train(config, resume=args.resume)
    loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
    if result.completed:
        print(f"trained {result.global_step} steps (mean loss {loss}); model: {result.model_dir}")
        return 0
    print(f"stopped at step {result.global_step} of {result.max_steps}; resume with: giqa train --config {args.config} --resume")
    return 0
