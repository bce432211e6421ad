"""API settings from the environment (no server)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nearcast.service.settings import ApiSettings


def test_key_lists_read_json_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEARCAST_API_KEYS", " k1, k2 ,")
    monkeypatch.setenv("NEARCAST_ADMIN_KEYS", '["a1"]')
    monkeypatch.setenv("NEARCAST_MODELS", "m1,m2")
    s = ApiSettings()
    assert (s.api_keys, s.admin_keys, s.served_models()) == (["k1", "k2"], ["a1"], ["m1", "m2"])
    assert s.auth_enabled and not ApiSettings(api_keys=[], admin_keys=[]).auth_enabled


def test_auth_is_off_by_default_and_limits_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NEARCAST_API_KEYS", "NEARCAST_ADMIN_KEYS"):
        monkeypatch.delenv(var, raising=False)
    assert not ApiSettings().auth_enabled
    with pytest.raises(ValidationError, match="queue_max_series 8 is below batch_max_series 16"):
        ApiSettings(queue_max_series=8, batch_max_series=16)
    with pytest.raises(ValidationError, match="max_series"):
        ApiSettings(max_series=10_001)
