"""nearcast: recurrent forecasters, tracked in MLflow, served over HTTP.

The Python API (``import nearcast as nc``)::

    m = nc.Nearcast(model=nc.LSTM(units=128, layers=2), freq="h", horizon=48).fit(df)
    m.predict()                               # long frame: unique_id, ds, forecast[, q...]
    m.cross_validation(folds=3)               # the scores of `nearcast evaluate`
    m.log(experiment="demo", register="demo") # an MLflow run and a registered version
    nc.load("models:/demo@champion")          # back, in any process
    nc.Nearcast.from_yaml("configs/lstm.yaml")

Importing nearcast does not load TensorFlow or MLflow; fitting and logging do.
"""

from importlib.metadata import PackageNotFoundError, version

from nearcast.models.estimator import GRU, LSTM, RNN, Nearcast, load

try:
    __version__ = version("nearcast")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["GRU", "LSTM", "RNN", "Nearcast", "__version__", "load"]
