"""Forecast API over real HTTP: regular, irregular, short and gappy histories, quantiles,
provenance against the registry, listings, metrics and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import numpy as np
import pandas as pd
import pytest
from svc_helpers import QuantileModel, metric, post, scrape, series_body, train_quantile_model

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.pipelines.prepare import regularize
from nearcast.service.app import create_app
from nearcast.service.schemas import FLOAT32_MAX, ForecastResponse
from nearcast.service.settings import ApiSettings
from nearcast.service.timestamps import TIME_RANGE, TIMESTAMP_PATTERN

HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def qmodel(champion: Champion, tiny_df: pd.DataFrame) -> QuantileModel:
    return train_quantile_model(champion, tiny_df)


@pytest.fixture(scope="module")
def server(champion: Champion, qmodel: QuantileModel) -> Iterator[LiveServer]:
    live = start_server(create_app(ApiSettings(models=["tiny", "tinyq"], poll_seconds=60),
                                   champion.settings))
    yield live
    stop_server(live)


def _tail(df: pd.DataFrame, uid: str, n: int) -> pd.DataFrame:
    return df[df["unique_id"] == uid].tail(n).reset_index(drop=True)


def _hours_after(last: pd.Timestamp, n: int) -> list[pd.Timestamp]:
    return [last + HOUR * k for k in range(1, n + 1)]


def test_regular_batch_with_quantiles_matches_model_and_registry(
    server: LiveServer, qmodel: QuantileModel, tiny_df: pd.DataFrame
) -> None:
    body = {"model": "tinyq", "horizon": 12, "quantiles": [0.9, 0.1],
            "series": [series_body(tiny_df, "H1", 96), series_body(tiny_df, "H2", 72)]}
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    ForecastResponse.model_validate(out)  # the documented shape, field for field
    mv = qmodel.settings.connect().get_model_version_by_alias("tinyq", "champion")
    assert out["model"] == {"model": "tinyq", "version": int(mv.version), "alias": "champion",
                            "run_id": mv.run_id}
    assert mv.run_id == qmodel.job.run_id and out["horizon"] == 12
    fc = qmodel.job.forecaster
    for s, (uid, n) in zip(out["series"], [("H1", 96), ("H2", 72)], strict=True):
        tail = _tail(tiny_df, uid, n)
        assert s["id"] == uid
        assert [pd.Timestamp(t) for t in s["timestamps"]] == _hours_after(tail["ds"].iloc[-1], 12)
        assert set(s["quantiles"]) == {"0.1", "0.9"}
        low, mid, high = (np.array(v) for v in (s["quantiles"]["0.1"], s["forecast"],
                                                 s["quantiles"]["0.9"]))
        assert low.shape == mid.shape == high.shape == (12,)
        assert (low <= mid).all() and (mid <= high).all() and (high - low).max() > 0
        expected = fc.forecast([tail["y"].to_numpy(np.float32)]).values[0, :12]
        np.testing.assert_allclose(mid, expected[:, fc.config.point_index], rtol=1e-5)
        np.testing.assert_allclose(low, expected[:, 0], rtol=1e-5)
        assert s["pipeline"]["points_used"] == 72 and s["pipeline"]["padded"] == 0
        assert s["pipeline"]["points_dropped"] == n - 72


def test_irregular_timestamps_are_bucketed_with_the_model_rule(
    server: LiveServer, champion: Champion, tiny_df: pd.DataFrame
) -> None:
    tail = _tail(tiny_df, "H3", 96)
    kept = tail.drop(index=[10, 11, 40, 70, 71]).reset_index(drop=True)  # 5 empty buckets
    jitter = pd.to_timedelta((np.arange(len(kept)) % 5) * 7, unit="min")
    irregular = kept.assign(ds=kept["ds"] + jitter)
    extra = irregular.iloc[[20]].assign(ds=irregular["ds"].iloc[20] + pd.Timedelta(minutes=40),
                                        y=irregular["y"].iloc[20] + 10.0)  # same bucket
    irregular = pd.concat([irregular, extra]).sort_values("ds").reset_index(drop=True)
    body = {"series": [{"id": "H3", "values": irregular["y"].tolist(),
                        "timestamps": [t.isoformat() for t in irregular["ds"]]}]}
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    (s,) = resp.json()["series"]
    assert s["pipeline"] | {} == {"points_in": 92, "points_used": 72, "points_dropped": 24,
                                  "padded": 0, "points_aggregated": 1, "buckets_filled": 5,
                                  "values_imputed": 5}
    assert pd.Timestamp(s["timestamps"][0]) == tail["ds"].iloc[-1] + HOUR
    fc = champion.job.forecaster
    regular = regularize(irregular.assign(unique_id="H3"), fc.meta.grid).frame
    assert len(regular) == 96
    expected = fc.forecast([regular["y"].to_numpy(np.float32)]).values[0, :, 0]
    np.testing.assert_allclose(s["forecast"], expected, rtol=1e-5)


def test_short_history_is_padded_and_masked(
    server: LiveServer, champion: Champion, tiny_df: pd.DataFrame
) -> None:
    tail = _tail(tiny_df, "H4", 50)
    resp = post(server, {"series": [series_body(tiny_df, "H4", 50)]})
    assert resp.status_code == 200, resp.text
    (s,) = resp.json()["series"]
    # 50 points keep 2 whole folds of 24 (48 real steps), 24 masked steps of padding.
    assert s["pipeline"]["points_used"] == 48 and s["pipeline"]["padded"] == 24
    assert s["pipeline"]["points_dropped"] == 2
    fc = champion.job.forecaster
    expected = fc.forecast([tail["y"].to_numpy(np.float32)]).values[0, :, 0]
    np.testing.assert_allclose(s["forecast"], expected, rtol=1e-5)
    full = fc.forecast([_tail(tiny_df, "H4", 72)["y"].to_numpy(np.float32)]).values[0, :, 0]
    assert not np.allclose(expected, full)  # padding changed the input: a real difference
    too_short = post(server, {"series": [series_body(tiny_df, "H4", 47)]})
    assert too_short.status_code == 422
    assert "series[0] (id 'H4').values" in too_short.json()["error"]
    assert "at least 48" in too_short.json()["error"]


def test_nulls_are_filled_by_the_gap_rule(
    server: LiveServer, champion: Champion, tiny_df: pd.DataFrame
) -> None:
    tail = _tail(tiny_df, "H5", 72)
    values: list[float | None] = tail["y"].tolist()
    for i in (5, 30, 31):
        values[i] = None
    body = {"series": [{"id": "H5", "start": tail["ds"].iloc[0].isoformat(), "values": values}]}
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    (s,) = resp.json()["series"]
    assert s["pipeline"]["values_imputed"] == 3 and s["pipeline"]["buckets_filled"] == 0
    y = np.array([np.nan if v is None else v for v in values])
    idx = np.arange(len(y))
    filled = np.interp(idx, idx[~np.isnan(y)], y[~np.isnan(y)])  # the model's rule: linear
    assert champion.job.forecaster.meta.grid.gap_policy == "linear"
    expected = champion.job.forecaster.forecast([filled.astype(np.float32)]).values[0, :, 0]
    np.testing.assert_allclose(s["forecast"], expected, rtol=1e-5)


def test_defaults_naive_start_and_off_grid_start(
    server: LiveServer, champion: Champion, tiny_df: pd.DataFrame
) -> None:
    tail = _tail(tiny_df, "H6", 72)
    naive = tail["ds"].iloc[0].tz_localize(None) + pd.Timedelta(minutes=20)  # off the grid
    body = {"series": [{"id": "H6", "start": naive.isoformat(), "values": tail["y"].tolist()}]}
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["model"]["model"] == "tiny" and out["horizon"] == 24  # first model, its horizon
    assert out["model"]["version"] == champion.job.version.version
    stamps = [pd.Timestamp(t) for t in out["series"][0]["timestamps"]]
    assert stamps == _hours_after(tail["ds"].iloc[-1], 24)  # floored onto the UTC grid
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in stamps)


def test_models_listing_health_and_readiness(
    server: LiveServer, champion: Champion, qmodel: QuantileModel
) -> None:
    listing = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()}
    assert set(listing) == {"tiny", "tinyq"}
    tiny = listing["tiny"]
    assert tiny["version"] == champion.job.version.version
    assert tiny["run_id"] == champion.job.run_id
    assert (tiny["freq"], tiny["horizon"], tiny["input_size"], tiny["min_history"]) == (
        "h", 24, 72, 48)
    assert tiny["quantiles"] == [] and tiny["last_error"] is None
    assert tiny["metrics"] == pytest.approx(champion.job.forecaster.meta.metrics)
    assert set(tiny["metrics"]) >= {"smape", "mase", "owa"}
    assert listing["tinyq"]["quantiles"] == [0.1, 0.5, 0.9]
    assert listing["tinyq"]["version"] == qmodel.job.version.version
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["tiny", "tinyq"]


def test_metrics_count_requests_batches_and_versions(
    server: LiveServer, champion: Champion, tiny_df: pd.DataFrame
) -> None:
    before = scrape(server)
    for uid in ("H1", "H2", "H3"):
        assert post(server, {"series": [series_body(tiny_df, uid, 72)]}).status_code == 200
    assert post(server, {"series": []}).status_code == 422
    after = scrape(server)

    def delta(sample: str, **labels: str) -> float:
        return metric(after, sample, **labels) - metric(before, sample, **labels)

    route = {"route": "/v1/forecast", "method": "POST"}
    assert delta("nearcast_http_requests_total", status="200", **route) == 3
    assert delta("nearcast_http_requests_total", status="422", **route) == 1
    assert delta("nearcast_http_request_duration_seconds_count", status="200", **route) == 3
    assert delta("nearcast_batch_series_sum", model="tiny") == 3
    assert delta("nearcast_batch_requests_count", model="tiny") == 3
    assert metric(after, "nearcast_model_version", model="tiny") == champion.job.version.version
    assert metric(after, "nearcast_model_version", model="tinyq") >= 1
    assert metric(after, "nearcast_queue_series", model="tiny") == 0


def _undescribed(components: dict[str, dict[str, object]], name: str) -> list[str]:
    missing = []
    for field, prop in components[name]["properties"].items():  # type: ignore[union-attr]
        if "description" not in prop:
            missing.append(f"{name}.{field}: description")
        if "$ref" not in str(prop) and "examples" not in prop:
            missing.append(f"{name}.{field}: examples")
    return missing


def test_openapi_describes_every_field_and_docs_render(server: LiveServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    comps = doc["components"]["schemas"]
    names = ("ForecastRequest", "SeriesIn", "ForecastResponse", "SeriesOut", "PipelineReport",
             "Provenance", "ModelInfo", "ReloadResult", "ErrorBody", "ErrorDetail")
    assert [m for name in names for m in _undescribed(comps, name)] == []
    series = comps["SeriesIn"]["properties"]
    assert series["values"]["maxItems"] == 10_000 and series["values"]["minItems"] == 1
    assert series["timestamps"]["maxItems"] == 10_000
    assert comps["ForecastRequest"]["properties"]["series"]["maxItems"] == 1024
    horizon = comps["ForecastRequest"]["properties"]["horizon"]["anyOf"][0]
    assert (horizon["minimum"], horizon["maximum"]) == (1, 10_000)
    assert comps["ForecastRequest"]["additionalProperties"] is False
    assert comps["SeriesIn"]["additionalProperties"] is False
    post_op = doc["paths"]["/v1/forecast"]["post"]
    ref = post_op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ForecastRequest"
    assert {"200", "401", "413", "422", "503"} <= set(post_op["responses"])
    assert "security" not in post_op  # this server has no keys: no auth to declare
    assert {"413", "415", "422", "503"} <= set(post_op["responses"])
    # Exactly one time axis; neither takes null; times in the supported range.
    series_in = comps["SeriesIn"]
    assert series_in["oneOf"] == [{"required": ["start"]}, {"required": ["timestamps"]}]
    assert series_in["required"] == ["id", "values"]
    assert series["start"]["type"] == "string" and "anyOf" not in series["start"]
    assert series["start"]["pattern"] == TIMESTAMP_PATTERN
    assert series["timestamps"]["items"]["pattern"] == TIMESTAMP_PATTERN
    assert series["values"]["items"]["anyOf"][0] == {
        "type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    text = comps["ForecastRequest"]["description"]
    assert "at most 8388608 bytes of JSON (413 beyond), 1024 series of at most 10000 values" in text
    assert "at most 10 times the model's input window" in text and TIME_RANGE in text
    assert "At most 8 forecast requests are received or prepared at once" in text
    assert "at most the first 20 problems" in comps["ErrorBody"]["description"]
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text
