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

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Iterable, Optional

from pydantic import BaseModel, Field

from giqa.errors import ParseError
from giqa.models.roles import Role
from giqa.pipeline.backends import BackendSlot
from giqa.pipeline.base import Pipeline
from giqa.pipeline.config import VqaConfig
from giqa.pipeline.inputs import clean_text, item_repr, mark_id_clashes
from giqa.pipeline.records import QAItem, Region, VqaRecord, content_key
from giqa.pipeline.stages import Stage, generate_json
from giqa.text.mentions import is_mentioned
from giqa.types import Sample

if TYPE_CHECKING:
    from giqa.models.protocols import LLM
    from giqa.models.spec import BackendSpec

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


def _name(o: Region) -> str:
    return o.tag.name if o.tag is not None else o.phrase


class GenerateStage(Stage[VqaRecord]):
    name = "generate"
    needs = (Role.llm,)

    def __init__(self, llm: Any, config: VqaConfig = VqaConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.generate_batch_size)
        self.llm = BackendSlot(Role.llm, llm)
        self.config = config

    def process(self, records: list[VqaRecord]) -> list[VqaRecord]:
        from giqa import prompts
        from giqa.text import format_boxes

        cfg = self.config
        n, m = cfg.grid
        families = [(f, prompts.load(p), k) for f, p, k in (
            ("yes_no", cfg.yes_no_prompt, cfg.yes_no_per_sample),
            ("open", cfg.open_prompt, cfg.open_per_sample),
        ) if k > 0]
        out = list(records)
        convs, where = [], []
        for i, r in enumerate(out):
            objs = "\n".join(
                f"- {_name(o)}: {o.tag.quality if o.tag else 'unknown'} {format_boxes(list(o.boxes), n=n, m=m)}"
                for o in r.objects
            ) or "- (none)"
            for family, prompt, count in families:
                convs.append(prompt.messages(description=r.description, objects=objs, n=count))
                where.append((i, family, prompt))
        if not convs:
            return out
        llm = self.llm.get()
        results = generate_json(llm, convs, QAList, max_retries=cfg.max_retries,
                                max_new_tokens=cfg.max_new_tokens, coerce=_coerce_qa)
        qa: dict[int, list[QAItem]] = {}
        failures: dict[int, list[str]] = {}
        for (i, family, prompt), res in zip(where, results):
            out[i] = out[i].used(Role.llm.value, llm).with_prompt(prompt.name, prompt.version)
            if isinstance(res, Exception):
                failures.setdefault(i, []).append(f"{family}: {res}")
                continue
            qa.setdefault(i, []).extend(
                QAItem(family=family, question=clean_text(x.question), answer=clean_text(x.answer),
                       object=clean_text(x.object) if x.object else None) for x in res.qa)
        for i, r in enumerate(out):
            msgs = failures.get(i, [])
            if families and len(msgs) == len(families):  # every prompt failed: the record fails
                out[i] = r.failed(self.name, ParseError("; ".join(msgs)))
            else:
                out[i] = r.replace(qa=r.qa + tuple(qa.get(i, [])), warnings=r.warnings + tuple(msgs))
        return out


def _prefix_pattern(words: Iterable[str]) -> Optional[re.Pattern[str]]:
    """Any of ``words`` at the start of a word, case-folded: one alternation of escaped literals
    (no nested quantifiers: linear-time matching). Quality keywords match word-prefix-wise on
    purpose ("overexpos" finds "overexposed"); objects use :func:`giqa.text.is_mentioned`."""
    ws = sorted({w.casefold() for w in words if w and w.strip()}, key=len, reverse=True)
    if not ws:
        return None
    body = "|".join(re.escape(w) for w in ws)
    return re.compile(rf"(?<!\w)(?:{body})")


class FilterStage(Stage[VqaRecord]):
    name = "filter"

    def __init__(self, config: VqaConfig = VqaConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.filter_batch_size)
        self.config = config
        self._quality = _prefix_pattern(config.quality_keywords)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_quality", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._quality = _prefix_pattern(self.config.quality_keywords)

    def process(self, records: list[VqaRecord]) -> list[VqaRecord]:
        return [self._filter(r) for r in records]

    def _filter(self, r: VqaRecord) -> VqaRecord:
        names = list(dict.fromkeys([_name(o) for o in r.objects] + [o.phrase for o in r.objects]))
        kept: list[QAItem] = []
        dropped: dict[str, int] = {}
        seen: set[str] = set()
        for qa in r.qa:
            reason, norm = self._normalise(qa)
            if reason is None:
                text = f"{norm.question} {norm.answer}"
                on_object = any(is_mentioned(name, text) for name in names)
                on_quality = bool(self._quality and self._quality.search(text.casefold()))
                if not (on_object or on_quality):
                    reason = "unrelated"
                elif norm.question.casefold() in seen:
                    reason = "duplicate"
            if reason is not None:
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            seen.add(norm.question.casefold())
            kept.append(norm)
        r = r.replace(qa=tuple(kept), qa_dropped=dropped)
        if not kept:
            return r.failed(self.name, f"no QA pair passed the filter (dropped: {dropped or 'none generated'})", "NoQAError")
        return r

    def _normalise(self, qa: QAItem) -> tuple[Optional[str], QAItem]:
        from giqa.text import strip_coordinates

        # boxes the LLM copied from the prompt are removed; the ground stage writes them
        q = " ".join(strip_coordinates(qa.question).split())
        a = " ".join(strip_coordinates(qa.answer).split())
        if not q or not a:
            return "empty", qa
        if not q.endswith("?"):
            q = q.rstrip(".") + "?"
        first = q.split(None, 1)[0].strip(",.:;!?").casefold()
        if qa.family == "yes_no":
            word = a.split(None, 1)[0].strip(",.:;!?").casefold()
            if word not in ("yes", "no"):
                return "not_yes_no", qa
            return None, dataclasses.replace(qa, question=q, answer="Yes." if word == "yes" else "No.", kind="yes_no")
        if first not in OPEN_KINDS:
            return "not_open_question", qa
        if len(a.split()) > self.config.max_answer_words:
            return "answer_too_long", qa
        a = a.rstrip(".") + "."
        return None, dataclasses.replace(qa, question=q, answer=a[0].upper() + a[1:], kind=first)


class GroundStage(Stage[VqaRecord]):
    name = "ground"

    def __init__(self, config: VqaConfig = VqaConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.ground_batch_size)
        self.config = config

    def process(self, records: list[VqaRecord]) -> list[VqaRecord]:
        return [self._ground_record(r) for r in records]

    def _ground_record(self, r: VqaRecord) -> VqaRecord:
        grounded: list[QAItem] = []
        dropped = 0
        for qa in r.qa:
            g = self._ground(qa, r.objects)
            if g is None and self.config.allow_ungrounded:
                g = qa
            if g is None:
                dropped += 1
            else:
                grounded.append(g)
        r = r.replace(qa=tuple(grounded), qa_ungrounded_dropped=dropped)
        if not grounded:
            return r.failed(self.name, f"no QA pair names a key object ({dropped} dropped)", "NoGroundingError")
        return r

    def _ground(self, qa: QAItem, objects: tuple[Region, ...]) -> Optional[QAItem]:
        """``qa`` with the boxes of the first key object it names written at the mention: the
        object the LLM named first, then every key object; phrase before name; question
        (referring) before answer (grounding). None when it names no key object."""
        from giqa.text import fuse
        from giqa.types import GroundedPhrase

        n, m = self.config.grid
        named = str(qa.object or "").casefold()
        order = sorted(objects, key=lambda o: named not in (_name(o).casefold(), o.phrase.casefold()))
        for field_name in ("question", "answer"):
            text = getattr(qa, field_name)
            for o in order:
                for mention in dict.fromkeys((o.phrase, _name(o))):
                    fused = fuse(text, [GroundedPhrase(phrase=mention, boxes=o.boxes)], style="grid", n=n, m=m)
                    if fused != text:
                        return dataclasses.replace(
                            qa, **{field_name: fused}, mode="referring" if field_name == "question" else "grounding",
                            region=Region(phrase=mention, boxes=o.boxes, tag=o.tag))
        return None


class VqaPipeline(Pipeline[VqaRecord, Sample]):
    """The GIQA-VQA pipeline: DES samples in, VQA samples out (unbalanced; see ``balance_vqa``).

    Example::

        pipe = VqaPipeline(llm=my_llm, config=VqaConfig(seed=0))
        samples = pipe.run(des_samples)                           # in memory
        run_local(pipe, des_samples, "vqa_out/")                  # on disk, resumable
    """

    task = "vqa"
    record_type = VqaRecord

    def __init__(self, *, llm: "LLM | BackendSpec | BackendSlot | str | None" = None, config: Optional[VqaConfig] = None,
                 preset: Optional[str] = None) -> None:
        self.config = config or VqaConfig()
        self.preset = preset
        self.stages: list[Stage[VqaRecord]] = [GenerateStage(llm, self.config), FilterStage(self.config),
                                               GroundStage(self.config)]

    @classmethod
    def from_preset(cls, preset: str, *, config: Optional[VqaConfig] = None) -> "VqaPipeline":
        return cls(llm=preset, config=config, preset=preset)

    def fingerprint_parts(self) -> dict[str, Any]:
        from giqa import prompts

        cfg = self.config
        versions = {p: prompts.load(p).version for p in (cfg.yes_no_prompt, cfg.open_prompt)}
        return {"config": cfg.fingerprint_fields(), "prompts": versions}

    def make_inputs(self, items: Iterable[Any], *, known_ids: Any = None, progress: bool = False,
                    **_: Any) -> list[VqaRecord]:
        """Input records from DES samples (:class:`giqa.types.Sample` or their dicts).

        Not a sample, not a DES sample, or without a description: an ``"input"`` error record.
        """
        fp = self.fingerprint()
        return mark_id_clashes([self._input(n, item, fp) for n, item in enumerate(items)], known_ids)

    def _input(self, n: int, item: Any, fp: str) -> VqaRecord:
        from giqa.data.io import BadLine
        from giqa.text import strip_coordinates
        from giqa.types import Task

        try:
            if isinstance(item, BadLine):
                raise item.error()
            if isinstance(item, dict) and item.get("_error"):
                raise ParseError(str(item["_error"]))
            s = item if isinstance(item, Sample) else Sample.model_validate(item)
        except (ValueError, TypeError) as exc:
            rid = item.get("id") if isinstance(item, dict) else None
            rec = VqaRecord(key=content_key("bad-item", item_repr(item, 10000), fp), id=str(rid or f"item-{n}"),
                            image=item.get("image") if isinstance(item, dict) else None, input={"item": item_repr(item)})
            return rec.failed("input", exc if isinstance(exc, ParseError) else ParseError(f"input {n} is not a valid sample: {exc}"))
        raw = s.model_dump_json(exclude={"meta"}) + str(s.meta.get("key"))  # not run bookkeeping
        rec = VqaRecord(
            key=content_key(raw, fp), id=s.id, image=s.image, input={"id": s.id, "image": s.image},
            description=clean_text(s.description or strip_coordinates(s.answer)),
            objects=tuple(Region(phrase=g.phrase, boxes=g.boxes, tag=g.tag) for g in s.regions if g.boxes),
            tags=s.tags, des_provenance=s.provenance, des_key=s.meta.get("key"),
            des_meta={k: s.meta[k] for k in CARRIED_META if k in s.meta},
        )
        if s.task is not Task.des:
            return rec.failed("input", ParseError(f"sample {s.id!r} is a {s.task.value} sample, not DES"))
        if not rec.description.strip():
            return rec.failed("input", ParseError(f"sample {s.id!r} has an empty description"))
        return rec

    def outputs(self, record: VqaRecord) -> list[Sample]:
        """One VQA :class:`giqa.types.Sample` per surviving pair."""
        from giqa import __version__
        from giqa.types import GroundedPhrase, Provenance

        cfg, r, des = self.config, record, record.des_provenance
        prov = Provenance(
            models={**{f"des_{k}": v for k, v in des.models.items()}, **r.models},
            prompts={**des.prompts, **r.prompts}, thresholds=dict(des.thresholds), preset=self.preset,
            random_weights=r.random_weights or des.random_weights, giqa_version=__version__, seed=cfg.seed,
            extra={"des_preset": des.preset, "qa_dropped": dict(r.qa_dropped), "run": self.provenance_config(),
                   "backends": {**{f"des_{k}": v for k, v in (des.extra.get("backends") or {}).items()},
                                **r.backend_info}},
        )
        group = []
        for k, qa in enumerate(r.qa):
            regions: tuple[GroundedPhrase, ...] = ()
            if qa.region is not None:
                regions = (GroundedPhrase(phrase=qa.region.phrase, boxes=qa.region.boxes, tag=qa.region.tag),)
            meta: dict[str, Any] = {**r.des_meta, "key": r.key, "record_id": r.id, "des_id": r.id,
                                    "des_key": r.des_key, "object": qa.object}
            if qa.kind == "yes_no":
                meta["answer_label"] = "yes" if qa.answer.startswith("Yes") else "no"
            group.append(Sample(
                id=f"{r.id}-vqa-{k:02d}", image=r.image or "", task="vqa", question=qa.question, answer=qa.answer,
                vqa_kind=qa.kind, vqa_mode=qa.mode, regions=regions, tags=r.tags, description=r.description,
                grid=cfg.grid, provenance=prov, meta=meta,
            ))
        return group
