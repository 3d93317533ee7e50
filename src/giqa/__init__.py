"""giqa: Grounding-IQA, image quality assessment where every judgement points at its region.

``import giqa`` is light: it pulls in NumPy and Pydantic, never torch or transformers.
"""

from giqa.errors import GiqaError
from giqa.types import Box, Effect, GroundedPhrase, Provenance, Sample, Tag, Task, VqaKind, VqaMode

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Effect",
    "GiqaError",
    "GroundedPhrase",
    "Provenance",
    "Sample",
    "Tag",
    "Task",
    "VqaKind",
    "VqaMode",
    "__version__",
]
