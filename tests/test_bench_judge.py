"""LLM judge: score parsing, versioned prompts, cache (no second call), retries then report."""

from __future__ import annotations

import pytest

from giqa.bench.judge import Judge, JudgeCache, load_prompt, parse_score, parse_yes_no
from giqa.models.callable import CallableLLM, scripted


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"score": 3}', 3),
        (' {"score": 0} ', 0),
        ('```json\n{"score": 4}\n```', 4),
        ("Score: 2", 2),
        ("score = 1, because the cup is missing", 1),
        ("4", 4),
        ("3/4", 3),
        ('{"score": 5}', 4),  # clamped to the scale
        ('{"score": 2.5}', 2.5),
        ("score: 2.5", 2.5),
        ('{"score": "3"}', 3),
        ("4 out of 10", 1.6),  # put on the 0-4 scale
        ('{"Score": "8/10"}', 3.2),
        ("Score: **3** - mostly right", 3),
        ("The description is good.", None),
        ("7", 4),
        ("-1", 0),
        ("", None),
        ('{"score": null}', None),
    ],
)
def test_parse_score(text, expected):
    got = parse_score(text)
    assert got == (None if expected is None else pytest.approx(expected))


def test_rescaled_or_clamped_scores_are_logged(caplog):
    with caplog.at_level("WARNING", logger="giqa.bench.judge"):
        assert parse_score("4 out of 10") == pytest.approx(1.6)
        assert parse_score('{"score": 9}') == 4
        assert parse_score('{"score": 3}') == 3
    assert len(caplog.records) == 2
    assert "out of 10" in caplog.records[0].getMessage() and "clamped" in caplog.records[1].getMessage()


def test_parse_yes_no():
    assert parse_yes_no('{"answer": "Yes"}') == "yes"
    assert parse_yes_no("no.") == "no"
    assert parse_yes_no('{"answer": "maybe"}') is None


def test_prompts_are_versioned_package_data():
    text = load_prompt("judge_des", "v1")
    assert "{reference}" in text and "{candidate}" in text
    with pytest.raises(ValueError):
        load_prompt("judge_des", "v999")


def _grader(messages):
    """Scores by word overlap with the reference, so the judge's input matters."""
    prompt = messages[0]["content"]
    ref = prompt.split("Reference description:\n")[1].split("\n\n")[0].lower().split()
    cand = prompt.split("Candidate description:\n")[1].split("\n\n")[0].lower().split()
    return '{"score": %d}' % round(4 * len(set(ref) & set(cand)) / max(1, len(set(ref))))


def test_cache_second_identical_call_does_not_reach_the_model(tmp_path):
    llm = CallableLLM(_grader, model_id="grader")
    judge = Judge(llm, cache=tmp_path / "cache.sqlite")
    first = judge.score_descriptions(["the sky is blurry", "all good"], ["the sky is blurry", "the sky is blurry"])
    assert [r.score for r in first] == [4, 0]
    assert llm.calls == 1 and judge.model_calls == 2
    again = judge.score_descriptions(["the sky is blurry", "all good"], ["the sky is blurry", "the sky is blurry"])
    assert [r.score for r in again] == [4, 0] and all(r.cached for r in again)
    assert llm.calls == 1
    # a new Judge over the same SQLite file: still no call
    judge.cache.close()
    llm2 = CallableLLM(_grader, model_id="grader")
    judge2 = Judge(llm2, cache=tmp_path / "cache.sqlite")
    assert [r.score for r in judge2.score_descriptions(["all good"], ["the sky is blurry"])] == [0]
    assert llm2.calls == 0


@pytest.mark.parametrize("change", [{"model_id": "other"}, {"temperature": 0.7}, {"max_new_tokens": 8}])
def test_cache_key_covers_model_and_parameters(change):
    cache = JudgeCache()
    llm = CallableLLM(_grader, model_id="grader")
    Judge(llm, cache=cache).score_descriptions(["a"], ["a"])
    llm2 = CallableLLM(_grader, model_id=change.get("model_id", "grader"))
    kw = {k: v for k, v in change.items() if k != "model_id"}
    Judge(llm2, cache=cache, **kw).score_descriptions(["a"], ["a"])
    assert llm2.calls == 1 and len(cache) == 2


def test_unparseable_output_is_retried_with_a_reminder_then_succeeds():
    seen = []

    def fn(messages):
        seen.append(messages)
        return "I think it is quite good" if len(seen) == 1 else '{"score": 3}'

    judge = Judge(CallableLLM(fn), max_retries=2)
    (r,) = judge.score_answers(["What is blurry?"], ["the sky"], ["The sky."])
    assert r.score == 3 and r.attempts == 2 and r.ok
    assert "could not be read" in seen[1][-1]["content"]
    assert seen[1][1] == {"role": "assistant", "content": "I think it is quite good"}


def test_unparseable_output_after_retries_is_reported_not_cached():
    llm = CallableLLM(scripted(["good", "very good", "excellent"]))
    judge = Judge(llm, max_retries=2)
    (r,) = judge.score_descriptions(["x"], ["y"])
    assert r.score is None and not r.ok and r.attempts == 3
    assert "unparseable" in r.error and r.raw == "excellent"
    assert len(judge.cache) == 0


def test_yes_no_fallback_judge():
    judge = Judge(CallableLLM(lambda m: '{"answer": "no"}' if "hardly" in m[0]["content"] else "unknown"))
    res = judge.yes_no(["Is it sharp?", "Is it dark?"], ["hardly at all", "hmm"])
    assert [r.score for r in res] == [0, None]


def test_judge_errors_are_wrapped():
    def boom(_):
        raise RuntimeError("server down")

    from giqa.errors import BackendError

    with pytest.raises(BackendError, match="server down"):
        Judge(CallableLLM(boom)).score_descriptions(["a"], ["b"])
    with pytest.raises(ValueError):
        Judge(CallableLLM(boom)).score_descriptions(["a"], ["b", "c"])


class _ServedLLM(CallableLLM):
    """A CallableLLM that says which server it talks to (as OpenAICompatibleLLM does)."""

    def __init__(self, fn, base_url, **kw):
        super().__init__(fn, **kw)
        self.base_url = base_url


def test_cache_key_covers_the_server_url():
    cache = JudgeCache()
    a = _ServedLLM(_grader, "http://server-a/v1", model_id="grader")
    b = _ServedLLM(_grader, "http://server-b/v1", model_id="grader")
    assert Judge(a, cache=cache).base_url == "http://server-a/v1"
    Judge(a, cache=cache).score_descriptions(["a"], ["a"])
    Judge(b, cache=cache).score_descriptions(["a"], ["a"])
    assert b.calls == 1 and len(cache) == 2  # same model name, another server: asked again
    Judge(a, cache=cache).score_descriptions(["a"], ["a"])
    assert a.calls == 1


def test_replies_are_cached_before_a_later_batch_fails(tmp_path):
    calls = []

    def fn(messages):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("server went away")
        return '{"score": 2}'

    judge = Judge(CallableLLM(fn), cache=tmp_path / "c.sqlite", batch_size=2)
    from giqa.errors import BackendError

    with pytest.raises(BackendError, match="went away"):
        judge.score_descriptions(["a", "b", "c", "d"], ["r", "r", "r", "r"])
    assert len(judge.cache) == 2  # the first batch's replies survive
    judge.cache.close()
    again = Judge(CallableLLM(lambda m: '{"score": 3}'), cache=tmp_path / "c.sqlite", batch_size=2)
    res = again.score_descriptions(["a", "b", "c", "d"], ["r", "r", "r", "r"])
    assert [r.score for r in res] == [2, 2, 3, 3] and [r.cached for r in res] == [True, True, False, False]
