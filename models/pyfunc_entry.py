"""Models-from-code entry point: MLflow runs this file to build the pyfunc (no pickling)."""

from mlflow.models import set_model

from nearcast.models.artifact import NearcastPyfunc

set_model(NearcastPyfunc())
