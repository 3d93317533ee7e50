"""Reader for Q-Pathway, the human quality descriptions inside Q-Instruct.

Published as ``cleaned_labels.json`` in the Hugging Face dataset ``teowu/Q-Instruct``
(``q-future/Q-Instruct-DB``): one JSON list of LLaVA conversation records, images in the
companion ``q-instruct-images.tar`` (folders ``spaq_koniq/`` and ``livefb_liveitw_aigc/``)::

    {"id": "...", "image": "spaq_koniq/00003.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nDescribe ..."},
                       {"from": "gpt", "value": "The image ..."}]}

The file mixes Q-Pathway descriptions with Q-Instruct's VQA and conversation records.

**Selection rule** (documented in docs/data.md). A record needs an ``image`` and exactly one
human turn followed by one gpt turn (multi-turn conversations are skipped). Then:

1. *The record's own fields first.* A ``type`` or ``qtype`` field (string, any case, ``_``/``-``/``/``
   read as spaces) that names a quality description (:data:`DESCRIPTION_TYPES`: ``pathway``,
   ``pathway reasoning``, ``description``, ...) selects the record whatever its length; one
   that names a question (:data:`QUESTION_TYPES`: ``yes or no``, ``what``, ``how``, ``mcq``,
   ``conversation``, ...), or an integer (Q-Bench's coding of the same team: 0 Yes-or-No,
   1 What, 2 How), skips it. A question type wins over a description type.
2. *Fallback, when neither field is present or its value is in neither list:* the record is a
   description when the human turn offers no answer options (no ``A.``/``B.`` choice lines)
   and the gpt answer has at least ``min_words`` words (default 20) and does not start with a
   bare Yes/No. Unrecognised values are counted in ``stats.unknown_types`` so they can be
   added (``description_types=`` / ``question_types=`` extend the lists).

Which rule kept each item is counted in ``stats.selected_by`` (``"type"`` / ``"word_count"``),
and skips by reason in ``stats.skipped_by``. The public Q-Instruct repository
(``Q-Future/Q-Instruct``) and the dataset card (``q-future/Q-Instruct-DB``) document neither
field nor its values (docs/data.md records the search); the lists follow the dataset's four
parts named in the Q-Instruct paper (pathway reasoning, Yes-or-No, What/How questions, extended
conversations).

**Sub-dataset** from folder and file-name patterns (:func:`source_of`):

* ``spaq_koniq/``: a 1-5 digit stem is SPAQ (``00003.jpg``), a longer numeric stem is KonIQ-10k
  (Flickr ids such as ``826373.jpg`` / ``10004473376.jpg``).
* ``livefb_liveitw_aigc/``: ``<generator>_<style>_<n>`` with an AGIQA-3K generator
  (``AttnGAN_normal_000.jpg``) is AGIQA-3K; a UUID or 32+ hex-digit stem is ImageRewardDB;
  a ``__`` in the stem or a FLIVE sub-folder (``voc_emotic_ava``, ``EE371R``, ``blur_dataset``)
  is LIVE-FB; a short numeric stem or ``t<n>`` is LIVE-itw (LIVE Challenge ``1023.JPG``).
* Folders named after a dataset (``koniq``, ``spaq``, ``livec``, ``agiqa``, ...) map directly.
* Anything else is ``unknown`` (kept, and counted per source in ``stats.by_source``).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Iterable, Optional, Union

from giqa.data.sources import (
    SourceItem,
    SourceReader,
    _FieldError,
    _type,
    conversation_pair,
    count_words,
    require_dict,
)

__all__ = ["QPathwayReader", "read_qpathway", "source_of", "is_description", "record_kind",
           "DESCRIPTION_TYPES", "QUESTION_TYPES"]

TYPE_FIELDS = ("type", "qtype")
DESCRIPTION_TYPES = frozenset({
    "pathway", "pathway reasoning", "q pathway", "reasoning", "description", "describe", "detail",
    "detailed description", "quality description", "caption",
})
"""Normalised ``type`` / ``qtype`` values that mark a quality description."""
QUESTION_TYPES = frozenset({
    "yes or no", "yes no", "yesno", "binary", "what", "how", "which", "why", "where", "what how",
    "what or how", "open", "mcq", "multiple choice", "choice", "vqa", "qa", "question",
    "conversation", "extended conversation", "chat", "dialog", "dialogue", "multi turn",
})
"""Normalised ``type`` / ``qtype`` values that mark a question or a conversation."""

_AGIQA_GENERATORS = ("attngan", "dalle2", "glide", "midjourney", "sd1.5", "sdxl")
_AGIQA = re.compile(r"^(?:" + "|".join(re.escape(g) for g in _AGIQA_GENERATORS) + r")_[a-z0-9]+_\d+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX = re.compile(r"^[0-9a-f]{32,}$")
_LIVEITW = re.compile(r"^(?:\d{1,4}|t\d{1,2})$")
_FLIVE_FOLDERS = {"voc_emotic_ava", "ee371r", "blur_dataset", "flive", "livefb", "paq2piq"}
_FOLDER_ALIASES = {
    "koniq": "koniq",
    "koniq10k": "koniq",
    "koniq-10k": "koniq",
    "spaq": "spaq",
    "livefb": "livefb",
    "flive": "livefb",
    "live-fb": "livefb",
    "liveitw": "liveitw",
    "live-itw": "liveitw",
    "livec": "liveitw",
    "challengedb": "liveitw",
    "agiqa": "agiqa3k",
    "agiqa3k": "agiqa3k",
    "agiqa-3k": "agiqa3k",
    "imagereward": "imagerewarddb",
    "imagerewarddb": "imagerewarddb",
}
# Human turns offering answer choices ("A. blurry\nB. clear") are multiple-choice VQA.
_OPTION_LINE = re.compile(r"(?:^|\n)\s*[A-D][.)]\s")
_YES_NO_START = re.compile(r"^\s*(?:yes|no)\b", re.IGNORECASE)


def source_of(image: str) -> str:
    """Sub-dataset slug of a Q-Instruct image path (see the module docstring for the rules)."""
    parts = [p for p in image.replace("\\", "/").split("/") if p]
    if not parts:
        return "unknown"
    stem = posixpath.splitext(parts[-1])[0].lower()
    folders = [p.lower() for p in parts[:-1]]
    for folder in folders:
        if folder in _FOLDER_ALIASES:
            return _FOLDER_ALIASES[folder]
    if "spaq_koniq" in folders:
        if stem.isdigit():
            return "spaq" if len(stem) <= 5 else "koniq"
        return "unknown"
    if _AGIQA.match(stem):
        return "agiqa3k"
    if _UUID.match(stem) or _HEX.match(stem):
        return "imagerewarddb"
    if "__" in stem or any(f in _FLIVE_FOLDERS for f in folders):
        return "livefb"
    if _LIVEITW.match(stem):
        return "liveitw"
    return "unknown"


def _normalise_type(value: str) -> str:
    return " ".join(re.sub(r"[_\-/]+", " ", value).casefold().split())


def record_kind(
    record: dict[str, Any],
    description_types: Iterable[str] = DESCRIPTION_TYPES,
    question_types: Iterable[str] = QUESTION_TYPES,
) -> tuple[Optional[str], Optional[str]]:
    """``(kind, unknown)`` from the record's ``type`` / ``qtype``: kind ``"description"``,
    ``"question"`` or ``None`` (no field, or no value either list names; then ``unknown`` is
    the first unrecognised value). Raises :class:`_FieldError` for a value that is neither a
    string nor an integer."""
    desc, quest = set(description_types), set(question_types)
    kinds, unknown = set(), None
    for name in TYPE_FIELDS:
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _FieldError(name, f"expected a string or an integer, got {_type(value)}")
        if isinstance(value, int):
            kinds.add("question")  # Q-Bench's integer coding: 0 Yes-or-No, 1 What, 2 How
            continue
        norm = _normalise_type(value)
        if norm in quest:
            kinds.add("question")
        elif norm in desc:
            kinds.add("description")
        elif unknown is None:
            unknown = value
    kind = "question" if "question" in kinds else ("description" if kinds else None)
    return kind, unknown


def is_description(human: str, gpt: str, *, min_words: int = 20) -> bool:
    """The fallback selection rule for one human/gpt exchange (see the module docstring)."""
    if _OPTION_LINE.search(human):
        return False
    if _YES_NO_START.match(gpt):
        return False
    return count_words(gpt) >= min_words


class QPathwayReader(SourceReader):
    """Items from Q-Instruct's ``cleaned_labels.json`` (streamed; see the module docstring).

    ``source_of`` may be replaced (``QPathwayReader(path, source_of=my_fn)``) when the images
    were re-organised; ``description_types`` / ``question_types`` replace the value lists of
    the ``type`` / ``qtype`` rule. Other parameters: :class:`giqa.data.sources.SourceReader`.
    """

    name = "Q-Pathway"

    def __init__(
        self,
        paths: Any,
        *,
        description_types: Iterable[str] = DESCRIPTION_TYPES,
        question_types: Iterable[str] = QUESTION_TYPES,
        **kwargs: Any,
    ) -> None:
        super().__init__(paths, **kwargs)
        self.description_types = frozenset(_normalise_type(t) for t in description_types)
        self.question_types = frozenset(_normalise_type(t) for t in question_types)

    def _parse(self, record: Any) -> Union[SourceItem, str]:
        rec = require_dict(record)
        if "image" not in rec:
            raise _FieldError("image", "missing (Q-Instruct records are single-image)")
        image = self._image(rec["image"], "image")
        kind, unknown = record_kind(rec, self.description_types, self.question_types)
        pair = conversation_pair(rec)
        if pair is None:
            return "multi_turn"
        human, gpt = pair
        if kind == "question":
            return "question_type"
        if kind is None:
            if unknown is not None:
                self.stats.count(self.stats.unknown_types, unknown)
            if not is_description(human, gpt, min_words=self.min_words):
                return "not_a_description"
        elif not gpt.strip():
            return "empty_answer"
        source_id = self._source_id(rec, image)
        self._check_exists(image, "image")
        source = (self._source_of or source_of)(image)
        self.stats.count(self.stats.selected_by, "type" if kind else "word_count")
        return {"image": image, "description": gpt.strip(), "source": source, "source_id": source_id}


def read_qpathway(path: Any, **kwargs: Any) -> list[SourceItem]:
    """``QPathwayReader(path, **kwargs).read()``; use the class to see ``errors``/``stats``."""
    return QPathwayReader(path, **kwargs).read()
