"""Recurrent forecasters: architectures, training, evaluation, MLflow tracking and registry."""
