"""Shared plumbing of ``giqa des`` and ``giqa vqa``: the run flags, ``--config`` files, the
runner choice and the summary.

Precedence: a command-line flag beats the ``--config`` file, which beats the built-in default.
Every flag defaults to None here, so "not given" is never mistaken for a value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from giqa.models.spec import BackendSpec
    from giqa.pipeline.runconfig import RunConfig

LLM_BASE_URL_ENV = "GIQA_LLM_BASE_URL"


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Backend, runner and fail-fast flags of ``giqa des`` / ``giqa vqa``."""
    p.add_argument("--config", default=None, metavar="RUN.toml",
                   help="run configuration (TOML or JSON: backends, stage and runner options); flags override it")
    p.add_argument("--out", required=True, help="output directory (samples.jsonl, errors.jsonl; resumable)")
    p.add_argument("--preset", default=None,
                   help="backend preset for every role not set otherwise: tiny-random, small or paper (default: paper)")
    b = p.add_argument_group("backends")
    b.add_argument("--llm", default=None, metavar="NAME", help="LLM: a preset or registry name (transformers, openai)")
    b.add_argument("--llm-base-url", default=os.environ.get(LLM_BASE_URL_ENV) or None, metavar="URL",
                   help=f"OpenAI-compatible server up to /v1 (vLLM, SGLang, Ollama): the LLM steps ask it for "
                        f"the preset's model (openai backend) instead of running transformers in process "
                        f"(default: ${LLM_BASE_URL_ENV})")
    b.add_argument("--llm-model", default=None, metavar="ID", help="LLM model id (hub id, directory, or server model name)")
    b.add_argument("--llm-concurrency", type=int, default=None, metavar="N", help="requests in flight (openai LLM)")
    b.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per LLM request (openai LLM)")
    b.add_argument("--retries", type=int, default=None, metavar="N", help="retries per LLM request (openai LLM)")
    b.add_argument("--device", default=None, help="device of every in-process model: auto, cpu, cuda, cuda:N, mps")
    r = p.add_argument_group("runner")
    r.add_argument("--retry-failed", action="store_true", default=None, help="also re-run the records in errors.jsonl")
    r.add_argument("--runner", choices=("local", "ray"), default=None, help="in-process (default) or Ray Data")
    r.add_argument("--address", default=None, help="Ray cluster address (with --runner ray)")
    r.add_argument("--ray-stage-options", type=_json_mapping, default=None, metavar="JSON",
                   help='per-stage Ray settings (with --runner ray), e.g. \'{"detect": {"concurrency": 4, '
                        '"num_gpus": 1, "batch_size": 8}}\'; keys: concurrency, num_gpus, num_cpus, batch_size, actors, '
                        'prepare (defaults: one GPU per actor, pools sized to the GPUs; see docs/data.md)')
    r.add_argument("--ray-output", choices=("jsonl", "jsonl-shards", "parquet"), default=None,
                   help="output layout of a Ray run (default: jsonl, the same files as the in-process runner)")
    r.add_argument("--batch-size", type=int, default=None, help="records per runner chunk (default: 64)")
    r.add_argument("--max-failures", type=float, default=None, metavar="SHARE",
                   help="stop (exit 1) when more than this share of the records fail (default: 0.5)")
    r.add_argument("--fail-fast", type=int, default=None, metavar="N",
                   help="stop (exit 1) when the first N records all fail (default: 20; 0: off)")
    r.add_argument("--seed", type=int, default=None, help="seed of every random draw (default: 0)")
    r.add_argument("--no-progress", action="store_true", default=None, help="no progress bar on stderr")


def _json_mapping(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError('expected {"<stage>": {<option>: <value>, ...}, ...}')
    return value


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _with_settings(spec: "BackendSpec", flags: dict[str, str], args: argparse.Namespace) -> "BackendSpec":
    """``spec`` with the settings of the given flags (``{setting: flag dest}``); a flag that the
    backend has no setting for is a ConfigError naming both."""
    from giqa.errors import ConfigError
    from giqa.models.registry import settings_class

    values = {k: getattr(args, dest) for k, dest in flags.items() if getattr(args, dest, None) is not None}
    if not values:
        return spec
    cls = settings_class(spec.role, spec.name)
    known = set(cls.model_fields) if cls is not None else set(values)
    for key in values:
        if key not in known:
            flag = "--" + flags[key].replace("_", "-")
            raise ConfigError(f"{flag} does not apply to the {spec.role.value} backend {spec.name!r} (no {key!r} setting)")
    return spec.model_copy(update={"settings": {**spec.settings, **values}})


def _backends(config: "RunConfig", args: argparse.Namespace, roles: tuple[str, ...]) -> "RunConfig":
    from giqa.models.presets import server_llm_entry
    from giqa.models.roles import Role
    from giqa.models.spec import BackendSpec
    from giqa.pipeline.backends import spec_from_name

    for name in roles:
        role = Role(name)
        spec: Optional[BackendSpec] = config.backend(role)
        chosen = getattr(args, role.value if role is not Role.quality_filter else "filter", None)
        if chosen is not None:
            spec = spec_from_name(role, chosen)
        if role is Role.llm and args.llm_base_url and spec is not None and not spec.name.startswith("openai"):
            served, settings = server_llm_entry(spec.name, spec.settings)  # the preset's model, from the server
            spec = BackendSpec(role=role, name=served, settings=settings, preset=spec.preset)
        if role is Role.quality_filter and getattr(args, "no_filter", False):
            spec = None
        if spec is not None:
            spec = _with_settings(spec, _ROLE_FLAGS.get(name, {}), args)
            if args.device is not None and "device" in _fields(spec):
                spec = spec.model_copy(update={"settings": {**spec.settings, "device": args.device}})
            spec.check()
        config = config.with_backend(role, spec)
    return config


_ROLE_FLAGS = {
    "llm": {"base_url": "llm_base_url", "model_id": "llm_model", "max_concurrency": "llm_concurrency",
            "timeout_s": "timeout", "max_retries": "retries"},
    "detector": {"model_id": "detector_model", "box_threshold": "box_threshold"},
    "quality_filter": {"model_id": "filter_model"},
}


def _fields(spec: "BackendSpec") -> set[str]:
    from giqa.models.registry import settings_class

    cls = settings_class(spec.role, spec.name)
    return set(cls.model_fields) if cls is not None else set()


def resolve_config(args: argparse.Namespace, task: str, roles: tuple[str, ...]) -> "RunConfig":
    """The run configuration: ``--config`` (if any), then the flags."""
    from pydantic import ValidationError

    from giqa.errors import ConfigError
    from giqa.pipeline.runconfig import RunConfig, format_validation_error, load_run_config

    config = load_run_config(args.config) if args.config else RunConfig()
    try:
        if args.preset is not None:
            RunConfig(preset=args.preset)  # validates the name
            config = config.model_copy(update={"preset": args.preset})
        section = config.des if task == "des" else config.vqa
        stage = section.model_validate({**section.model_dump(), **_given(**_stage_flags(args, task))})
        runner = config.runner.model_validate({**config.runner.model_dump(), **_given(
            kind=args.runner, address=args.address, batch_size=args.batch_size, max_failures=args.max_failures,
            fail_fast=args.fail_fast, retry_failed=args.retry_failed, output=args.ray_output,
            stage_options=args.ray_stage_options, progress=False if args.no_progress else None)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "command line")) from None
    config = config.model_copy(update={task: stage, "runner": runner})
    return _backends(config, args, roles)


def _stage_flags(args: argparse.Namespace, task: str) -> dict[str, Any]:
    flags = {"seed": args.seed}
    if task == "des":
        flags.update(root=args.root, area_thr=args.area_thr, cover_thr=args.cover_thr,
                     filter_threshold=args.filter_threshold)
    return flags


def run(pipeline: Any, inputs: list[Any], config: "RunConfig", out: str) -> Any:
    """Run with the configured runner; on a stopped run the summary is printed before the error."""
    from giqa.errors import RunAborted

    r = config.runner
    common: dict[str, Any] = dict(batch_size=r.batch_size, retry_failed=r.retry_failed, progress=r.progress,
                                  max_failures=r.max_failures, fail_fast=r.fail_fast, run_info={"run_config": config.public()})
    try:
        if r.kind == "ray":
            from giqa.pipeline.ray_runner import run_ray

            return run_ray(pipeline, inputs, out, address=r.address, stage_options=r.stage_options,
                           output_format=r.output, **common)
        from giqa.pipeline.runner import run_local

        return run_local(pipeline, inputs, out, **common)
    except RunAborted as exc:
        if exc.summary is not None:
            print_summary(exc.summary)
        raise


def print_summary(summary: Any, extra: Optional[dict[str, Any]] = None) -> None:
    data = summary.as_dict() if hasattr(summary, "as_dict") else dict(summary)
    if extra:
        data.update(extra)
    print(json.dumps(data, indent=2))
    if data.get("failed"):
        print(f"{data['failed']} record(s) failed; see {data.get('out_dir', '.')}/errors.jsonl", file=sys.stderr)


def apply_config_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser, values: dict[str, Any],
                          where: str) -> None:
    """Set options of ``args`` that were left at their default from ``values`` (a config table),
    validated against the parser's options (unknown keys and wrong types are ConfigErrors)."""
    from pydantic import ValidationError, create_model

    from giqa.errors import ConfigError

    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "func", "config")}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; options are {sorted(actions)}")
    fields: dict[str, Any] = {k: (_action_type(actions[k]), ...) for k in values}
    try:
        checked = create_model("Options", **fields).model_validate(values)
    except ValidationError as exc:
        from giqa.pipeline.runconfig import format_validation_error

        raise ConfigError(format_validation_error(exc, where)) from None
    for k in values:
        if getattr(args, k) == actions[k].default:
            setattr(args, k, getattr(checked, k))


def _action_type(action: argparse.Action) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return bool
    base = action.type if isinstance(action.type, type) else str
    if action.nargs in ("*", "+") or isinstance(action, argparse._AppendAction):
        return list[base]  # type: ignore[valid-type]
    return Optional[base]
