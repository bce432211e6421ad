"""Every custom Keras object of nearcast, registered by importing this one module.

Keras finds a saved model's custom layers by their registered names (``nearcast>TakeLast``), and
a class is registered only once its defining module has been imported. This module imports all
of them, so whatever loads a model (:meth:`models.forecaster.Forecaster.load`, the MLflow pyfunc
entry) needs no import order: a new module with ``@keras.saving.register_keras_serializable``
classes must be listed in :data:`MODULES` (a test checks that none is missing).
"""

from __future__ import annotations

import keras

from nearcast.models.architectures import combine, heads, layers

MODULES = (combine, heads, layers)
"""The modules that define registered classes (all of them)."""

PACKAGE = "nearcast"


def registered_names() -> list[str]:
    """The registered names of nearcast's custom objects (``nearcast>TakeLast`` ...)."""
    found = keras.saving.get_custom_objects()
    return sorted(name for name in found if name.startswith(f"{PACKAGE}>"))


__all__ = ["MODULES", "PACKAGE", "registered_names"]
