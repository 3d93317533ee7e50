"""Reader for DQ-495K (DepictQA-Wild), the KADIS-700K single-image detailed descriptions.

Published in the Hugging Face dataset ``zhiyuanyou/DataDepictQA`` as JSON lists of "metas";
the paper's 27K pairs are the non-reference detail sets
``KADIS700K/A_sd_detail/metas/train_A_sd_detail_20k.json`` (single distortion) and
``KADIS700K/A_md_detail/metas/train_A_md_detail_8k.json`` (multiple distortions).
A record, as DepictQA's ``build_datasets/scripts/refA2A_sd.py`` writes it::

    {"id": "<ref name>_<k>", "image_ref": null, "image_A": "<distorted image path>",
     "image_B": null, "task_type": "quality_single_A_noref",
     "conversations": [{"from": "human", "value": "<one of 20 prompts>"},
                       {"from": "gpt", "value": "<description, < 100 words>"}],
     "distortion_class": "blur", "distortion_name": "blur_gaussian", "severity": 3}

(multi-distortion records carry ``distortion_classes`` / ``distortion_names`` /
``severities`` lists; undistorted ones ``null`` and severity 0). Image paths are relative to
the DataDepictQA root (DepictQA's ``data.root_dir``).

**Selection rule**: a single-image quality record (``task_type`` ``quality_single_A_noref`` or
``quality_single_A``; ``image_A`` set, ``image_B`` null) with one human/gpt exchange whose
answer has at least ``min_words`` words (default 20). This keeps the detailed descriptions and
skips the brief distortion-identification / rating answers mixed into the combined metas
files, and every comparison (A/B) record. The sub-dataset is read from the first path folder
(``KADIS700K`` -> ``kadis700k``); other folders give ``unknown``.
"""

from __future__ import annotations

from typing import Any, Optional

from giqa.data.sources import (
    SourceItem,
    SourceReader,
    _FieldError,
    _type,
    conversation_pair,
    count_words,
    require_dict,
)

__all__ = ["DQ495KReader", "read_dq495k", "SINGLE_IMAGE_TASKS"]

SINGLE_IMAGE_TASKS = frozenset({"quality_single_A_noref", "quality_single_A"})
_FOLDERS = {"kadis700k": "kadis700k", "kadis700k_s384": "kadis700k", "kadis-700k": "kadis700k"}


def _source_of(image: str) -> str:
    first = image.split("/", 1)[0].lower()
    return _FOLDERS.get(first, "unknown")


class DQ495KReader(SourceReader):
    """Items from DataDepictQA metas files (streamed; see the module docstring)."""

    name = "DQ-495K"

    def _parse(self, record: Any) -> Optional[SourceItem]:
        rec = require_dict(record)
        task = rec.get("task_type")
        if not isinstance(task, str):
            raise _FieldError("task_type", f"expected a string, got {_type(task)}")
        if task not in SINGLE_IMAGE_TASKS:
            return None
        if rec.get("image_B") is not None:
            return None  # a comparison record labelled single-image: not a description
        if "image_A" not in rec:
            raise _FieldError("image_A", "missing")
        image = self._image(rec["image_A"], "image_A")
        pair = conversation_pair(rec)
        if pair is None:
            return None
        _, gpt = pair
        if count_words(gpt) < self.min_words:
            return None
        self._check_distortion(rec)
        source_id = self._source_id(rec, image)
        self._check_exists(image, "image_A")
        source = (self._source_of or _source_of)(image)
        return {"image": image, "description": gpt.strip(), "source": source, "source_id": source_id}

    @staticmethod
    def _check_distortion(rec: dict[str, Any]) -> None:
        # Only type-checked (not used downstream): a wrong type means a corrupted file.
        for key in ("distortion_class", "distortion_name"):
            if key in rec and rec[key] is not None and not isinstance(rec[key], str):
                raise _FieldError(key, f"expected a string or null, got {_type(rec[key])}")
        if "severity" in rec and (not isinstance(rec["severity"], int) or isinstance(rec["severity"], bool)):
            raise _FieldError("severity", f"expected an integer, got {_type(rec['severity'])}")
        for key in ("distortion_classes", "distortion_names", "severities"):
            value = rec.get(key)
            if value is not None and not isinstance(value, (list, int)):
                raise _FieldError(key, f"expected a list (or 0/null when undistorted), got {_type(value)}")


def read_dq495k(paths: Any, **kwargs: Any) -> list[SourceItem]:
    """``DQ495KReader(paths, **kwargs).read()``; use the class to see ``errors``/``stats``."""
    return DQ495KReader(paths, **kwargs).read()
