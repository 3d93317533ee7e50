"""pytest-benchmark suites of giqa's CPU benchmarks: ``make bench`` / ``make bench-compare``.

Each case is one benchmark *group* holding giqa and its peers on the same input, so
pytest-benchmark's table gives every contender's time and, in parentheses, its ratio to the
fastest of the group. Every benchmark runs a bounded number of rounds
(``benchmark.pedantic``), so a suite takes the same time on a loaded machine (it is only
slower); ``--bench-rounds N`` caps the rounds of every benchmark (e.g. 1 for a smoke run).
Figures derived from a timing (M boxes/s, MB/s, samples/s, a target met or missed) are put in
``benchmark.extra_info``: saved with the run and printed after the tables.

Run from the repository root (``make bench`` does this with ``--benchmark-save``)::

    .venv/bin/python -m pytest benchmarks/ -p no:cacheprovider   # every suite
    .venv/bin/python -m pytest benchmarks/bench_geometry.py -k iou

``benchmarks/`` is outside ``tests/``, so ``make test`` never collects these. The GPU
benchmarks (``bench_paper_scale.py``, ``bench_train_gpu.py``) are scripts, not collected here;
``bench_scoring.py`` and ``bench_ptb.py`` are suites and scripts (``python benchmarks/bench_scoring.py``
prints the tables recorded in ``benchmarks/results/bench.md``).
"""

from __future__ import annotations

import pytest

# The suites (files named bench_*.py are collected when the directory is given, not only by name).
SUITES = {"bench_geometry", "bench_text", "bench_pipeline", "bench_detection", "bench_train", "bench_scaling",
          "bench_scoring", "bench_ptb"}


def pytest_addoption(parser) -> None:
    group = parser.getgroup("giqa benchmarks")
    group.addoption("--bench-rounds", type=int, default=None,
                    help="at most this many timed rounds per benchmark (default: each benchmark's own)")
    group.addoption("--detection-config", choices=("tiny", "cpu", "paper"), default="tiny",
                    help="bench_detection.py's model: giqa's tiny test model, Grounding DINO-T (cpu) or base (paper)")
    group.addoption("--detection-images", type=int, default=None,
                    help="bench_detection.py's images (default: 24 tiny, 6 cpu, 48 paper)")


def pytest_collect_file(file_path, parent):
    # files given by name are collected by pytest itself; add the suites when a directory is given
    if file_path.suffix == ".py" and file_path.stem in SUITES and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


class Measure:
    """``measure(group, fn, rounds=5, iterations=1, warmup=1, setup=None)``: time ``fn`` for
    ``rounds`` rounds of ``iterations`` calls each, after ``warmup`` untimed rounds, in benchmark
    group ``group``, and return its result. ``setup`` (called before each round, untimed)
    returns ``(args, kwargs)`` for ``fn`` (then one call per round). After it,
    :attr:`seconds` is the fastest call; :meth:`info` adds derived figures."""

    def __init__(self, benchmark, cap) -> None:
        self.benchmark, self.cap = benchmark, cap

    def __call__(self, group: str, fn, *, rounds: int = 5, iterations: int = 1, warmup: int = 1, setup=None):
        self.benchmark.group = group
        n = max(1, min(rounds, self.cap) if self.cap else rounds)
        if setup is not None:
            return self.benchmark.pedantic(fn, setup=setup, rounds=n, warmup_rounds=warmup)
        return self.benchmark.pedantic(fn, rounds=n, iterations=iterations, warmup_rounds=warmup)

    @property
    def seconds(self) -> float:
        """The fastest call's seconds (NaN under ``--benchmark-disable``)."""
        stats = getattr(self.benchmark, "stats", None)
        return float(stats.stats.min) if stats is not None else float("nan")

    def info(self, **figures) -> None:
        self.benchmark.extra_info.update(figures)


@pytest.fixture
def measure(benchmark, request) -> Measure:
    return Measure(benchmark, request.config.getoption("--bench-rounds"))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """After pytest-benchmark's tables: each benchmark's derived figures (its ``extra_info``)."""
    session = getattr(config, "_benchmarksession", None)
    rows = [b for b in getattr(session, "benchmarks", []) if getattr(b, "extra_info", None)]
    if not rows:
        return
    terminalreporter.section("derived figures (extra_info)")
    group = None
    for b in sorted(rows, key=lambda b: (b.group or "", b.name)):
        if b.group != group:
            group = b.group
            terminalreporter.write_line(f"{group}:")
        info = "; ".join(f"{k} {v}" for k, v in b.extra_info.items())
        terminalreporter.write_line(f"  {b.name}: {info}")
