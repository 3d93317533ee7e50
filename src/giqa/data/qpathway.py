"""Reader for Q-Pathway, the human quality descriptions inside Q-Instruct.

Published as ``cleaned_labels.json`` in the Hugging Face dataset ``teowu/Q-Instruct``
(``q-future/Q-Instruct-DB``): one JSON list of LLaVA conversation records, images in the
companion ``q-instruct-images.tar`` (folders ``spaq_koniq/`` and ``livefb_liveitw_aigc/``)::

    {"id": "...", "image": "spaq_koniq/00003.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nDescribe ..."},
                       {"from": "gpt", "value": "The image ..."}]}

The file mixes Q-Pathway descriptions with Q-Instruct's VQA and conversation records.
**Selection rule** (documented in docs/data.md; the split is not published): a record is a
quality description when it has an ``image``, exactly one human turn followed by one gpt turn,
the human turn offers no answer options (no ``A.``/``B.`` choice lines), and the gpt answer has
at least ``min_words`` words (default 20; VQA answers are a word or a sentence) and does not
start with a bare Yes/No. Everything else is skipped (counted in ``stats.skipped``).

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
from typing import Any, Optional

from giqa.data.sources import (
    SourceItem,
    SourceReader,
    _FieldError,
    conversation_pair,
    count_words,
    require_dict,
)

__all__ = ["QPathwayReader", "read_qpathway", "source_of", "is_description"]

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


def is_description(human: str, gpt: str, *, min_words: int = 20) -> bool:
    """The selection rule for one human/gpt exchange (see the module docstring)."""
    if _OPTION_LINE.search(human):
        return False
    if _YES_NO_START.match(gpt):
        return False
    return count_words(gpt) >= min_words


class QPathwayReader(SourceReader):
    """Items from Q-Instruct's ``cleaned_labels.json`` (streamed; see the module docstring).

    ``source_of`` may be replaced (``QPathwayReader(path, source_of=my_fn)``) when the images
    were re-organised. Other parameters: :class:`giqa.data.sources.SourceReader`.
    """

    name = "Q-Pathway"

    def _parse(self, record: Any) -> Optional[SourceItem]:
        rec = require_dict(record)
        if "image" not in rec:
            raise _FieldError("image", "missing (Q-Instruct records are single-image)")
        image = self._image(rec["image"], "image")
        pair = conversation_pair(rec)
        if pair is None:
            return None
        human, gpt = pair
        if not is_description(human, gpt, min_words=self.min_words):
            return None
        source_id = self._source_id(rec, image)
        self._check_exists(image, "image")
        source = (self._source_of or source_of)(image)
        return {"image": image, "description": gpt.strip(), "source": source, "source_id": source_id}


def read_qpathway(path: Any, **kwargs: Any) -> list[SourceItem]:
    """``QPathwayReader(path, **kwargs).read()``; use the class to see ``errors``/``stats``."""
    return QPathwayReader(path, **kwargs).read()
