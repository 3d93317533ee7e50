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

**Task types** (DepictQA's own field; ``src/model/conversations.py`` lists them with their
system prompts, ``build_datasets/scripts/*.py`` set them): ``quality_single_A_noref`` is an
assessment of image A alone; ``quality_single_A`` is the *full-reference* form, made with a
"high-quality Reference Image" (``image_ref`` set; ``gen_json_refA_detail.py``,
``gen_json_refA_brief_*.py``), whose text judges A against that reference;
``quality_compare`` / ``quality_compare_noref`` compare A with B; ``description`` and
``normal`` are not quality tasks.

**Selection rule**: a ``quality_single_A_noref`` record (``image_A`` set, ``image_B`` and
``image_ref`` null) with one human/gpt exchange whose answer has at least ``min_words`` words
(default 20). The paper builds DES from descriptions of the image alone, so full-reference
records (``quality_single_A``, or any record with an ``image_ref``) are skipped unless
``keep_full_reference=True``. Brief distortion-identification / rating answers mixed into the
combined metas files and every comparison record are skipped too. Skips are counted by reason
in ``stats.skipped_by``. The sub-dataset is read from the first path folder (``KADIS700K`` ->
``kadis700k``); other folders give ``unknown``.
"""

from __future__ import annotations

from typing import Any, Union

from giqa.data.sources import (
    SourceItem,
    SourceReader,
    _FieldError,
    _type,
    conversation_pair,
    count_words,
    require_dict,
)

__all__ = ["DQ495KReader", "read_dq495k", "NO_REFERENCE_TASKS", "FULL_REFERENCE_TASKS", "SINGLE_IMAGE_TASKS"]

NO_REFERENCE_TASKS = frozenset({"quality_single_A_noref"})
"""Single-image assessments of image A alone: the DES input the paper uses."""
FULL_REFERENCE_TASKS = frozenset({"quality_single_A"})
"""Single-image assessments made against a reference image (kept with ``keep_full_reference``)."""
SINGLE_IMAGE_TASKS = NO_REFERENCE_TASKS | FULL_REFERENCE_TASKS
_FOLDERS = {"kadis700k": "kadis700k", "kadis700k_s384": "kadis700k", "kadis-700k": "kadis700k"}


def _source_of(image: str) -> str:
    first = image.split("/", 1)[0].lower()
    return _FOLDERS.get(first, "unknown")


class DQ495KReader(SourceReader):
    """Items from DataDepictQA metas files (streamed; see the module docstring).

    ``keep_full_reference=True`` also keeps ``quality_single_A`` records, whose text was
    written against a reference image. Other parameters: :class:`giqa.data.sources.SourceReader`.
    """

    name = "DQ-495K"

    def __init__(self, paths: Any, *, keep_full_reference: bool = False, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self.keep_full_reference = keep_full_reference

    def _parse(self, record: Any) -> Union[SourceItem, str]:
        rec = require_dict(record)
        task = rec.get("task_type")
        if not isinstance(task, str):
            raise _FieldError("task_type", f"expected a string, got {_type(task)}")
        if task not in SINGLE_IMAGE_TASKS:
            return "not_single_image"
        if rec.get("image_B") is not None:
            return "not_single_image"  # a comparison record labelled single-image
        if (task in FULL_REFERENCE_TASKS or rec.get("image_ref") is not None) and not self.keep_full_reference:
            return "full_reference"
        if "image_A" not in rec:
            raise _FieldError("image_A", "missing")
        image = self._image(rec["image_A"], "image_A")
        pair = conversation_pair(rec)
        if pair is None:
            return "multi_turn"
        _, gpt = pair
        if count_words(gpt) < self.min_words:
            return "short_answer"
        self._check_distortion(rec)
        source_id = self._source_id(rec, image)
        self._check_exists(image, "image_A")
        source = (self._source_of or _source_of)(image)
        self.stats.count(self.stats.selected_by, task)
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
