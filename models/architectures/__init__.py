"""Recurrent forecaster architectures behind one interface (:func:`build_model`)."""

from models.architectures.builder import build_model
from models.architectures.families import FAMILIES

__all__ = ["FAMILIES", "build_model"]
