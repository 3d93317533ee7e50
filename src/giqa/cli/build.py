"""``giqa build``: GIQA-160K assembly steps around ``giqa des`` / ``giqa vqa``.

* ``giqa build sources``: Q-Pathway / DQ-495K files -> DES input items (JSONL).
* ``giqa build export``: samples (run directories or files) -> LLaVA JSON, JSONL, Parquet or a
  Hugging Face ``datasets`` directory, optionally balancing the VQA part first.
* ``giqa build stats``: the Table-1 statistics (Markdown or JSON) and the Fig. 6 PNG.

Each step takes ``--config run.toml``: its ``[build.<step>]`` table gives defaults for the step's
options (same names as the flags, with ``_`` for ``-``); flags given on the command line win.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser("build", help="assemble GIQA-160K: read sources, export, statistics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="build_command", metavar="STEP")

    s = sub.add_parser("sources", help="read Q-Pathway / DQ-495K files into DES input items (JSONL)")
    s.add_argument("--qpathway", nargs="*", default=[], help="Q-Instruct cleaned_labels.json file(s)")
    s.add_argument("--qpathway-prefix", default="q-instruct",
                   help="folder of the Q-Instruct images under the DES root (default: q-instruct)")
    s.add_argument("--dq495k", nargs="*", default=[], help="DataDepictQA metas JSON file(s)")
    s.add_argument("--dq495k-prefix", default="DataDepictQA",
                   help="folder of the DataDepictQA images under the DES root (default: DataDepictQA)")
    s.add_argument("--root", default=None, help="DES image root; with --check-images each image must exist")
    s.add_argument("--check-images", action="store_true", help="check that every selected image exists")
    s.add_argument("--lenient", action="store_true", help="skip malformed records (listed in OUT.errors.jsonl)")
    s.add_argument("--min-words", type=int, default=20,
                   help="shortest description kept where a record's own type field does not decide (default: 20 words)")
    s.add_argument("--keep-full-reference", action="store_true",
                   help="also keep DQ-495K's full-reference records (quality_single_A, judged against a reference image)")
    s.add_argument("--limit", type=int, default=None, help="at most this many items per source")
    s.add_argument("--out", default=None, help="items JSONL (input of giqa des)")
    s.set_defaults(func=_sources)

    e = sub.add_parser("export", help="write samples as LLaVA JSON, JSONL, Parquet or a HF datasets directory")
    e.add_argument("inputs", nargs="+", help="run directories (giqa des/vqa --out) or sample files")
    e.add_argument("--to", default=None, choices=("llava", "jsonl", "parquet", "hf"))
    e.add_argument("--out", default=None, help="output file (directory for --to hf)")
    e.add_argument("--balance", action="store_true", help="balance the VQA samples (Yes = No, Yes/No = open)")
    e.add_argument("--seed", type=int, default=0, help="balancing seed (default: 0)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output")
    e.set_defaults(func=_export)

    t = sub.add_parser("stats", help="Table-1 statistics and the Fig. 6 box-area histogram")
    t.add_argument("inputs", nargs="+", help="run directories or sample files (counted together)")
    t.add_argument("--name", default="GIQA-160K", help="dataset name in the table (default: GIQA-160K)")
    t.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    t.add_argument("--png", default=None, help="write the box-area histogram (Fig. 6) here")
    t.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                   help="another series for the histogram, e.g. 'GIQA-Bench=bench.json' (repeatable)")
    t.add_argument("--bins", type=int, default=20, help="histogram bins on [0, 1] (default: 20)")
    t.set_defaults(func=_stats)
    for step, parser in (("sources", s), ("export", e), ("stats", t)):
        parser.add_argument("--config", default=None, metavar="RUN.toml", help=f"defaults from its [build.{step}] table")
        parser.set_defaults(_step=step, _parser=parser)
    p.set_defaults(func=lambda args: _help(p))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _configure(args: argparse.Namespace, *required: str) -> None:
    """Apply ``--config``'s ``[build.<step>]`` defaults; check the options that must be set."""
    from giqa.cli._run import apply_config_defaults
    from giqa.errors import ConfigError

    if args.config:
        from giqa.pipeline.runconfig import load_run_config

        values = load_run_config(args.config).build.get(args._step, {})
        apply_config_defaults(args, args._parser, values, f"{args.config}: [build.{args._step}]")
    missing = [name for name in required if getattr(args, name) is None]
    if missing:
        raise ConfigError(f"giqa build {args._step}: give {', '.join('--' + m.replace('_', '-') for m in missing)} "
                          f"(or set it in [build.{args._step}] of --config)")


def _load(paths: list[str]) -> list[Any]:
    from giqa.data.writers import iter_samples

    return [s for path in paths for s in iter_samples(path)]


def _sources(args: argparse.Namespace) -> int:
    from giqa.data.dq495k import DQ495KReader
    from giqa.data.io import write_jsonl_atomic
    from giqa.data.qpathway import QPathwayReader

    _configure(args, "out")
    if not args.qpathway and not args.dq495k:
        print("giqa build sources: give --qpathway and/or --dq495k files", file=sys.stderr)
        return 2
    if args.check_images and not args.root:
        print("giqa build sources: --check-images needs --root", file=sys.stderr)
        return 2
    from pathlib import Path

    readers = []
    common = dict(strict=not args.lenient, limit=args.limit, min_words=args.min_words)
    for cls, files, prefix, extra in ((QPathwayReader, args.qpathway, args.qpathway_prefix, {}),
                                      (DQ495KReader, args.dq495k, args.dq495k_prefix,
                                       {"keep_full_reference": args.keep_full_reference})):
        if files:
            root = Path(args.root) / prefix if args.root else None
            readers.append(cls(files, image_root=root, check_images=args.check_images, image_prefix=prefix,
                               **common, **extra))
    items = [it for r in readers for it in r]
    write_jsonl_atomic(args.out, items)
    errors = [e.to_dict() for r in readers for e in r.errors]
    if errors:
        write_jsonl_atomic(args.out + ".errors.jsonl", errors)
    report = {r.name: {"records": r.stats.records, "items": r.stats.items, "skipped": r.stats.skipped,
                       "errors": r.stats.errors, "by_source": r.stats.by_source, "selected_by": r.stats.selected_by,
                       "skipped_by": r.stats.skipped_by, "unknown_types": r.stats.unknown_types} for r in readers}
    print(json.dumps({"out": args.out, "items": len(items), "sources": report}, indent=2))
    if errors:
        print(f"{len(errors)} malformed record(s) skipped; see {args.out}.errors.jsonl", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from giqa.data.stats import dataset_stats
    from giqa.data.writers import export_samples

    _configure(args, "to", "out")
    samples = _load(args.inputs)
    if args.balance:
        from giqa.pipeline.balance import balance_vqa
        from giqa.types import Task

        des = [s for s in samples if s.task is Task.des]
        vqa = balance_vqa([s for s in samples if s.task is Task.vqa], seed=args.seed)
        samples = des + vqa
    path = export_samples(samples, args.out, to=args.to, overwrite=args.overwrite)
    st = dataset_stats(samples, name=str(path))
    print(json.dumps({"out": str(path), "format": args.to, "samples": st.total, "des": st.des,
                      "vqa_yes_no": st.vqa_yes_no, "vqa_open": st.vqa_open, "yes": st.yes, "no": st.no}, indent=2))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from giqa.data.stats import box_area_histogram, dataset_stats

    _configure(args)
    samples = _load(args.inputs)
    st = dataset_stats(samples, name=args.name)
    out = st.to_dict()
    if st.warning:
        print(st.warning, file=sys.stderr)
        out["warning"] = st.warning
    if args.png:
        series: dict[str, Any] = {args.name: samples}
        for spec in args.compare:
            label, sep, path = spec.partition("=")
            if not sep or not label or not path:
                print(f"giqa build stats: --compare wants LABEL=PATH, got {spec!r}", file=sys.stderr)
                return 2
            series[label] = _load([path])
        hist = box_area_histogram(series, args.png, bins=args.bins, title=f"Box area distribution ({args.name})")
        out["histogram"] = {"png": args.png, **hist}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(st.to_markdown(), end="")
        if args.png:
            print(f"\nFig. 6 histogram: {args.png}")
    return 0
