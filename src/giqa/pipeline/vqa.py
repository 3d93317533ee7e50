"""VQA pipeline (paper section 3.2, Fig. 3b): DES samples -> grounded question-answer pairs.

Stages (record dicts to record dicts, see ``giqa.pipeline``):

1. :class:`GenerateStage` (``"generate"``, needs ``llm``): two prompts per DES sample, one for
   Yes/No and one for What/Which/Why/How questions, fed the description and the key objects
   (name and quality); the answers are JSON validated with pydantic (bounded retries).
2. :class:`FilterStage` (``"filter"``): normalises and filters the pairs. Rule: a pair is kept
   when its question or answer mentions a key object (its name or phrase, by
   :func:`giqa.text.is_mentioned`, the rule fusion and DES use) or a quality keyword
   (``VqaConfig.quality_keywords``, matched at word starts). Yes/No
   answers must start with yes/no and become ``"Yes."``/``"No."``; open questions must start
   with What/Which/Why/How and have an answer of at most ``max_answer_words`` words.
   Duplicate questions (same text, any case) are dropped.
3. :class:`GroundStage` (``"ground"``): writes the boxes of the key object into the question
   (referring: the object is named in the question) or else into the answer (grounding).
   A pair naming no key object is dropped unless ``allow_ungrounded``.

Balancing (Yes vs No, Yes/No vs open) is a whole-dataset step: :func:`giqa.pipeline.balance_vqa`.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from pydantic import BaseModel, Field

from giqa.errors import ParseError
from giqa.pipeline.config import VqaConfig, fingerprint
from giqa.pipeline.records import content_key, finalize_records, set_error
from giqa.pipeline.stages import BackendSlot, Stage, generate_json, record_backend

__all__ = ["VqaPipeline", "GenerateStage", "FilterStage", "GroundStage", "QAPair", "QAList"]

OPEN_KINDS = ("what", "which", "why", "how")
# DES sample meta fields every VQA sample made from it carries (per-source statistics).
CARRIED_META = ("source", "source_id")


class QAPair(BaseModel):
    """One generated pair; ``object`` names the key object it is about (or ``None``)."""

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    object: Optional[str] = None


class QAList(BaseModel):
    qa: list[QAPair]


def _coerce_qa(data: Any) -> Any:
    return {"qa": data} if isinstance(data, list) else data


def _objects(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Key objects of a record: ``{"name", "phrase", "quality", "boxes"}`` per region."""
    out = []
    for g in record.get("regions") or []:
        tag = g.get("tag") or {}
        out.append({
            "name": tag.get("name") or g["phrase"],
            "phrase": g["phrase"],
            "quality": tag.get("quality") or "unknown",
            "boxes": g["boxes"],
            "tag": tag or None,
        })
    return out


class GenerateStage(Stage):
    name = "generate"
    needs = ("llm",)

    def __init__(self, llm: Any, config: VqaConfig = VqaConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.generate_batch_size)
        self.llm = llm if isinstance(llm, BackendSlot) else BackendSlot("llm", llm)
        self.config = config

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from giqa import prompts
        from giqa.text import format_boxes

        cfg = self.config
        n, m = cfg.grid
        families = [(f, prompts.load(p), n) for f, p, n in (
            ("yes_no", cfg.yes_no_prompt, cfg.yes_no_per_sample),
            ("open", cfg.open_prompt, cfg.open_per_sample),
        ) if n > 0]
        out = [dict(r) for r in records]
        convs, where = [], []
        for i, r in enumerate(out):
            objs = "\n".join(
                f"- {o['name']}: {o['quality']} {format_boxes(o['boxes'], n=n, m=m)}" for o in _objects(r)
            ) or "- (none)"
            for family, prompt, count in families:
                convs.append(prompt.messages(description=r["description"], objects=objs, n=count))
                where.append((i, family, prompt))
        if not convs:
            return out
        llm = self.llm.get()
        results = generate_json(llm, convs, QAList, max_retries=cfg.max_retries,
                                max_new_tokens=cfg.max_new_tokens, coerce=_coerce_qa)
        failures: dict[int, list[str]] = {}
        for (i, family, prompt), res in zip(where, results):
            r = out[i]
            record_backend(r, "llm", llm)
            r.setdefault("prompts", {})[prompt.name] = prompt.version
            r.setdefault("qa", [])
            if isinstance(res, Exception):
                failures.setdefault(i, []).append(f"{family}: {res}")
                continue
            for qa in res.qa:
                r["qa"].append({"family": family, **qa.model_dump()})
        for i, msgs in failures.items():
            if len(msgs) == len(families):  # every prompt failed: the record fails
                out[i] = set_error(out[i], self.name, ParseError("; ".join(msgs)))
            else:
                out[i]["warnings"] = out[i].get("warnings", []) + msgs
        return out


def _word_pattern(words: Iterable[str], *, whole: bool) -> Optional[re.Pattern[str]]:
    """One alternation of escaped literals (no nested quantifiers: linear-time matching)."""
    ws = sorted({w.casefold() for w in words if w and w.strip()}, key=len, reverse=True)
    if not ws:
        return None
    body = "|".join(re.escape(w) for w in ws)
    return re.compile(rf"(?<!\w)(?:{body})" + (r"(?!\w)" if whole else ""))


class FilterStage(Stage):
    name = "filter"
    needs = ()

    def __init__(self, config: VqaConfig = VqaConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.filter_batch_size)
        self.config = config
        self._quality = _word_pattern(config.quality_keywords, whole=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_quality", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._quality = _word_pattern(self.config.quality_keywords, whole=False)

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from giqa.text import is_mentioned

        out = []
        for r in records:
            r = dict(r)
            objs = _objects(r)
            names = list(dict.fromkeys([o["name"] for o in objs] + [o["phrase"] for o in objs]))
            kept, dropped, seen = [], {}, set()
            for qa in r.get("qa") or []:
                reason, norm = self._normalise(qa)
                if reason is None:
                    text = f"{norm['question']} {norm['answer']}"
                    on_object = any(is_mentioned(name, text) for name in names)
                    on_quality = bool(self._quality and self._quality.search(text.casefold()))
                    if not (on_object or on_quality):
                        reason = "unrelated"
                    elif norm["question"].casefold() in seen:
                        reason = "duplicate"
                if reason is not None:
                    dropped[reason] = dropped.get(reason, 0) + 1
                    continue
                seen.add(norm["question"].casefold())
                kept.append(norm)
            r["qa"] = kept
            r["qa_dropped"] = dropped
            if not kept:
                out.append(set_error(r, self.name, f"no QA pair passed the filter (dropped: {dropped or 'none generated'})",
                                     "NoQAError"))
            else:
                out.append(r)
        return out

    def _normalise(self, qa: dict[str, Any]) -> tuple[Optional[str], dict[str, Any]]:
        from giqa.text import strip_coordinates

        # boxes the LLM copied from the prompt are removed; the ground stage writes them
        q = " ".join(strip_coordinates(str(qa.get("question", ""))).split())
        a = " ".join(strip_coordinates(str(qa.get("answer", ""))).split())
        if not q or not a:
            return "empty", qa
        if not q.endswith("?"):
            q = q.rstrip(".") + "?"
        first = q.split(None, 1)[0].strip(",.:;!?").casefold()
        if qa.get("family") == "yes_no":
            word = a.split(None, 1)[0].strip(",.:;!?").casefold()
            if word not in ("yes", "no"):
                return "not_yes_no", qa
            return None, {**qa, "question": q, "answer": "Yes." if word == "yes" else "No.", "kind": "yes_no"}
        if first not in OPEN_KINDS:
            return "not_open_question", qa
        if len(a.split()) > self.config.max_answer_words:
            return "answer_too_long", qa
        a = a.rstrip(".") + "."
        return None, {**qa, "question": q, "answer": a[0].upper() + a[1:], "kind": first}


class GroundStage(Stage):
    name = "ground"
    needs = ()

    def __init__(self, config: VqaConfig = VqaConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.ground_batch_size)
        self.config = config

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from giqa.text import fuse
        from giqa.types import GroundedPhrase

        n, m = self.config.grid
        out = []
        for r in records:
            r = dict(r)
            objs = _objects(r)
            grounded, dropped = [], 0
            for qa in r.get("qa") or []:
                placed = None
                # the object the LLM named first, then every key object; phrase before name
                order = sorted(objs, key=lambda o: (str(qa.get("object") or "").casefold() not in
                                                     (o["name"].casefold(), o["phrase"].casefold())))
                for field in ("question", "answer"):
                    for o in order:
                        for mention in dict.fromkeys((o["phrase"], o["name"])):
                            text = qa[field]
                            fused = fuse(text, [GroundedPhrase(phrase=mention, boxes=tuple(o["boxes"]))],
                                         style="grid", n=n, m=m)
                            if fused != text:
                                placed = (field, o, mention, fused)
                                break
                        if placed:
                            break
                    if placed:
                        break
                if placed is None:
                    if self.config.allow_ungrounded:
                        grounded.append({**qa, "mode": None, "region": None})
                    else:
                        dropped += 1
                    continue
                field, o, mention, fused = placed
                grounded.append({
                    **qa, field: fused,
                    "mode": "referring" if field == "question" else "grounding",
                    "region": {"phrase": mention, "boxes": o["boxes"], "tag": o["tag"]},
                })
            r["qa"] = grounded
            r["qa_ungrounded_dropped"] = dropped
            if not grounded:
                out.append(set_error(r, self.name, f"no QA pair names a key object ({dropped} dropped)", "NoGroundingError"))
            else:
                out.append(r)
        return out


class VqaPipeline:
    """The GIQA-VQA pipeline: DES samples in, VQA samples out (unbalanced; see ``balance_vqa``).

    Example::

        pipe = VqaPipeline(llm=my_llm, config=VqaConfig(seed=0))
        run_local(pipe, pipe.make_inputs(des_samples), "vqa_out/")
    """

    task = "vqa"

    def __init__(self, *, llm: Any = None, config: Optional[VqaConfig] = None, preset: Optional[str] = None) -> None:
        self.config = config or VqaConfig()
        self.preset = preset
        self.stages: list[Stage] = [GenerateStage(llm, self.config), FilterStage(self.config), GroundStage(self.config)]

    @classmethod
    def from_preset(cls, preset: str, *, config: Optional[VqaConfig] = None) -> "VqaPipeline":
        return cls(llm=preset, config=config, preset=preset)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")

    def replace_stage(self, name: str, stage: Stage) -> None:
        self.stages[self.stages.index(self.stage(name))] = stage

    def config_fingerprint(self) -> str:
        from giqa import prompts

        cfg = self.config
        versions = {p: prompts.load(p).version for p in (cfg.yes_no_prompt, cfg.open_prompt)}
        llm = self.stages[0].llm.model_id() if isinstance(getattr(self.stages[0], "llm", None), BackendSlot) else "custom"
        return fingerprint("vqa", cfg.fingerprint_fields(), versions, llm, self.preset)

    def make_inputs(self, samples: Iterable[Any]) -> list[dict[str, Any]]:
        """Input records from DES samples (:class:`giqa.types.Sample` or their dicts).

        Not a sample, not a DES sample, or without a description: an ``"input"`` error record.
        """
        from giqa.text import strip_coordinates
        from giqa.types import Sample, Task

        fp = self.config_fingerprint()
        out = []
        for n, item in enumerate(samples):
            try:
                if isinstance(item, dict) and item.get("_error"):
                    raise ParseError(str(item["_error"]))
                s = item if isinstance(item, Sample) else Sample.model_validate(item)
            except (ValueError, TypeError) as exc:
                rid = item.get("id") if isinstance(item, dict) else None
                out.append(set_error({"key": content_key("bad-item", repr(item)[:10000], fp), "id": str(rid or f"item-{n}"),
                                      "image": item.get("image") if isinstance(item, dict) else None,
                                      "input": {"item": repr(item)[:1000]}},
                                     "input", exc if isinstance(exc, ParseError) else ParseError(f"input {n} is not a valid sample: {exc}")))
                continue
            raw = s.model_dump_json(exclude={"meta"}) + str(s.meta.get("key"))  # not run bookkeeping
            record: dict[str, Any] = {
                "key": content_key(raw, fp),
                "id": s.id,
                "image": s.image,
                "description": s.description or strip_coordinates(s.answer),
                "regions": [
                    {"phrase": g.phrase, "boxes": [list(b.as_tuple()) for b in g.boxes],
                     "tag": g.tag.model_dump(mode="json") if g.tag else None}
                    for g in s.regions if g.boxes
                ],
                "tags": [t.model_dump(mode="json") for t in s.tags],
                "des_provenance": s.provenance.model_dump(mode="json"),
                "des_key": s.meta.get("key"),
                "des_meta": {k: s.meta[k] for k in CARRIED_META if k in s.meta},
                "error": None,
            }
            if s.task is not Task.des:
                out.append(set_error(record, "input", ParseError(f"sample {s.id!r} is a {s.task.value} sample, not DES")))
            elif not record["description"].strip():
                out.append(set_error(record, "input", ParseError(f"sample {s.id!r} has an empty description")))
            else:
                out.append(record)
        return out

    def finalize(self, records: Iterable[dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
        """``(samples, errors)``: one VQA :class:`giqa.types.Sample` per surviving pair."""
        return finalize_records(records, self._samples_of)

    def _samples_of(self, r: dict[str, Any]) -> list[Any]:
        from giqa import __version__
        from giqa.types import GroundedPhrase, Provenance, Sample, Tag

        cfg = self.config
        des_prov = r.get("des_provenance") or {}
        prov = Provenance(
            models={**{f"des_{k}": v for k, v in (des_prov.get("models") or {}).items()}, **(r.get("models") or {})},
            prompts={**(des_prov.get("prompts") or {}), **(r.get("prompts") or {})},
            thresholds=dict(des_prov.get("thresholds") or {}),
            preset=self.preset,
            random_weights=bool(r.get("random_weights") or des_prov.get("random_weights")),
            giqa_version=__version__,
            seed=cfg.seed,
            extra={"des_preset": des_prov.get("preset"), "qa_dropped": r.get("qa_dropped", {})},
        )
        tags = tuple(Tag.model_validate(t) for t in r.get("tags") or [])
        group = []
        for k, qa in enumerate(r["qa"]):
            reg = qa.get("region")
            regions = ()
            if reg:
                regions = (GroundedPhrase(phrase=reg["phrase"], boxes=tuple(reg["boxes"]),
                                          tag=Tag.model_validate(reg["tag"]) if reg.get("tag") else None),)
            meta = {**(r.get("des_meta") or {}), "key": r["key"], "record_id": r["id"], "des_id": r["id"],
                    "des_key": r.get("des_key"), "object": qa.get("object")}
            if qa["kind"] == "yes_no":
                meta["answer_label"] = "yes" if qa["answer"].startswith("Yes") else "no"
            group.append(Sample(
                id=f"{r['id']}-vqa-{k:02d}", image=r["image"], task="vqa", question=qa["question"],
                answer=qa["answer"], vqa_kind=qa["kind"], vqa_mode=qa.get("mode"), regions=regions,
                tags=tags, description=r["description"], grid=tuple(cfg.grid), provenance=prov, meta=meta,
            ))
        return group
