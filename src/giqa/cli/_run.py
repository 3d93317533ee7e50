"""Shared plumbing of ``giqa des`` and ``giqa vqa``: runner choice and summary printing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory (samples.jsonl, errors.jsonl; resumable)")
    p.add_argument("--preset", default="paper", help="backend preset: tiny-random, small or paper (default: paper)")
    p.add_argument("--retry-failed", action="store_true", help="re-run only the records in errors.jsonl")
    p.add_argument("--runner", choices=("local", "ray"), default="local", help="in-process (default) or Ray Data")
    p.add_argument("--address", default=None, help="Ray cluster address (with --runner ray)")
    p.add_argument("--ray-stage-options", type=_json_mapping, default=None, metavar="JSON",
                   help='per-stage Ray settings (with --runner ray), e.g. \'{"detect": {"concurrency": 4, '
                        '"num_gpus": 1, "batch_size": 8}}\'; keys: concurrency, num_gpus, num_cpus, batch_size, actors')
    p.add_argument("--ray-output", choices=("jsonl", "jsonl-shards", "parquet"), default="jsonl",
                   help="output layout of a Ray run (default: jsonl, the same files as the in-process runner)")
    p.add_argument("--batch-size", type=int, default=64, help="records per runner chunk (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _json_mapping(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError('expected {"<stage>": {<option>: <value>, ...}, ...}')
    return value


def run(pipeline: Any, inputs: list[dict[str, Any]], args: argparse.Namespace) -> Any:
    if args.runner == "ray":
        from giqa.pipeline.ray_runner import run_ray

        return run_ray(pipeline, inputs, args.out, address=args.address, batch_size=args.batch_size,
                       retry_failed=args.retry_failed, stage_options=args.ray_stage_options,
                       output_format=args.ray_output, progress=not args.no_progress)
    from giqa.pipeline.runner import run_local

    return run_local(pipeline, inputs, args.out, batch_size=args.batch_size, progress=not args.no_progress,
                     retry_failed=args.retry_failed)


def print_summary(summary: Any, extra: dict[str, Any] | None = None) -> None:
    data = summary.as_dict() if hasattr(summary, "as_dict") else dict(summary)
    if extra:
        data.update(extra)
    print(json.dumps(data, indent=2))
    if data.get("failed"):
        print(f"{data['failed']} record(s) failed; see {data.get('out_dir', '.')}/errors.jsonl", file=sys.stderr)
