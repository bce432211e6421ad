"""Every MLflow Model Registry call of nearcast, in one place.

New versions get alias ``challenger``; :func:`promote` moves ``champion`` and records who,
why and the previous champion in version tags, so :func:`rollback` can undo it.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION, CHALLENGER = "champion", "challenger"
TAG_PREVIOUS = "nearcast.previous_champion"


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
             tags: dict[str, str] | None = None) -> VersionRef:
    """Register ``model_uri`` as a new version of ``name`` and give it alias ``challenger``."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="nearcast forecaster")
    # A tracking server accepts a ``models:/<model_id>`` source only with its model id.
    mv = client.create_model_version(name, model_uri, run_id=run_id, tags=tags or {},
                                     model_id=_logged_model_id(model_uri))
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return _ref(mv)


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


def promote(client: MlflowClient, name: str, version: int, reason: str,
            who: str | None = None, record_previous: bool = True) -> VersionRef:
    """Point ``champion`` at ``version``; tag it with who, why and the previous champion.

    The alias moves last, in one call: when anything before fails, ``champion`` is unchanged.
    ``record_previous=False`` keeps the version's recorded previous champion (rollbacks).

    Raises:
        ValueError: the model or the version does not exist (naming the versions there are).
    """
    target = _existing(client, name, version)
    previous = version_for_alias(client, name, CHAMPION)
    tags = {"nearcast.promoted_by": who or getpass.getuser(), "nearcast.promoted_reason": reason}
    if record_previous:
        tags[TAG_PREVIOUS] = str(previous.version) if previous else ""
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return target


def _existing(client: MlflowClient, name: str, version: int) -> VersionRef:
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


def rollback(client: MlflowClient, name: str, who: str | None = None) -> VersionRef:
    """Move ``champion`` back to the version it pointed at before the last promotion.

    The restored version keeps its own recorded predecessor, so repeated rollbacks walk back
    through earlier champions (v3 -> v2 -> v1) instead of toggling between two versions.

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
    return promote(client, name, int(previous), f"rollback from v{current.version}", who,
                   record_previous=False)


__all__ = [
    "CHALLENGER", "CHAMPION", "VersionRef", "promote", "register", "rollback", "version_for_alias"
]
