"""``nearcast promote`` and ``nearcast rollback``: alias moves under the model's alias lock.

Both are compare-and-set (:func:`models.registry.move_champion`): ``champion`` moves only if it
still points where the command read it, re-read under the alias lock that ``retrain`` takes for
its promotion too. ``promote`` first loads the version back from the registry in a fresh
process (:mod:`models.load_check`); promoting the current champion changes nothing. ``rollback``
restores a version that was champion before and moves at once (no load check: it is the way
back when something is wrong, and the restored version served before).
"""

from __future__ import annotations

from collections.abc import Callable

from nearcast.models import registry
from nearcast.models.settings import MlflowSettings
from nearcast.service.retraining.lock import alias_lock

Echo = Callable[[str], None]


def promote_version(settings: MlflowSettings, name: str, version: int, reason: str,
                    echo: Echo) -> registry.AliasMove:
    """Make ``version`` champion once it passed the load check; no-op when it already is.

    Raises:
        ValueError: the model or the version does not exist.
        LoadCheckError: the version does not load (tagged on it); ``champion`` unchanged.
        AliasMovedError: ``champion`` moved while the check ran; not moved.
        LockBusyError: the alias lock stayed busy.
    """
    client = settings.connect()
    target = registry.existing_version(client, name, version)
    before = registry.version_for_alias(client, name, registry.CHAMPION)
    if before is not None and before.version == version:
        return registry.AliasMove(target, before, moved=False)
    from nearcast.models.load_check import verify_version

    echo(f"checking that {name} v{version} loads back from the registry")
    echo(verify_version(settings, client, target))
    with alias_lock(settings, name, warn=echo) as held:
        held.ensure_held()
        return registry.move_champion(client, name, version, reason,
                                      expected=before.version if before else None)


def rollback_champion(settings: MlflowSettings, name: str, echo: Echo) -> registry.AliasMove:
    """Move ``champion`` back to its recorded predecessor, under the alias lock.

    Raises:
        ValueError: no champion, or it records no previous champion.
        LockBusyError: the alias lock stayed busy.
    """
    client = settings.connect()
    with alias_lock(settings, name, warn=echo) as held:
        held.ensure_held()
        current, previous = registry.rollback_target(client, name)
        return registry.move_champion(client, name, previous, f"rollback from v{current.version}",
                                      record_previous=False, expected=current.version)


def describe(move: registry.AliasMove) -> str:
    """The line a command prints for a move."""
    t, was = move.target, move.previous.version if move.previous else None
    if not move.moved:
        return f"{t.name} v{t.version} is already champion; nothing changed"
    return f"champion -> {t.name} v{t.version} (was {registry.version_label(was)})"


__all__ = ["describe", "promote_version", "rollback_champion"]
