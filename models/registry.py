"""Every MLflow Model Registry call of nearcast, in one place.

New versions get alias ``challenger``; :func:`promote` moves ``champion`` and records who,
why and the previous champion in version tags, so :func:`rollback` can undo it.

Alias moves are compare-and-set: :func:`move_champion` re-reads ``champion`` right before
moving it and refuses (:class:`AliasMovedError`) when it no longer points where the caller read
it. Callers that may race (``promote``, ``rollback``, ``retrain``) hold the model's alias lock
(:func:`service.retraining.lock.alias_lock`) around the re-read and the move. Promoting the
current champion changes nothing.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION, CHALLENGER = "champion", "challenger"
TAG_PREVIOUS = "nearcast.previous_champion"
ANY = object()
"""``expected`` of :func:`move_champion` when the caller read nothing (no compare)."""


class AliasMovedError(RuntimeError):
    """The alias no longer points where the caller read it; it was not moved."""


@dataclass(frozen=True)
class VersionRef:
    """A registered model version and where it came from."""

    name: str
    version: int
    run_id: str
    source: str


def _ref(mv: object) -> VersionRef:
    return VersionRef(
        name=str(mv.name), version=int(mv.version),  # type: ignore[attr-defined]
        run_id=str(mv.run_id or ""), source=str(mv.source),  # type: ignore[attr-defined]
    )


def register(client: MlflowClient, name: str, model_uri: str, run_id: str,
             tags: dict[str, str] | None = None,
             verify: Callable[[VersionRef], object] | None = None,
             description: str | None = None) -> VersionRef:
    """Register ``model_uri`` as a new version of ``name`` and give it alias ``challenger``.

    ``description`` (markdown: its scores and how it became challenger) is the version's.

    ``verify`` (e.g. :func:`models.load_check.verifier`) runs between the two: when it raises,
    the version stays registered without an alias and every alias stays where it was.
    """
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="nearcast forecaster")
    # A tracking server accepts a ``models:/<model_id>`` source only with its model id.
    mv = client.create_model_version(name, model_uri, run_id=run_id, tags=tags or {},
                                     model_id=_logged_model_id(model_uri))
    ref = _ref(mv)
    if verify is not None:
        verify(ref)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    if description:
        client.update_model_version(name, mv.version, description=description)
    return ref


def _logged_model_id(model_uri: str) -> str | None:
    """``m-…`` of a logged-model URI ``models:/m-…`` (None for any other URI)."""
    rest = model_uri.removeprefix("models:/")
    if rest != model_uri and rest.startswith("m-") and "/" not in rest and "@" not in rest:
        return rest
    return None


def version_for_alias(client: MlflowClient, name: str, alias: str) -> VersionRef | None:
    """The version behind ``name@alias``, or None when the alias (or model) does not exist."""
    try:
        return _ref(client.get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@dataclass(frozen=True)
class AliasMove:
    """What :func:`move_champion` did.

    Attributes:
        target: the version ``champion`` points at now.
        previous: the champion before (None when there was none).
        moved: False when ``target`` already was champion (nothing was written).
    """

    target: VersionRef
    previous: VersionRef | None
    moved: bool


def version_label(version: int | None) -> str:
    """``v3``, or ``none``."""
    return "none" if version is None else f"v{version}"


def move_champion(
    client: MlflowClient, name: str, version: int, reason: str, who: str | None = None,
    record_previous: bool = True, expected: int | None | object = ANY,
) -> AliasMove:
    """Point ``champion`` at ``version`` if it still points at ``expected``; tag who and why.

    The alias moves last, in one call: when anything before fails, ``champion`` is unchanged.
    ``record_previous=False`` keeps the version's recorded previous champion (rollbacks).
    When ``version`` already is champion, nothing is written (``moved`` is False).

    Raises:
        ValueError: the model or the version does not exist (naming the versions there are).
        AliasMovedError: ``champion`` is not ``expected`` (a version number, or None for "no
            champion") any more; nothing was written.
    """
    target = existing_version(client, name, version)
    previous = version_for_alias(client, name, CHAMPION)
    now = previous.version if previous else None
    if expected is not ANY and now != expected:
        was = cast("int | None", expected)
        raise AliasMovedError(f"champion of {name} moved from {version_label(was)} to "
                              f"{version_label(now)} since it was read; not moving it to "
                              f"v{version}")
    if now == version:
        return AliasMove(target, previous, moved=False)
    tags = {"nearcast.promoted_by": who or getpass.getuser(), "nearcast.promoted_reason": reason}
    if record_previous:
        tags[TAG_PREVIOUS] = str(now) if now is not None else ""
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    note_alias(client, name, version, f"- **champion** since {_now()}: moved by "
                f"{tags['nearcast.promoted_by']} from {version_label(now)} — {reason}")
    return AliasMove(target, previous, moved=True)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def note_alias(client: MlflowClient, name: str, version: int, line: str) -> None:
    """Append ``line`` to the version's description (its alias history, newest last)."""
    old = client.get_model_version(name, str(version)).description or ""
    head = old if "### Aliases" in old else (old + "\n\n### Aliases\n").lstrip()
    client.update_model_version(name, str(version), description=f"{head.rstrip()}\n{line}")


def promote(client: MlflowClient, name: str, version: int, reason: str,
            who: str | None = None, record_previous: bool = True) -> VersionRef:
    """:func:`move_champion` without a compare (scripts and tests that race with nothing).

    Raises:
        ValueError: the model or the version does not exist (naming the versions there are).
    """
    return move_champion(client, name, version, reason, who, record_previous).target


def existing_version(client: MlflowClient, name: str, version: int) -> VersionRef:
    """Version ``version`` of ``name``.

    Raises:
        ValueError: the model or the version does not exist (naming the versions there are).
    """
    try:
        return _ref(client.get_model_version(name, str(version)))
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    try:
        found = sorted(int(mv.version) for mv in client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        found = []
    if not found:
        raise ValueError(f"model {name!r} has no registered versions") from None
    raise ValueError(f"model {name!r} has no version {version}; versions: {found}") from None


def rollback_target(client: MlflowClient, name: str) -> tuple[VersionRef, int]:
    """The current champion and the version it recorded as its predecessor.

    Raises:
        ValueError: there is no champion, or it records no previous champion.
    """
    current = version_for_alias(client, name, CHAMPION)
    if current is None:
        raise ValueError(f"model {name!r} has no champion to roll back")
    mv = client.get_model_version(name, str(current.version))
    previous = (mv.tags or {}).get(TAG_PREVIOUS, "")
    if not previous:
        raise ValueError(f"{name} v{current.version} records no previous champion")
    return current, int(previous)


def rollback(client: MlflowClient, name: str, who: str | None = None) -> VersionRef:
    """Move ``champion`` back to the version it pointed at before the last promotion.

    The restored version keeps its own recorded predecessor, so repeated rollbacks walk back
    through earlier champions (v3 -> v2 -> v1) instead of toggling between two versions. The
    move is compare-and-set against the champion read here.

    Raises:
        ValueError: there is no champion, or it records no previous champion.
        AliasMovedError: ``champion`` moved between the read and the move.
    """
    current, previous = rollback_target(client, name)
    return move_champion(client, name, previous, f"rollback from v{current.version}", who,
                         record_previous=False, expected=current.version).target


__all__ = [
    "ANY", "CHALLENGER", "CHAMPION", "AliasMove", "AliasMovedError", "VersionRef",
    "existing_version", "move_champion", "note_alias", "promote", "register", "rollback",
    "rollback_target", "version_for_alias", "version_label",
]
