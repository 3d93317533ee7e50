"""``giqa bench run`` (generate answers) and ``giqa bench score`` (Table 5 metrics)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from giqa.bench.items import FORMAT_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="GIQA-Bench: generate answers and score them",
                              description="GIQA-Bench: generate answers with a VLM and score any model's answers.")
    sub = p.add_subparsers(dest="bench_command", metavar="ACTION")

    r = sub.add_parser("run", help="answer every bench item with a vision-language model (resumable)")
    r.add_argument("--bench", required=True, help="bench file (JSONL of giqa Samples)")
    r.add_argument("--images", required=True, help="image root; the bench's image paths are relative to it")
    r.add_argument("--out", required=True, help="predictions JSONL (appended; rerun to resume)")
    r.add_argument("--vlm", default="llava", help="VLM backend name in the registry (default: llava)")
    r.add_argument("--model-id", default=None, help="hub id or local directory (default: the backend's default)")
    r.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:0, mps")
    r.add_argument("--dtype", default=None, help="auto, float32, float16, bfloat16")
    r.add_argument("--image-aspect", default=None, choices=("pad", "crop", "native"),
                   help="how images reach the vision tower: pad to a square with the processor's mean colour "
                        "(LLaVA-1.5's training; boxes stay valid), the processor's centre crop, or the "
                        "processor's own tiling (LLaVA-NeXT) (default: the backend's, pad)")
    r.add_argument("--batch-size", type=int, default=4, help="items per generate call (default: 4)")
    r.add_argument("--max-new-tokens", type=int, default=512, help="default: 512")
    r.add_argument("--prompt-template", default="{question}",
                   help="prompt sent to the model; {question} is the bench question (default: {question})")
    r.add_argument("--limit", type=int, default=None, help="answer only the first N items")
    r.add_argument("--no-resume", action="store_true", help="start the output file afresh")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=_run)

    s = sub.add_parser("score", help="score prediction files in Table 5's layout")
    s.add_argument("predictions", nargs="+", help="predictions JSONL ({id, answer} per line), one per model")
    s.add_argument("--gt", required=True, help="bench file (JSONL of giqa Samples)")
    s.add_argument("--format", action="append", default=None, dest="fmt", choices=FORMAT_CHOICES,
                   help="box format of the predictions: auto (default: each answer's own markup; files may mix "
                        "formats), giqa, giqa-norm, kosmos2, qwen-vl, shikra, ferret, florence2, paligemma; "
                        "once for all files, or once per file in order")
    s.add_argument("--name", action="append", default=None,
                   help="row name per predictions file (repeat; default: the file name, with its folder on a clash)")
    s.add_argument("--out", default=None, help="directory for report.md/.csv/.json, per-sample JSONL and radar.png")
    s.add_argument("--bleu", default="coco", choices=("coco", "sacrebleu-13a"), help="BLEU flavour (default: coco)")
    s.add_argument("--tokenizer", default="auto", choices=("auto", "java", "python"),
                   help="PTB tokenizer for coco BLEU: auto (default: pycocoevalcap's Java PTBTokenizer when java and "
                        "its jar are there, else giqa's Python port), java, python")
    s.add_argument("--judge", default=None, help="judge LLM backend: transformers or openai (default: none -> N/A)")
    s.add_argument("--judge-model", default=None, help="judge model id (hub id, local dir, or server model name)")
    s.add_argument("--judge-base-url", default=None, help="OpenAI-compatible server URL up to /v1 (--judge openai)")
    s.add_argument("--judge-device", default=None, help="device of a transformers judge")
    s.add_argument("--judge-timeout", type=float, default=None, help="seconds per judge request (--judge openai)")
    s.add_argument("--judge-retries", type=int, default=None,
                   help="retries of a failed judge request (--judge openai; default: the backend's 4)")
    s.add_argument("--judge-parse-retries", type=int, default=2,
                   help="extra attempts when a judge reply cannot be read (default: 2)")
    s.add_argument("--judge-cache", default=None, help="SQLite judge cache (default: <out>/judge_cache.sqlite)")
    s.add_argument("--yes-no-fallback", action="store_true", help="ask the judge about unreadable Yes/No answers")
    s.add_argument("--embedder", default=None,
                   help="embedder backend for Tag-Recall names, e.g. sentence-transformers (default: exact names)")
    s.add_argument("--embedder-model", default=None, help="embedder model id or local directory")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (default: 1000)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    s.add_argument("--reference", nargs="*", default=None, metavar="METHOD",
                   help="add the paper's Table 5 rows (all, or those whose name contains a METHOD) as references")
    s.add_argument("--no-compare", action="store_true", help="no paired bootstrap tests between the files")
    s.add_argument("--no-radar", action="store_true", help="do not draw radar.png")
    s.set_defaults(func=_score)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _settings(**kw):
    return {k: v for k, v in kw.items() if v is not None}


def _run(args: argparse.Namespace) -> int:
    from giqa.bench.runner import run_bench
    from giqa.models.registry import create

    if "{question}" not in args.prompt_template:
        raise SystemExit("giqa bench run: --prompt-template must contain {question}")
    vlm = create("vlm", args.vlm, **_settings(model_id=args.model_id, device=args.device, dtype=args.dtype,
                                              batch_size=args.batch_size, image_aspect=args.image_aspect))
    from giqa.bench.runner import default_prompt

    template = args.prompt_template
    try:
        out = run_bench(vlm, args.bench, args.images, args.out, batch_size=args.batch_size,
                        max_new_tokens=args.max_new_tokens,
                        prompt_fn=lambda s: template.replace("{question}", default_prompt(s)),
                        resume=not args.no_resume, progress=not args.no_progress, limit=args.limit)
    finally:
        vlm.close()
    print(f"predictions written to {out}")
    if getattr(vlm, "random_weights", False):
        print("note: the model has random weights; its answers are meaningless", file=sys.stderr)
    return 0


def _score(args: argparse.Namespace) -> int:
    from giqa.bench.report import compare_reports, table5_markdown, unique_names, write_reports
    from giqa.bench.scoring import read_bench, score

    fmts = _formats(args)
    try:
        gt = read_bench(args.gt)
        refs = _references(args)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"giqa bench score: error: {exc}") from None
    names = args.name or unique_names(args.predictions)
    judge, embedder = _judge(args), None
    if args.embedder:
        from giqa.models.registry import create

        embedder = create("embedder", args.embedder, **_settings(model_id=args.embedder_model))
    try:
        reports = []
        for k, path in enumerate(args.predictions):
            try:
                reports.append(score(path, gt, fmt=fmts[k], judge=judge, embedder=embedder, bleu_flavour=args.bleu,
                                     tokenizer=args.tokenizer, yes_no_fallback=args.yes_no_fallback, name=names[k],
                                     n_boot=args.bootstrap, seed=args.seed, command=_command_line(args)))
            except OSError as exc:
                raise SystemExit(f"giqa bench score: error: {exc}") from None
    finally:
        if judge is not None:
            judge.llm.close()
            judge.cache.close()
        if embedder is not None:
            embedder.close()
    comparisons = [] if args.no_compare else compare_reports(reports, n_boot=args.bootstrap, seed=args.seed)
    print(table5_markdown(reports + refs, comparisons=comparisons), end="")
    if args.out:
        paths = write_reports(reports + refs, args.out, radar=not args.no_radar, comparisons=comparisons)
        print(f"reports written to {args.out}: {', '.join(sorted(p.name for p in paths.values()))}")
    return 0


def _formats(args: argparse.Namespace) -> list[str]:
    if args.name and len(args.name) != len(args.predictions):
        raise SystemExit(f"giqa bench score: {len(args.name)} --name for {len(args.predictions)} prediction files")
    if args.name and len(set(args.name)) != len(args.name):
        raise SystemExit(f"giqa bench score: --name values must differ, got {args.name}")
    fmts = args.fmt or ["auto"]
    if len(fmts) == 1:
        return fmts * len(args.predictions)
    if len(fmts) != len(args.predictions):
        raise SystemExit(f"giqa bench score: {len(fmts)} --format for {len(args.predictions)} prediction files "
                         "(give one for all, or one per file)")
    return fmts


def _references(args: argparse.Namespace) -> list:
    if args.reference is None:
        return []
    from giqa.bench.paper_table5 import reference_reports

    return reference_reports(args.reference or None)


def _judge(args: argparse.Namespace):
    if not args.judge:
        if args.judge_timeout is not None or args.judge_retries is not None:
            raise SystemExit("giqa bench score: --judge-timeout/--judge-retries need --judge")
        return None
    from giqa.bench.judge import Judge
    from giqa.models.registry import create

    http = _settings(timeout_s=args.judge_timeout, max_retries=args.judge_retries)
    if http and args.judge != "openai":
        raise SystemExit("giqa bench score: --judge-timeout/--judge-retries apply to --judge openai only")
    llm = create("llm", args.judge, **_settings(model_id=args.judge_model, base_url=args.judge_base_url,
                                                device=args.judge_device), **http)
    cache = args.judge_cache or (str(Path(args.out) / "judge_cache.sqlite") if args.out else None)
    return Judge(llm, cache=cache, max_retries=args.judge_parse_retries)


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command as it ran (options that differ from their defaults), for the report."""
    out = ["giqa", "bench", "score", *args.predictions, "--gt", args.gt]
    for flag, value in (("--format", args.fmt), ("--name", args.name)):
        for v in value or []:
            out += [flag, v]
    for flag, value, default in (
        ("--out", args.out, None), ("--bleu", args.bleu, "coco"), ("--tokenizer", args.tokenizer, "auto"),
        ("--judge", args.judge, None), ("--judge-model", args.judge_model, None),
        ("--judge-base-url", args.judge_base_url, None), ("--judge-device", args.judge_device, None),
        ("--judge-timeout", args.judge_timeout, None), ("--judge-retries", args.judge_retries, None),
        ("--judge-parse-retries", args.judge_parse_retries, 2), ("--judge-cache", args.judge_cache, None),
        ("--embedder", args.embedder, None), ("--embedder-model", args.embedder_model, None),
        ("--bootstrap", args.bootstrap, 1000), ("--seed", args.seed, 0),
    ):
        if value != default:
            out += [flag, str(value)]
    for flag, on in (("--yes-no-fallback", args.yes_no_fallback), ("--no-compare", args.no_compare),
                     ("--no-radar", args.no_radar)):
        if on:
            out.append(flag)
    if args.reference is not None:
        out += ["--reference", *args.reference]
    return out
