"""Exception hierarchy: one root, input errors also subclass the builtin a caller expects."""

from __future__ import annotations


class GiqaError(Exception):
    """Root of every error giqa raises on purpose."""


class InvalidBoxError(GiqaError, ValueError):
    """A box is not finite, not inside [0, 1], or has x1 > x2 / y1 > y2."""


class GridIndexError(GiqaError, ValueError):
    """A grid index lies outside ``[0, n*m)``."""


class ParseError(GiqaError, ValueError):
    """Text (model output, a record, a grounded phrase) does not follow the expected format."""


class FormatError(GiqaError, ValueError):
    """A phrase or box cannot be written in the requested text format."""


class ConfigError(GiqaError, ValueError):
    """A setting or option is unknown, out of range or inconsistent."""


class ImageError(GiqaError, ValueError):
    """An image is missing, corrupt, unsupported, or outside the dataset root."""


class BackendError(GiqaError, RuntimeError):
    """A model backend failed; the original exception is chained as ``__cause__``."""


class BackendContractError(BackendError):
    """A backend broke its protocol at run time (wrong number of results, wrong types, values
    out of range). Not a bad record: a pipeline stops the run on it instead of failing every
    record."""


class PartialBatchError(BackendError):
    """Some items of a batch call failed. ``results[i]`` is item ``i``'s result or its exception,
    so a caller keeps the successes instead of sending the whole batch again."""

    def __init__(self, message: str, results: "list[object]") -> None:
        super().__init__(message)
        self.results = results


class RunAborted(GiqaError, RuntimeError):
    """A pipeline run stopped early (the fail-fast rule, or a backend that broke its contract).

    ``summary`` holds the counts written to ``run_summary.json``; what was written stays, and a
    re-run resumes."""

    def __init__(self, message: str, summary: object = None) -> None:
        super().__init__(message)
        self.summary = summary


class OutputLockedError(GiqaError, RuntimeError):
    """Another process is writing into the same output directory."""


class MissingDependencyError(GiqaError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class RegistryError(GiqaError, KeyError):
    """A backend name is unknown or registered twice."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def require(module: str, extra: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``pip install "giqa[extra]"``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is needed here but is not installed; run: pip install \"giqa[{extra}]\""
        ) from exc
