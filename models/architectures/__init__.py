"""Recurrent forecaster architectures behind one interface (:func:`build_model`).

Importing the package registers every custom Keras layer (:mod:`models.architectures.registry`).
"""

from nearcast.models.architectures import registry as _registry  # noqa: F401  (registers all layers)
from nearcast.models.architectures.builder import build_model
from nearcast.models.architectures.families import FAMILIES

__all__ = ["FAMILIES", "build_model"]
