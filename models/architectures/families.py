"""Registry of recurrent cell families: name -> module with ``make_layer``/``make_cell``."""

from __future__ import annotations

from types import ModuleType

from nearcast.models.architectures import gru, lstm, simple_rnn

FAMILIES: dict[str, ModuleType] = {"lstm": lstm, "gru": gru, "simple_rnn": simple_rnn}


def family(name: str) -> ModuleType:
    """Look up a cell family, naming the known ones when ``name`` is not among them."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; choose one of {sorted(FAMILIES)}") from None


__all__ = ["FAMILIES", "family"]
