"""Assemble benchmarks/RESULTS.md from the summary and each benchmark's results/<area>.md.

Run after any benchmark that rewrote its results file:
    .venv/bin/python benchmarks/collect_results.py
"""

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ("geometry", "text", "pipeline", "detection", "paper_scale", "llm", "bench", "scaling", "train")


def main() -> None:
    parts = [(HERE / "results" / "_summary.md").read_text(encoding="utf-8").rstrip() + "\n"]
    for area in ORDER:
        body = (HERE / "results" / f"{area}.md").read_text(encoding="utf-8").rstrip()
        # demote each file's headings one level under RESULTS.md's own
        body = "\n".join("#" + line if line.startswith("#") else line for line in body.splitlines())
        parts.append(body + "\n")
    (HERE / "RESULTS.md").write_text("\n".join(parts), encoding="utf-8")


if __name__ == "__main__":
    main()
