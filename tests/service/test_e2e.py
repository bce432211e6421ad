"""End to end: tiny model trained and registered in a temp store, forecast over real HTTP."""

from __future__ import annotations

import httpx
import mlflow
import numpy as np
import pandas as pd

from conftest import Champion, LiveServer, start_server
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings


def test_forecast_over_http_matches_pyfunc(
    champion: Champion, tiny_df: pd.DataFrame, live: list[LiveServer]
) -> None:
    settings = champion.settings
    api = ApiSettings(models=[settings.model_name], poll_seconds=60)
    server = start_server(create_app(api, settings))
    live.append(server)
    series = tiny_df[tiny_df["unique_id"] == "H3"].tail(96)
    body = {"series": [{"id": "H3", "start": series["ds"].iloc[0].isoformat(),
                        "values": series["y"].tolist()}]}
    resp = httpx.post(f"{server.url}/v1/forecast", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["model"] == {"model": settings.model_name, "version": champion.job.version.version,
                            "alias": "champion", "run_id": champion.job.run_id}
    (s,) = out["series"]
    assert len(s["forecast"]) == 24 and len(s["timestamps"]) == 24
    first = pd.Timestamp(s["timestamps"][0])
    assert first == series["ds"].iloc[-1] + pd.Timedelta(hours=1)
    assert s["pipeline"]["points_used"] == 72 and s["pipeline"]["points_dropped"] == 24

    # The same artifact through mlflow.pyfunc gives the same numbers.
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    naive = series.assign(ds=series["ds"].dt.tz_localize(None))  # pyfunc takes naive UTC
    frame = model.predict(naive[["unique_id", "ds", "y"]], params={"horizon": 24})
    np.testing.assert_allclose(frame["forecast"].to_numpy(), s["forecast"], rtol=1e-5)
    expected = [pd.Timestamp(t).tz_localize(None) for t in s["timestamps"]]
    assert list(frame["ds"]) == expected
