"""DES pipeline (paper section 3.2, Fig. 3a, Alg. 1): description -> grounded description.

Five stages over :class:`giqa.pipeline.records.DesRecord`, each usable alone:

0. :class:`InputStage` (``"input"``): reads each image's header (size, pixel count, aspect
   ratio); a bad image fails at ``input``. It runs only for records that still have work, so
   a resumed run does not open the images it has done.
1. :class:`TagStage` (``"tags"``, needs ``llm``): {T_r, T_q, T_e} tags from the description,
   JSON validated against :class:`giqa.types.Tag`; ``no_impact`` tags dropped. A record with
   ``given_tags`` (tags given with the input) skips the LLM.
2. :class:`DetectStage` (``"detect"``, needs ``detector``): every tag's phrase T_r of an image
   in one detector call, several images per call.
3. :class:`RefineStage` (``"refine"``, needs ``quality_filter``): IQA-Filter on phrases with
   several boxes ("Is the image quality <T_q>?" on each crop, keep P(yes) >= threshold), then
   :func:`giqa.geometry.box_merge` (T_a, T_o).
4. :class:`FuseStage` (``"fuse"``): :func:`giqa.text.fuse` writes the boxes into the
   description on the grid; the question comes from the pool, drawn with a generator seeded
   by the record key (so the draw does not depend on batch order).

Input hygiene (:meth:`DesPipeline.make_inputs`): control characters are stripped from the
description, grounding markup already in it (``[x](<a, b>)``) is removed so fusion never nests,
and a description longer than ``max_description_chars`` is refused.
"""

from __future__ import annotations

import dataclasses
import random
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Optional, Sequence

from pydantic import BaseModel

from giqa.errors import ImageError, ParseError
from giqa.models.roles import Role
from giqa.pipeline.backends import BackendSlot, call_detect, call_p_yes
from giqa.pipeline.base import Pipeline
from giqa.pipeline.config import DesConfig
from giqa.pipeline.inputs import ImageHasher, canonical, clean_text, item_repr, mark_id_clashes, progress_bar
from giqa.pipeline.records import DesRecord, Region, content_key
from giqa.pipeline.stages import Stage, generate_json
from giqa.text.mentions import is_mentioned
from giqa.types import Box, Effect, Sample, Tag

if TYPE_CHECKING:
    from giqa.models.protocols import LLM, Detector, QualityFilter
    from giqa.models.spec import BackendSpec

__all__ = ["DesPipeline", "InputStage", "TagStage", "DetectStage", "RefineStage", "FuseStage", "TagList"]


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
        self.max_bytes = max_bytes
        self._items: "OrderedDict[tuple[str, int, int], Any]" = OrderedDict()
        self._bytes = 0

    def get(self, record: DesRecord, config: DesConfig) -> Any:
        ck = (record.key, config.max_pixels, config.max_side)
        im = self._items.get(ck)
        if im is not None:
            self._items.move_to_end(ck)
            return im
        im = _load(record, config)
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


def _load(record: DesRecord, config: DesConfig) -> Any:
    from giqa.images import load_image

    return load_image(config.root, record.image or "", max_pixels=config.max_pixels, max_side=config.max_side,
                      max_aspect_ratio=config.max_aspect_ratio)


_IMAGES = _ImageCache()


def clear_image_cache() -> None:
    """Forget the decoded images kept between detection and refinement (this process)."""
    _IMAGES.clear()


def _mention(tag: Tag, description: str) -> str:
    """The text written at the tag's mention: T_r when the description holds it, else the bare
    name when it does (else T_r, which fusion then skips)."""
    if not is_mentioned(tag.phrase, description) and is_mentioned(tag.name, description):
        return tag.name
    return tag.phrase


class InputStage(Stage[DesRecord]):
    """Reads each image's header; a missing, unreadable, oversized or too thin image fails here."""

    name = "input"

    def __init__(self, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.input_batch_size)
        self.config = config

    def process(self, records: list[DesRecord]) -> list[DesRecord]:
        return [self._check(r) for r in records]

    def _check(self, r: DesRecord) -> DesRecord:
        from PIL import Image

        from giqa.images import check_image_header, open_image_file

        cfg = self.config
        name = r.image or ""
        try:
            with open_image_file(cfg.root, name) as fh:
                try:
                    with Image.open(fh) as im:
                        check_image_header(im, name, cfg.max_pixels, cfg.max_aspect_ratio)
                except ImageError:
                    raise
                except Exception as exc:  # noqa: BLE001 - PIL raises many types on bad headers
                    raise ImageError(f"image {name!r} is not a readable image file: {type(exc).__name__}") from exc
        except ImageError as exc:
            return r.failed(self.name, exc)
        return r


class TagStage(Stage[DesRecord]):
    name = "tags"
    needs = (Role.llm,)

    def __init__(self, llm: Any, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.tags_batch_size)
        self.llm = BackendSlot(Role.llm, llm)
        self.config = config

    def process(self, records: list[DesRecord]) -> list[DesRecord]:
        from giqa import prompts

        out = list(records)
        ask = [i for i, r in enumerate(out) if r.given_tags is None]
        for i, r in enumerate(out):
            if r.given_tags is not None:
                out[i] = self._with_tags(r, r.given_tags, source="input")
        if ask:
            prompt = prompts.load(self.config.tag_prompt)
            llm = self.llm.get()
            convs = [prompt.messages(description=out[i].description) for i in ask]
            results = generate_json(llm, convs, TagList, max_retries=self.config.max_retries,
                                    max_new_tokens=self.config.max_new_tokens, coerce=_coerce_tags)
            for i, res in zip(ask, results):
                r = out[i].used(Role.llm.value, llm, prompts={**out[i].prompts, prompt.name: prompt.version})
                out[i] = r.failed(self.name, res) if isinstance(res, Exception) else self._with_tags(r, res.tags, source="llm")
        return out

    @staticmethod
    def _with_tags(r: DesRecord, tags: Iterable[Tag], *, source: str) -> DesRecord:
        all_tags = [_clean_tag(t) for t in tags]
        kept = tuple(t for t in all_tags if t.effect is not Effect.no_impact)
        return r.replace(tags=kept, tags_dropped=len(all_tags) - len(kept), tags_source=source)


def _clean_tag(tag: Tag) -> Tag:
    """A tag whose texts hold no control characters (LLM output is not trusted)."""
    fields = {k: clean_text(getattr(tag, k)) for k in ("name", "phrase", "quality")}
    if all(fields[k] == getattr(tag, k) for k in fields):
        return tag
    return Tag(effect=tag.effect, **fields)


class _PixelStage(Stage[DesRecord]):
    """A stage whose CPU work on pixels (decoding an image, cropping it) can run in another process.

    :meth:`prepare_pixels` does that work on a batch and returns it per record as uint8
    ``(H, W, 3)`` RGB arrays (``None`` where the stage reads no pixels of the record, or where
    the work failed: the stage then does it itself and fails the record as it would have).
    Within ``with stage.using_pixels({record key: arrays})`` the stage takes those arrays
    instead of doing the work again. The Ray runner runs ``prepare_pixels`` in CPU tasks ahead
    of the stage's actor pool, so a GPU actor only runs its model
    (:mod:`giqa.pipeline.ray_runner`).
    """

    config: DesConfig
    _given: Mapping[str, Sequence[Any]] = {}

    def _wants_pixels(self, r: DesRecord) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _from_image(self, r: DesRecord, image: Any) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_pixels(self, records: Sequence[DesRecord]) -> list[Optional[list[Any]]]:
        import numpy as np

        out: list[Optional[list[Any]]] = []
        for r in records:
            try:
                ok = r.error is None and self._wants_pixels(r)
                out.append([np.asarray(p) for p in self._from_image(r, _load(r, self.config))] if ok else None)
            except Exception:  # noqa: BLE001 - preparing only saves work; the stage itself reports failures
                out.append(None)
        return out

    @contextmanager
    def using_pixels(self, prepared: Mapping[str, Sequence[Any]]) -> Iterator[None]:
        self._given = prepared
        try:
            yield
        finally:
            self._given = {}

    def _pixels(self, r: DesRecord) -> list[Any]:
        """The PIL images the stage reads of ``r``: the prepared arrays, else decoded here (once
        per process: detection and refinement share :data:`_IMAGES`)."""
        given = self._given.get(r.key)
        if given is not None:
            from PIL import Image

            return [Image.fromarray(a) for a in given]
        return self._from_image(r, _IMAGES.get(r, self.config))


class DetectStage(_PixelStage):
    name = "detect"
    needs = (Role.detector,)

    def __init__(self, detector: Any, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.detect_batch_size)
        self.detector = BackendSlot(Role.detector, detector)
        self.config = config

    def process(self, records: list[DesRecord]) -> list[DesRecord]:
        out = list(records)
        idx, images, phrases = [], [], []
        for i, r in enumerate(out):
            if not r.tags:
                out[i] = r.replace(detections=())
                continue
            try:
                images.append(self._pixels(r)[0])
            except ImageError as exc:
                out[i] = r.failed(self.name, exc)
                continue
            idx.append(i)
            phrases.append([t.phrase for t in r.tags])
        if idx:
            detector = self.detector.get()
            found = call_detect(detector, images, phrases)
            for i, per_image in zip(idx, found):
                dets = tuple(tuple(d) for d in per_image)
                out[i] = out[i].used(Role.detector.value, detector, detections=dets)
        return out

    def _wants_pixels(self, r: DesRecord) -> bool:
        return bool(r.tags)

    def _from_image(self, r: DesRecord, image: Any) -> list[Any]:
        return [image]


def _crop(image: Any, box: Box) -> Any:
    w, h = image.size
    x1, y1 = int(box.x1 * w), int(box.y1 * h)
    x2, y2 = max(x1 + 1, int(round(box.x2 * w))), max(y1 + 1, int(round(box.y2 * h)))
    return image.crop((min(x1, w - 1), min(y1, h - 1), min(x2, w), min(y2, h)))


def _multi(r: DesRecord) -> list[int]:
    """Indices of the tags whose phrase found several boxes (the IQA-Filter chooses among them)."""
    return [j for j, dets in enumerate(r.detections or ()) if len(dets) > 1]


class RefineStage(_PixelStage):
    """IQA-Filter then Box-Merge. Without a quality filter (``None``) only the merge runs.

    If the filter rejects every box of a phrase, ``config.filter_all_rejected`` decides:
    ``"keep_best"`` keeps the box with the highest P(yes) (the detector did find the object;
    the filter's job is to choose among same-class candidates), ``"drop"`` leaves the phrase
    ungrounded (the paper's letter).
    """

    name = "refine"
    needs = (Role.quality_filter,)

    def __init__(self, quality_filter: Any = None, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.refine_batch_size)
        self.quality_filter = BackendSlot(Role.quality_filter, quality_filter)
        self.config = config

    def process(self, records: list[DesRecord]) -> list[DesRecord]:
        out = list(records)
        p_yes: dict[tuple[int, int], list[float]] = {}
        if self.quality_filter.configured:
            out = self._filter(out, p_yes)
        return [r if r.error is not None else r.replace(regions=self._regions(r, i, p_yes))
                for i, r in enumerate(out)]

    def _filter(self, out: list[DesRecord], p_yes: dict[tuple[int, int], list[float]]) -> list[DesRecord]:
        """P(yes) of every box of every phrase with several boxes, in one filter call."""
        from giqa import prompts

        prompt = prompts.load(self.config.filter_prompt)
        crops, questions, where = [], [], []
        for i, r in enumerate(out):
            multi = _multi(r)
            if not multi:
                continue
            try:
                pixels = iter(self._pixels(r))  # the crops, in the order of the loop below
            except ImageError as exc:
                out[i] = r.failed(self.name, exc)
                continue
            out[i] = r.with_prompt(prompt.name, prompt.version)
            for j in multi:
                q = prompt.render(quality=r.tags[j].quality).strip()
                for _ in (r.detections or ())[j]:
                    crops.append(next(pixels))
                    questions.append(q)
                    where.append((i, j))
        if crops:
            qf = self.quality_filter.get()
            for (i, j), p in zip(where, call_p_yes(qf, crops, questions)):
                p_yes.setdefault((i, j), []).append(p)
            for i in {i for i, _ in where}:
                out[i] = out[i].used(Role.quality_filter.value, qf)
        return out

    def _wants_pixels(self, r: DesRecord) -> bool:
        return self.quality_filter.configured and bool(_multi(r))

    def _from_image(self, r: DesRecord, image: Any) -> list[Any]:
        dets = r.detections or ()
        return [_crop(image, d.box) for j in _multi(r) for d in dets[j]]

    def _regions(self, r: DesRecord, i: int, p_yes: dict[tuple[int, int], list[float]]) -> tuple[Region, ...]:
        import numpy as np

        from giqa.geometry import box_merge

        cfg = self.config
        regions = []
        for j, (tag, dets) in enumerate(zip(r.tags, r.detections or ())):
            boxes = [d.box for d in dets]
            probs = p_yes.get((i, j))
            if probs is not None:
                keep = [k for k, p in enumerate(probs) if p >= cfg.filter_threshold]
                if not keep and cfg.filter_all_rejected == "keep_best":
                    keep = [int(np.argmax(probs))]
                boxes = [boxes[k] for k in keep]
            if not boxes:
                continue
            coords = np.asarray([b.as_tuple() for b in boxes], dtype=np.float64)
            merged, _ = box_merge(coords, area_thr=cfg.area_thr, cover_thr=cfg.cover_thr)
            regions.append(Region(
                phrase=_mention(tag, r.description),
                boxes=tuple(Box.from_xyxy(b) for b in np.asarray(merged).tolist()),
                tag=tag, p_yes=tuple(probs) if probs is not None else None,
            ))
        return tuple(regions)


class FuseStage(Stage[DesRecord]):
    name = "fuse"

    def __init__(self, config: DesConfig = DesConfig(), *, batch_size: Optional[int] = None) -> None:
        super().__init__(batch_size=batch_size or config.fuse_batch_size)
        self.config = config

    def process(self, records: list[DesRecord]) -> list[DesRecord]:
        from giqa import prompts

        pool = prompts.load(self.config.question_pool)
        questions = pool.items()
        return [self._fuse(r, questions).with_prompt(pool.name, pool.version) for r in records]

    def _fuse(self, r: DesRecord, questions: list[str]) -> DesRecord:
        from giqa.text import fuse_report
        from giqa.types import GroundedPhrase

        cfg = self.config
        n, m = cfg.grid
        regions = list(r.regions or ())
        phrases = [GroundedPhrase(phrase=g.phrase, boxes=g.boxes) for g in regions]
        report = fuse_report(r.description, phrases, style="grid", n=n, m=m)
        # placed mentions' [start, end) in the description = their spans in the clean text
        placed = {id(p): span for p, span in report.placed}
        regions = [dataclasses.replace(g, span=placed.get(id(p))) for g, p in zip(regions, phrases)]
        r = r.replace(regions=tuple(regions))
        if not placed and not cfg.keep_ungrounded:
            return r.failed(self.name, "no key object of the description was grounded "
                                       f"({len(r.tags)} tags, {len(regions)} with boxes)", "NoGroundingError")
        rng = random.Random(content_key("question", str(cfg.seed), r.key))
        return r.replace(question=questions[rng.randrange(len(questions))], answer=report.text)


class DesPipeline(Pipeline[DesRecord, Sample]):
    """The GIQA-DES annotation pipeline.

    Backends are keyword arguments: an object following its protocol (e.g.
    :class:`giqa.models.CallableLLM`), a :class:`giqa.models.BackendSpec`, or a preset or
    registry name (built lazily). A wrong backend is a :class:`giqa.errors.ConfigError` here,
    naming the role and the missing method. ``quality_filter=None`` skips the IQA-Filter
    (Box-Merge still runs).

    Example::

        pipe = DesPipeline(llm=my_llm, detector=my_detector, quality_filter=my_filter,
                           config=DesConfig(root="images/"))
        samples = pipe.run(items)                               # in memory
        summary = run_local(pipe, items, "out/")                # on disk, resumable
    """

    task = "des"
    record_type = DesRecord

    def __init__(
        self,
        *,
        llm: "LLM | BackendSpec | BackendSlot | str | None" = None,
        detector: "Detector | BackendSpec | BackendSlot | str | None" = None,
        quality_filter: "QualityFilter | BackendSpec | BackendSlot | str | None" = None,
        config: Optional[DesConfig] = None,
        preset: Optional[str] = None,
    ) -> None:
        self.config = config or DesConfig()
        self.preset = preset
        self.stages: list[Stage[DesRecord]] = [
            InputStage(self.config),
            TagStage(llm, self.config),
            DetectStage(detector, self.config),
            RefineStage(quality_filter, self.config),
            FuseStage(self.config),
        ]

    @classmethod
    def from_preset(cls, preset: str, *, config: Optional[DesConfig] = None, quality_filter: bool = True) -> "DesPipeline":
        """All backends from the preset ``preset`` (``tiny-random``, ``small``, ``paper``), lazily."""
        return cls(llm=preset, detector=preset, quality_filter=preset if quality_filter else None,
                   config=config, preset=preset)

    def fingerprint_parts(self) -> dict[str, Any]:
        from giqa import prompts

        cfg = self.config
        versions = {n: prompts.load(n).version for n in (cfg.tag_prompt, cfg.filter_prompt, cfg.question_pool)}
        return {"config": cfg.fingerprint_fields(), "prompts": versions}

    # -- inputs --------------------------------------------------------------------------------
    def make_inputs(self, items: Iterable[Any], *, hasher: Optional[ImageHasher] = None,
                    known_ids: Any = None, progress: bool = False, **_: Any) -> list[DesRecord]:
        """Input records from items ``{"image": path under root, "description": str, "id"?,
        "tags"?, ...}``; other item fields are kept in ``meta``.

        Bad items (not an object, an unreadable input line, no image path or description, a
        description above ``max_description_chars``, invalid given tags, a path that escapes
        the root, a missing image or one that is not a regular file) fail at stage ``input``.
        ``hasher`` caches image hashes (the runners pass one backed by the output directory);
        ``known_ids(id) -> key or None`` reports ids already done there (a same-id-different-
        content clash is an input error).
        """
        items = list(items)
        fp = self.fingerprint()
        hasher = hasher or ImageHasher(self.config.root)
        bar = progress_bar(len(items), progress and len(items) > 1000, "des: reading inputs", "item")
        out = []
        for n, item in enumerate(items):
            out.append(self._input(n, item, fp, hasher))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        hasher.flush()
        return mark_id_clashes(out, known_ids)

    def _input(self, n: int, item: Any, fp: str, hasher: ImageHasher) -> DesRecord:
        from giqa.data.io import BadLine

        if isinstance(item, BadLine):
            rec = DesRecord(key=content_key("bad-line", item.text, fp), id=f"line-{item.line}",
                            input={"line": item.line, "text": item.text})
            return rec.failed("input", item.error())
        if not isinstance(item, dict):
            rec = DesRecord(key=content_key("bad-item", item_repr(item, 10000), fp), id=f"item-{n}",
                            input={"item": item_repr(item)})
            return rec.failed("input", ParseError(f"input item {n} is not an object: {type(item).__name__}"))
        image, desc, rid = item.get("image"), item.get("description"), item.get("id")
        meta = {k: v for k, v in item.items() if k not in ("image", "description", "id", "tags", "_error")}
        rec = DesRecord(
            key="", image=image if isinstance(image, str) else None, meta=meta,
            id=str(rid) if rid not in (None, "") else "des-" + content_key(str(image), str(desc))[:16],
            input={"image": image, "description": desc[:2000] if isinstance(desc, str) else desc},
        )
        try:
            description, tags = self._check_item(item)
            digest = hasher.digest(str(image))
        except (ParseError, ImageError) as exc:
            return rec.replace(key=content_key("bad-item", item_repr(item, 10000), fp)).failed("input", exc)
        key = content_key(digest, description, canonical(item.get("tags")), canonical(meta), fp)
        return rec.replace(key=key, description=description, given_tags=tags)

    def _check_item(self, item: dict[str, Any]) -> tuple[str, Optional[tuple[Tag, ...]]]:
        """The clean description and the validated given tags of an item (ParseError if bad)."""
        from giqa.text import strip_coordinates

        image, desc = item.get("image"), item.get("description")
        if item.get("_error"):
            raise ParseError(str(item["_error"]))
        if not isinstance(image, str) or not image.strip():
            raise ParseError("input item has no image path")
        if not isinstance(desc, str) or not desc.strip():
            raise ParseError("input item has an empty description")
        cap = self.config.max_description_chars
        if len(desc) > cap:
            raise ParseError(f"description of {len(desc)} characters is above the limit of {cap} (max_description_chars)")
        description = strip_coordinates(clean_text(desc)).strip()
        if not description:
            raise ParseError("input item has an empty description")
        tags = item.get("tags")
        if tags is None:
            return description, None
        try:
            return description, tuple(TagList.model_validate(_coerce_tags(tags)).tags)
        except ValueError as exc:
            raise ParseError(f"input tags are invalid: {exc}") from exc

    # -- outputs -------------------------------------------------------------------------------
    def outputs(self, record: DesRecord) -> list[Sample]:
        """The DES :class:`giqa.types.Sample` of a record that went through every stage."""
        from giqa import __version__
        from giqa.types import GroundedPhrase, Provenance

        cfg, r = self.config, record
        if r.question is None or r.answer is None:
            raise ValueError("the record has no question and answer (did it run through fuse?)")
        regions = tuple(GroundedPhrase(phrase=g.phrase, boxes=g.boxes, span=g.span, tag=g.tag)
                        for g in r.regions or () if g.span is not None)
        prov = Provenance(
            models=dict(r.models), prompts=dict(r.prompts),
            thresholds={"area_thr": cfg.area_thr, "cover_thr": cfg.cover_thr, "filter_threshold": cfg.filter_threshold},
            preset=self.preset, random_weights=r.random_weights, giqa_version=__version__, seed=cfg.seed,
            extra={"tags_source": r.tags_source, "tags_dropped": r.tags_dropped, "backends": dict(r.backend_info),
                   "filter_all_rejected": cfg.filter_all_rejected, "run": self.provenance_config()},
        )
        return [Sample(
            id=r.id, image=r.image or "", task="des", question=r.question, answer=r.answer, regions=regions,
            tags=r.tags, description=r.description, grid=cfg.grid, provenance=prov, meta={**r.meta, "key": r.key},
        )]

