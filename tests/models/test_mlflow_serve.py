"""`mlflow models serve` on the registered champion answers a dataframe_split request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import Champion, free_port

READY_SECONDS = 120.0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no /ping answer within {READY_SECONDS}s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_mlflow_models_serve_answers_dataframe_split(
    champion: Champion, tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    settings, port = champion.settings, free_port()
    bin_dir = Path(sys.executable).parent
    # Both URIs: mlflow.set_registry_uri() in this process exports MLFLOW_REGISTRY_URI too.
    uri = settings.resolved_tracking_uri()
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
                        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                        "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m",
           f"models:/{settings.model_name}@champion", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        # Own session: the server's uvicorn child is stopped with it, by this group id only.
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, log)
        request = tiny_df[tiny_df["unique_id"].isin(["H2", "H5"])].groupby("unique_id").tail(96)
        request = request.assign(ds=request["ds"].dt.tz_localize(None))  # naive UTC
        split = request[["unique_id", "ds", "y"]].to_dict(orient="split", index=False)
        split["data"] = [[u, d.isoformat(), float(y)] for u, d, y in split["data"]]
        body = {"dataframe_split": split, "params": {"horizon": 24}}
        resp = httpx.post(f"{url}/invocations", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        frame = pd.DataFrame(resp.json()["predictions"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    assert list(frame.columns) == ["unique_id", "ds", "forecast"]
    assert frame.groupby("unique_id").size().to_dict() == {"H2": 24, "H5": 24}
    histories = [g["y"].to_numpy(np.float32) for _, g in request.groupby("unique_id")]
    expected = champion.job.forecaster.forecast(histories).values[:, :24, 0]
    np.testing.assert_allclose(frame["forecast"].to_numpy().reshape(2, 24), expected, rtol=1e-5)
    last = request.groupby("unique_id")["ds"].max()
    for uid, g in frame.groupby("unique_id"):
        ds = pd.to_datetime(g["ds"]).reset_index(drop=True)
        assert ds.dt.tz is None
        assert list(ds) == list(pd.date_range(last[uid], periods=25, freq="h")[1:])
