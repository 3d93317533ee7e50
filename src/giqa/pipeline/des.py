"""DES pipeline (paper section 3.2, Fig. 3a, Alg. 1): description -> grounded description.

Four stages, each usable alone (they map record dicts to record dicts, see ``giqa.pipeline``):

1. :class:`TagStage` (``"tags"``, needs ``llm``): {T_r, T_q, T_e} tags from the description,
   JSON validated against :class:`giqa.types.Tag`; ``no_impact`` tags dropped. An input record
   that already has ``tags`` skips the LLM (its tags are validated the same way).
2. :class:`DetectStage` (``"detect"``, needs ``detector``): every tag's phrase T_r of an image
   in one detector call, several images per call.
3. :class:`RefineStage` (``"refine"``, needs ``quality_filter``): IQA-Filter on phrases with
   several boxes ("Is the image quality <T_q>?" on each crop, keep P(yes) >= threshold), then
   :func:`giqa.geometry.box_merge` (T_a, T_o).
4. :class:`FuseStage` (``"fuse"``): :func:`giqa.text.fuse` writes the boxes into the
   description on the grid; the question comes from the pool, drawn with a generator seeded
   by the record key (so the draw does not depend on batch order).

Record fields added on the way: ``tags`` (list of Tag dicts), ``detections`` (per tag: list of
``{"box": [x1, y1, x2, y2], "score"}``, normalised xyxy), ``regions`` (per grounded tag:
``{"phrase", "boxes", "tag", "p_yes"}``), ``question``, ``answer``, ``spans``; plus
``models`` (role -> model id), ``prompts`` (name -> version) and ``random_weights``.
"""

from __future__ import annotations

import hashlib
import io
import random
from typing import Any, Iterable, Optional

from pydantic import BaseModel

from giqa.errors import GiqaError, ImageError, ParseError
from giqa.pipeline.config import DesConfig, fingerprint
from giqa.pipeline.records import content_key, finalize_records, set_error
from giqa.pipeline.stages import BackendSlot, Stage, generate_json, record_backend
from giqa.types import Effect, Tag

__all__ = ["DesPipeline", "TagStage", "DetectStage", "RefineStage", "FuseStage", "TagList"]


class TagList(BaseModel):
    """The tag-extraction answer: ``{"tags": [Tag, ...]}``."""

    tags: list[Tag]


def _coerce_tags(data: Any) -> Any:
    return {"tags": data} if isinstance(data, list) else data


class _ImageCache:
    """Decoded images by record key (the key hashes the image bytes), LRU, bounded in bytes.

    Detection decodes an image and refinement crops the same image: within one process the
    second decode is skipped. Per process, so it needs no sharing across Ray actors.
    """

    def __init__(self, max_bytes: int = 128 << 20) -> None:
        from collections import OrderedDict

        self.max_bytes = max_bytes
        self._items: "OrderedDict[tuple[str, int, int], Any]" = OrderedDict()
        self._bytes = 0

    def get(self, record: dict[str, Any], config: DesConfig) -> Any:
        from giqa.images import load_image

        ck = (record["key"], config.max_pixels, config.max_side)
        im = self._items.get(ck)
        if im is not None:
            self._items.move_to_end(ck)
            return im
        im = load_image(config.root, record["image"], max_pixels=config.max_pixels, max_side=config.max_side)
        size = im.width * im.height * 3
        if size <= self.max_bytes:
            self._items[ck] = im
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.width * old.height * 3
        return im


    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


_IMAGES = _ImageCache()


def clear_image_cache() -> None:
    """Forget the decoded images kept between detection and refinement (this process)."""
    _IMAGES.clear()


def _load(record: dict[str, Any], config: DesConfig):
    return _IMAGES.get(record, config)


class TagStage(Stage):
    name = "tags"
    needs = ("llm",)

    def __init__(self, llm: Any, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.tags_batch_size)
        self.llm = llm if isinstance(llm, BackendSlot) else BackendSlot("llm", llm)
        self.config = config

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from giqa import prompts

        prompt = prompts.load(self.config.tag_prompt)
        out: list[dict[str, Any]] = [dict(r) for r in records]
        ask = []
        for i, r in enumerate(out):
            r.setdefault("prompts", {})
            if r.get("tags") is not None:  # given with the input: validate, no LLM
                try:
                    tags = TagList.model_validate(_coerce_tags(r["tags"])).tags
                except ValueError as exc:
                    out[i] = set_error(r, self.name, ParseError(f"input tags are invalid: {exc}"))
                    continue
                self._set_tags(r, tags, source="input")
            else:
                ask.append(i)
        if ask:
            llm = self.llm.get()
            convs = [prompt.messages(description=out[i]["description"]) for i in ask]
            results = generate_json(
                llm, convs, TagList, max_retries=self.config.max_retries,
                max_new_tokens=self.config.max_new_tokens, coerce=_coerce_tags,
            )
            for i, res in zip(ask, results):
                r = out[i]
                record_backend(r, "llm", llm)
                r["prompts"][prompt.name] = prompt.version
                if isinstance(res, Exception):
                    out[i] = set_error(r, self.name, res)
                else:
                    self._set_tags(r, res.tags, source="llm")
        return out

    @staticmethod
    def _set_tags(r: dict[str, Any], tags: list[Tag], *, source: str) -> None:
        kept = [t for t in tags if t.effect is not Effect.no_impact]
        r["tags"] = [t.model_dump(mode="json") for t in kept]
        r["tags_dropped"] = len(tags) - len(kept)
        r["tags_source"] = source


class DetectStage(Stage):
    name = "detect"
    needs = ("detector",)

    def __init__(self, detector: Any, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.detect_batch_size)
        self.detector = detector if isinstance(detector, BackendSlot) else BackendSlot("detector", detector)
        self.config = config

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [dict(r) for r in records]
        idx, images, phrases = [], [], []
        for i, r in enumerate(out):
            tag_phrases = [t["phrase"] for t in r.get("tags") or []]
            if not tag_phrases:
                r["detections"] = []
                continue
            try:
                images.append(_load(r, self.config))
            except ImageError as exc:
                out[i] = set_error(r, self.name, exc)
                continue
            idx.append(i)
            phrases.append(tag_phrases)
        if idx:
            detector = self.detector.get()
            found = detector.detect(images, phrases)
            if len(found) != len(idx):
                raise GiqaError(f"detector returned {len(found)} results for {len(idx)} images")
            for i, per_image, asked in zip(idx, found, phrases):
                if len(per_image) != len(asked):
                    raise GiqaError(f"detector returned {len(per_image)} phrase results for {len(asked)} phrases")
                r = out[i]
                record_backend(r, "detector", detector)
                r["detections"] = [
                    [{"box": list(d.box.as_tuple()), "score": float(d.score)} for d in dets] for dets in per_image
                ]
        return out


def _crop(image: Any, box: list[float]) -> Any:
    w, h = image.size
    x1, y1 = int(box[0] * w), int(box[1] * h)
    x2, y2 = max(x1 + 1, int(round(box[2] * w))), max(y1 + 1, int(round(box[3] * h)))
    return image.crop((min(x1, w - 1), min(y1, h - 1), min(x2, w), min(y2, h)))


class RefineStage(Stage):
    """IQA-Filter then Box-Merge. Without a quality filter (``None``) only the merge runs.

    If the filter rejects every box of a phrase, ``config.filter_all_rejected`` decides:
    ``"keep_best"`` keeps the box with the highest P(yes) (the detector did find the object;
    the filter's job is to choose among same-class candidates), ``"drop"`` leaves the phrase
    ungrounded (the paper's letter).
    """

    name = "refine"
    needs = ("quality_filter",)

    def __init__(self, quality_filter: Any = None, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.refine_batch_size)
        self.quality_filter = (
            quality_filter if isinstance(quality_filter, BackendSlot) else BackendSlot("quality_filter", quality_filter)
        )
        self.config = config

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from giqa import prompts

        cfg = self.config
        out: list[dict[str, Any]] = [dict(r) for r in records]
        p_yes: dict[tuple[int, int], list[float]] = {}
        if self.quality_filter.configured:
            prompt = prompts.load(cfg.filter_prompt)
            crops, questions, where = [], [], []
            for i, r in enumerate(out):
                multi = [j for j, dets in enumerate(r.get("detections") or []) if len(dets) > 1]
                if not multi:
                    continue
                try:
                    image = _load(r, cfg)
                except ImageError as exc:
                    out[i] = set_error(r, self.name, exc)
                    continue
                r.setdefault("prompts", {})[prompt.name] = prompt.version
                for j in multi:
                    q = prompt.render(quality=r["tags"][j]["quality"]).strip()
                    for k, d in enumerate(r["detections"][j]):
                        crops.append(_crop(image, d["box"]))
                        questions.append(q)
                        where.append((i, j, k))
            if crops:
                qf = self.quality_filter.get()
                probs = qf.p_yes(crops, questions)
                if len(probs) != len(crops):
                    raise GiqaError(f"quality filter returned {len(probs)} values for {len(crops)} crops")
                for (i, j, _k), p in zip(where, probs):
                    p_yes.setdefault((i, j), []).append(float(p))
                    record_backend(out[i], "quality_filter", qf)
        for i, r in enumerate(out):
            if r.get("error") is None:
                r["regions"] = self._regions(r, i, p_yes)
        return out

    def _regions(self, r: dict[str, Any], i: int, p_yes: dict[tuple[int, int], list[float]]) -> list[dict[str, Any]]:
        import numpy as np

        from giqa.geometry import box_merge
        from giqa.text import is_mentioned

        cfg = self.config
        regions = []
        for j, (tag, dets) in enumerate(zip(r.get("tags") or [], r.get("detections") or [])):
            boxes = [d["box"] for d in dets]
            probs = p_yes.get((i, j))
            if probs is not None:
                keep = [k for k, p in enumerate(probs) if p >= cfg.filter_threshold]
                if not keep and cfg.filter_all_rejected == "keep_best":
                    keep = [int(np.argmax(probs))]
                boxes = [boxes[k] for k in keep]
            if not boxes:
                continue
            merged, _ = box_merge(np.asarray(boxes, dtype=np.float64), area_thr=cfg.area_thr, cover_thr=cfg.cover_thr)
            # the description phrase T_r is written at its mention; the bare name if T_r is not verbatim
            mention = tag["phrase"]
            if not is_mentioned(mention, r["description"]) and is_mentioned(tag["name"], r["description"]):
                mention = tag["name"]
            regions.append({
                "phrase": mention,
                "boxes": [[float(v) for v in b] for b in np.asarray(merged).tolist()],
                "tag": tag,
                "p_yes": probs,
            })
        return regions


class FuseStage(Stage):
    name = "fuse"
    needs = ()

    def __init__(self, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.fuse_batch_size)
        self.config = config

    def process(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from giqa import prompts
        from giqa.text import fuse_report
        from giqa.types import Box, GroundedPhrase

        cfg = self.config
        n, m = cfg.grid
        pool = prompts.load(cfg.question_pool)
        questions = pool.items()
        out = []
        for r in records:
            r = dict(r)
            regions = list(r.get("regions") or [])
            # boxes come from Detection boxes and box_merge (already valid): no re-validation here;
            # finalize validates the Sample in full
            phrases = [GroundedPhrase.model_construct(phrase=g["phrase"], span=None, tag=None, boxes=tuple(
                Box.model_construct(x1=b[0], y1=b[1], x2=b[2], y2=b[3]) for b in g["boxes"])) for g in regions]
            report = fuse_report(r["description"], phrases, style="grid", n=n, m=m)
            answer = report.text
            # placed mentions' [start, end) in the description = their spans in the clean text
            placed = {id(p): list(span) for p, span in report.placed}
            fused = {k: placed[id(p)] for k, p in enumerate(phrases) if id(p) in placed}
            for k, g in enumerate(regions):
                g = dict(g)
                g["span"] = fused.get(k)
                regions[k] = g
            r["regions"] = regions
            if not fused and not cfg.keep_ungrounded:
                out.append(set_error(r, self.name, "no key object of the description was grounded "
                                     f"({len(r.get('tags') or [])} tags, {len(regions)} with boxes)", "NoGroundingError"))
                continue
            rng = random.Random(content_key("question", str(cfg.seed), r["key"]))
            r["question"] = questions[rng.randrange(len(questions))]
            r["answer"] = answer
            r.setdefault("prompts", {})[pool.name] = pool.version
            out.append(r)
        return out


class DesPipeline:
    """The GIQA-DES annotation pipeline.

    Backends are keyword arguments: an instance (e.g. :class:`giqa.models.CallableLLM`), a
    :class:`giqa.pipeline.BackendSpec`, or a preset name (built lazily). ``quality_filter=None``
    skips the IQA-Filter (Box-Merge still runs).

    Example::

        pipe = DesPipeline(llm=my_llm, detector=my_detector, quality_filter=my_filter,
                           config=DesConfig(root="images/"))
        summary = run_local(pipe, pipe.make_inputs(items), "out/")
    """

    task = "des"

    def __init__(
        self,
        *,
        llm: Any = None,
        detector: Any = None,
        quality_filter: Any = None,
        config: Optional[DesConfig] = None,
        preset: Optional[str] = None,
    ) -> None:
        self.config = config or DesConfig()
        self.preset = preset
        self.stages: list[Stage] = [
            TagStage(llm, self.config),
            DetectStage(detector, self.config),
            RefineStage(quality_filter, self.config),
            FuseStage(self.config),
        ]

    @classmethod
    def from_preset(cls, preset: str, *, config: Optional[DesConfig] = None, quality_filter: bool = True) -> "DesPipeline":
        """All backends from the preset ``preset`` (``tiny-random``, ``small``, ``paper``), lazily."""
        return cls(
            llm=preset, detector=preset, quality_filter=preset if quality_filter else None,
            config=config, preset=preset,
        )

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")

    def replace_stage(self, name: str, stage: Stage) -> None:
        """Swap the stage called ``name`` for ``stage`` (any object following the stage API)."""
        self.stages[[s.name for s in self.stages].index(self.stage(name).name)] = stage

    # -- keys ----------------------------------------------------------------------------
    def _backend_ids(self) -> dict[str, str]:
        ids = {}
        for s in self.stages:
            for role in getattr(s, "needs", ()):
                slot = getattr(s, role, None)
                if isinstance(slot, BackendSlot):
                    ids[role] = slot.model_id()
        return ids

    def config_fingerprint(self) -> str:
        from giqa import prompts

        cfg = self.config
        versions = {n: prompts.load(n).version for n in (cfg.tag_prompt, cfg.filter_prompt, cfg.question_pool)}
        return fingerprint("des", cfg.fingerprint_fields(), versions, self._backend_ids(), self.preset)

    # -- inputs / outputs ----------------------------------------------------------------
    def make_inputs(self, items: Iterable[Any]) -> list[dict[str, Any]]:
        """Input records from items ``{"image": path under root, "description": str, "id"?, "tags"?}``.

        Bad items (not a dict, missing image or description, empty description, a path that
        escapes the root, a missing or unreadable image, a header above ``max_pixels``) become
        records with ``error.stage == "input"``. Other item fields are kept in ``meta``.
        """
        from PIL import Image

        from giqa.images import check_image_header, read_image_bytes

        fp = self.config_fingerprint()
        out = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                key = content_key("bad-item", repr(item)[:10000], fp)
                out.append(set_error({"key": key, "id": f"item-{n}", "image": None, "input": {"item": repr(item)[:1000]}},
                                     "input", ParseError(f"input item {n} is not an object: {type(item).__name__}")))
                continue
            image, desc = item.get("image"), item.get("description")
            rid = item.get("id")
            base_id = str(rid) if rid not in (None, "") else "des-" + content_key(str(image), str(desc))[:16]
            record: dict[str, Any] = {
                "key": None,
                "id": base_id,
                "image": image if isinstance(image, str) else None,
                "description": desc if isinstance(desc, str) else "",
                "meta": {k: v for k, v in item.items() if k not in ("image", "description", "id", "tags", "_error")},
                "error": None,
            }
            if item.get("tags") is not None:
                record["tags"] = item["tags"]
            problem: Optional[Exception] = None
            data = b""
            if item.get("_error"):
                problem = ParseError(str(item["_error"]))
            elif not isinstance(image, str) or not image.strip():
                problem = ParseError("input item has no image path")
            elif not isinstance(desc, str) or not desc.strip():
                problem = ParseError("input item has an empty description")
            else:
                try:
                    data = read_image_bytes(self.config.root, image)
                    with Image.open(io.BytesIO(data)) as im:
                        check_image_header(im, image, self.config.max_pixels)
                except ImageError as exc:
                    problem = exc
                except Exception as exc:  # noqa: BLE001 - PIL raises many types on bad headers
                    problem = ImageError(f"image {image!r} is not a readable image file: {exc}")
            if problem is not None:
                record["key"] = content_key("bad-item", repr(sorted(item.items(), key=lambda kv: str(kv[0])))[:10000], fp)
                out.append(set_error(record, "input", problem))
                continue
            record["key"] = content_key(hashlib.sha256(data).hexdigest(), desc, fp)
            out.append(record)
        return out

    def finalize(self, records: Iterable[dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
        """``(samples, errors)``: a DES :class:`giqa.types.Sample` per good record."""
        return finalize_records(records, self._samples_of)

    def _samples_of(self, r: dict[str, Any]) -> list[Any]:
        from giqa import __version__
        from giqa.types import GroundedPhrase, Provenance, Sample

        cfg = self.config
        tag_dicts = list(r.get("tags") or [])
        tags = tuple(Tag.model_validate(t) for t in tag_dicts)

        def tag_of(d: dict[str, Any]) -> Tag:
            return tags[tag_dicts.index(d)] if d in tag_dicts else Tag.model_validate(d)

        regions = tuple(
            GroundedPhrase(phrase=g["phrase"], boxes=tuple(g["boxes"]),
                           span=tuple(g["span"]) if g.get("span") else None, tag=tag_of(g["tag"]))
            for g in r.get("regions") or [] if g.get("span") is not None
        )
        prov = Provenance(
            models=dict(r.get("models") or {}),
            prompts=dict(r.get("prompts") or {}),
            thresholds={"area_thr": cfg.area_thr, "cover_thr": cfg.cover_thr,
                        "filter_threshold": cfg.filter_threshold},
            preset=self.preset,
            random_weights=bool(r.get("random_weights", False)),
            giqa_version=__version__,
            seed=cfg.seed,
            extra={"tags_source": r.get("tags_source"), "tags_dropped": r.get("tags_dropped", 0),
                   "filter_all_rejected": cfg.filter_all_rejected},
        )
        return [Sample(
            id=r["id"], image=r["image"], task="des", question=r["question"], answer=r["answer"],
            regions=regions, tags=tags, description=r["description"], grid=tuple(cfg.grid),
            provenance=prov, meta={**(r.get("meta") or {}), "key": r["key"]},
        )]
