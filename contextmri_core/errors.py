"""The project's exception hierarchy: every error a user can cause names the input and the fix."""

from __future__ import annotations


class ContextMRIError(Exception):
    """Base class of every error raised on purpose by contextmri."""


class InputFileError(ContextMRIError):
    """A file that cannot be used: names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class HeaderError(ContextMRIError):
    """An ISMRMRD XML header that cannot be parsed."""


class ConfigError(ContextMRIError):
    """A configuration value that is out of range: names the field and the fix."""


class ShapeError(ContextMRIError, ValueError):
    """Arrays whose shapes do not fit the data contract."""


def check_fields(owner: object, checks) -> None:
    """Raise ``ConfigError`` for the first ``(field, ok, fix)`` of ``checks`` that is not ok,
    naming ``Owner.field=value`` and the fix (for frozen config dataclasses)."""
    for name, ok, fix in checks:
        if not ok:
            raise ConfigError(f"{type(owner).__name__}.{name}={getattr(owner, name)!r} is "
                              f"invalid: {fix}")


def reject_unknown_keys(cls: type, d: dict, where: str) -> None:
    """``ConfigError`` naming ``where`` when ``d`` has keys that are not fields of dataclass
    ``cls`` (a misspelt YAML key must not be ignored silently)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(d) - names)
    if extra:
        raise ConfigError(f"{where}: unknown keys {extra}; valid: {sorted(names)}")
