"""Result objects of propagation: what was placed, what failed, the patched text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from florsql.errors import PropagateError, concat_messages


@dataclass(frozen=True)
class Placement:
    """A log statement placed into the old version.

    ``new_line`` is its line in the new version, ``old_line`` its line in the patched old text,
    ``scope`` the chain of scopes around it there (outermost first), ``carried`` the code of the
    statements that travelled with it, ``renamed`` the variables it reads under their old names,
    ``binds`` the old version's names that what travelled assigns or changes (a checkpoint of
    the old run holds them as the old code left them: replay never restores them).
    """

    name: str
    new_line: int
    old_line: int
    scope: tuple[str, ...]
    carried: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict, hash=False)
    binds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    """A log statement that was not placed, and why (``reason`` reads on its own)."""

    name: str
    new_line: int
    reason: str

    def __str__(self) -> str:
        where = f" (line {self.new_line} of the new version)" if self.new_line else ""
        return f"{self.name}{where}: {self.reason}"


class PlacementError(PropagateError):
    """Some log statements could not be placed; ``failures`` says which and why."""

    def __init__(
        self, failures: list[Failure], path: str | None = None, messages: list[str] | None = None
    ) -> None:
        self.failures = failures
        self.path = path
        head = f"{path}: " if path else ""
        super().__init__(head + concat_messages(messages or [str(f) for f in failures]))


@dataclass(frozen=True)
class Propagation:
    """The outcome for one file: ``source`` is the old text with the placed statements in it.

    ``original`` is the old text as given; ``skipped`` the names the old version logs already.
    """

    original: str
    source: str
    placed: tuple[Placement, ...] = ()
    failed: tuple[Failure, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        """Whether anything was inserted."""
        return self.source != self.original

    def raise_for_failures(self, path: str | None = None) -> None:
        """Raise a :class:`PlacementError` listing the failures, if there are any."""
        if self.failed:
            raise PlacementError(list(self.failed), path)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the on-disk cache format), without the texts' duplication."""
        data = asdict(self)
        data["source"] = None if not self.changed else self.source
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Propagation:
        """Inverse of :meth:`to_json`."""
        return cls(
            original=data["original"],
            source=data["source"] if data["source"] is not None else data["original"],
            placed=tuple(
                Placement(
                    **{
                        **p,
                        "scope": tuple(p["scope"]),
                        "carried": tuple(p["carried"]),
                        "binds": tuple(p.get("binds", ())),
                    }
                )
                for p in data["placed"]
            ),
            failed=tuple(Failure(**f) for f in data["failed"]),
            skipped=tuple(data["skipped"]),
        )
