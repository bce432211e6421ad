"""nearcast: recurrent forecasters, tracked in MLflow, served over HTTP."""

__version__ = "0.1.0"
