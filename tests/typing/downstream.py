"""A downstream script, type-checked by tests/test_typing.py: what mypy sees of giqa's API."""

from giqa.geometry import GridCodec
from giqa.models import CallableLLM
from giqa.pipeline import DesConfig, DesPipeline, Record, RunSummary, run_local
from giqa.text import parse_grounded

reveal_type(DesPipeline)
reveal_type(GridCodec)
reveal_type(parse_grounded)
reveal_type(run_local)

pipe = DesPipeline(llm=CallableLLM(lambda messages: "{}"), config=DesConfig(root="images"))
samples = pipe.run([{"image": "a.jpg", "description": "The sky is bright."}])
reveal_type(samples)
records = pipe.make_inputs([])
reveal_type(records)
summary: RunSummary = run_local(pipe, records, "out")
first: Record = records[0]
