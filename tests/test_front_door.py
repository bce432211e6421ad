"""``import nearcast``: fit, predict and cross-validate in memory, then log, register and load.

Each part runs as a user's own script in a fresh process (only ``import nearcast`` and
pandas): the in-memory part must not even import MLflow, and the model registered by one
process is loaded back by another.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import DATA

REPO = Path(__file__).resolve().parents[1]

FIT = """
import json, sys
import pandas as pd
import nearcast as nc

df = pd.read_csv(sys.argv[1])
m = nc.Nearcast(model=nc.LSTM(units=8), freq="h", horizon=24, input_size=72, min_history=48,
                quantiles=[0.1, 0.9], loss="pinball", epochs=2, steps_per_epoch=4,
                batch_size=32, verbose=False)
m.fit(df)
forecast = m.predict(df, horizon=12, quantiles=[0.1])
cv = m.cross_validation(df, folds=2)
in_memory = "mlflow" in sys.modules
logged = m.log(experiment="api", register="api-model")
out = {"mlflow_before_log": in_memory, "columns": list(forecast.columns),
       "rows": len(forecast), "ids": sorted(forecast.unique_id.unique()),
       "step": str(forecast.ds.iloc[1] - forecast.ds.iloc[0]),
       "forecast": forecast.forecast.tolist(), "cv": cv.aggregate,
       "holdout": m.fitted.evaluation.scores["model"],
       "version": logged.version.version, "run": logged.run_id}
print("RESULT " + json.dumps(out))
"""

LOAD = """
import json, sys
import pandas as pd
import nearcast as nc

df = pd.read_csv(sys.argv[1])
m = nc.load("models:/api-model@challenger")
forecast = m.predict(df, horizon=12, quantiles=[0.1])
print("RESULT " + json.dumps({"forecast": forecast.forecast.tolist(),
                              "cv": m.cross_validation(df, folds=2).aggregate,
                              "freq": m.config.freq, "grid": m.grid.model_dump()}))
"""


def _run(script: str, tmp_path: Path, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    env |= {"NEARCAST_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3",
            "NEARCAST_LOAD_CHECK": "inprocess"}  # loading in another process is tested here
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def _close(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> bool:
    return all(abs(a[m][k] - b[m][k]) <= 1e-6 * max(1.0, abs(b[m][k])) for m in b for k in b[m])


@pytest.mark.slow
def test_fit_predict_cross_validate_log_and_load_through_import_nearcast(tmp_path: Path) -> None:
    data = str(DATA / "m4_tiny_long.csv")
    fitted = _run(FIT, tmp_path, data)
    assert fitted["mlflow_before_log"] is False  # fit, predict, cross-validate: no MLflow
    assert fitted["columns"] == ["unique_id", "ds", "forecast", "q0.1"]
    assert fitted["rows"] == 8 * 12 and len(fitted["ids"]) == 8  # type: ignore[arg-type]
    assert fitted["step"] == "0 days 01:00:00"
    cv = fitted["cv"]
    assert isinstance(cv, dict) and set(cv) == {"model", "naive", "seasonal_naive", "naive2"}
    assert fitted["version"] == 1

    loaded = _run(LOAD, tmp_path, data)  # another process, through the registry
    assert loaded["freq"] == "h" and loaded["grid"]["agg"] == "mean"  # type: ignore[index]
    diffs = [abs(x - y) for x, y in zip(loaded["forecast"], fitted["forecast"],  # type: ignore
                                        strict=True)]
    assert max(diffs) <= 1e-4
    assert _close(loaded["cv"], cv)  # type: ignore[arg-type]

    # The same scores as `nearcast evaluate` on the registered version (its own process).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    env |= {"NEARCAST_HOME": str(tmp_path / "home"), "NEARCAST_EXPERIMENT": "api"}
    done = subprocess.run([sys.executable, "-m", "nearcast", "evaluate", "--model",
                           "models:/api-model/1", "--data", data, "--folds", "2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    labels = next(x for x in lines if x.startswith("method")).split()[1:]
    values = next(x for x in lines if x.startswith("model ")).split()[1:]
    printed = {label.lower(): float(v) for label, v in zip(labels, values, strict=True)}
    assert set(printed) == {"smape", "mase", "owa", "mae", "rmse"}
    for key, value in printed.items():  # printed to 3 decimals
        assert abs(value - cv["model"][key]) <= 5e-4, (key, value)  # type: ignore[index]


def test_unknown_option_names_the_closest_field() -> None:
    import nearcast as nc

    with pytest.raises(TypeError, match=r"unknown option 'epoch' \(did you mean 'epochs'\?\)"):
        nc.Nearcast(epoch=3)


def test_unfitted_model_says_what_to_do() -> None:
    import nearcast as nc
    from nearcast.models.estimator import NotFittedError

    m = nc.Nearcast()
    with pytest.raises(NotFittedError, match=r"call fit\(df\)"):
        m.predict()
    with pytest.raises(NotFittedError, match=r"call fit\(df\) first"):
        m.log()


def test_a_list_of_networks_is_an_ensemble() -> None:
    import nearcast as nc

    m = nc.Nearcast(model=[nc.LSTM(units=16, seed=1), nc.GRU(units=16, seed=2)], horizon=24,
                    input_size=72, combine="mean")
    assert m.job.ensemble is not None and m.job.ensemble.combine == "mean"
    assert [c.cell for c in m.job.member_configs()] == ["lstm", "gru"]
    assert m.config.horizon == 24 and m.grid.freq == "h"


def test_from_yaml_reads_every_committed_config() -> None:
    import nearcast as nc

    for path in sorted((REPO / "configs").glob("*.yaml")):
        m = nc.Nearcast.from_yaml(path)
        assert m.config.freq == m.grid.freq, path


@pytest.mark.slow
def test_readme_python_api_block_runs(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    env |= {"NEARCAST_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3",
            "NEARCAST_LOAD_CHECK": "inprocess"}  # loading in another process is tested here
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "model" in done.stdout and "naive2" in done.stdout


def test_import_nearcast_loads_neither_tensorflow_nor_mlflow(tmp_path: Path) -> None:
    probe = "import sys, nearcast; print(sorted({'tensorflow', 'mlflow'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_level_mad_trains_on_values_below_zero_and_log_level_refuses_them(tiny_df: pd.DataFrame
                                                                          ) -> None:
    import nearcast as nc
    from nearcast.pipelines.errors import DataValidationError

    centred = tiny_df.assign(y=tiny_df["y"] - tiny_df.groupby("unique_id")["y"].transform("mean"))
    assert (centred["y"] < 0).mean() > 0.3
    options = {"horizon": 24, "input_size": 72, "min_history": 48, "epochs": 2,
               "steps_per_epoch": 4, "batch_size": 32, "verbose": False}
    m = nc.Nearcast(model=nc.LSTM(units=8), scaling="level_mad", **options).fit(centred)
    forecast = m.predict(centred)["forecast"].to_numpy()
    assert np.isfinite(forecast).all() and (forecast < 0).any()
    with pytest.raises(DataValidationError, match=r"scaling 'log_level' needs values > 0"):
        nc.Nearcast(model=nc.LSTM(units=8), scaling="log_level", **options).fit(centred)
