"""Render BENCHMARKS.md from the benchmarks' JSON files (see :mod:`benchmarks.run`).

Accuracy (``accuracy.json`` + ``peers.json``) and training (``training.json``) have their own
tables; any other result file is rendered generically (scalars as a list, every list of dicts as
a table), so the report does not depend on those scripts' exact schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, format_value, machine_info, markdown_table, read_json

__all__ = ["render"]

LABELS = {"naive": "naive", "seasonal_naive": "seasonal naive", "naive2": "Naive2",
          "mstl_24_168": "statsforecast MSTL (24, 168)", "mstl_24": "statsforecast MSTL (24)",
          "autoets": "statsforecast AutoETS (24)"}
# Published M4 Hourly figures on the competition's TEST set (the 48 points after the training
# data, not bundled): Makridakis, Spiliotis & Assimakopoulos (2020), "The M4 Competition:
# 100,000 time series and 61 forecasting methods", IJF 36(1); ES-RNN = Smyl, the M4 winner.
PUBLISHED = [
    {"method": "naive", "smape": 43.003, "mase": 11.608},
    {"method": "seasonal naive", "smape": 13.912, "mase": 1.193},
    {"method": "Naive2", "smape": 18.383, "mase": 2.395},
    {"method": "ES-RNN (M4 winner)", "smape": 9.328, "mase": 0.893},
]
TITLES = {"pipeline": "Pipeline: windowing", "serve": "Serving", "scale": "Scale: batch forecasts"}
SKIP_KEYS = {"benchmark", "quick"}


# ----------------------------------------------------------------------------- header
def _machine(run: Mapping[str, Any]) -> list[str]:
    m = run.get("machine") or machine_info()
    pkgs = m.get("packages", {})
    tf = pkgs.get("tensorflow-cpu") or pkgs.get("tensorflow", "?")
    rows = [("CPU", m.get("cpu")), ("cores", f"{m.get('cores')} ({m.get('cores_usable')} usable)"),
            ("RAM", f"{m.get('ram_gib')} GiB"), ("OS", m.get("os")), ("Python", m.get("python")),
            ("TensorFlow / Keras / MLflow",
             f"{tf} / {pkgs.get('keras', '?')} / {pkgs.get('mlflow', '?')}"),
            ("numpy / pandas / statsforecast", f"{pkgs.get('numpy', '?')} / "
             f"{pkgs.get('pandas', '?')} / {pkgs.get('statsforecast', 'not installed')}"),
            ("load average at start (1, 5, 15 min)", format_value(m.get("load_average"))),
            ("git commit", m.get("git"))]
    return ["## Machine", "", markdown_table([{"": k, "value": v} for k, v in rows]), ""]


def _commands(run: Mapping[str, Any]) -> list[str]:
    rows = [{"benchmark": r["name"], "command": f"`{r['command']}`" if r.get("command") else "",
             "status": r.get("status"), "wall time (s)": r.get("seconds"),
             "run on": r.get("finished", ""), "commit": r.get("git", ""),
             "results": f"`{r.get('json')}`"} for r in run.get("benches", [])]
    lines = ["## Commands", ""]
    if rows:
        lines += [markdown_table(rows), ""]
    for r in run.get("benches", []):
        if r.get("status") != "ok" and r.get("error"):
            lines += [f"`{r['name']}` {r['status']}:", "", "```", r["error"], "```", ""]
    return lines


# ----------------------------------------------------------------------------- accuracy
def _scores(scores: Mapping[str, float]) -> dict[str, float]:
    return {k: scores[k] for k in ("smape", "mase", "owa")}


def _accuracy_rows(acc: Mapping[str, Any] | None, peers: Mapping[str, Any] | None
                   ) -> list[dict[str, Any]]:
    rows = []
    for m in (peers or {}).get("methods", []):
        rows.append({"method": LABELS.get(m["method"], m["method"]), **_scores(m),
                     "training (s)": None, "forecast (s)": m["fit_forecast_seconds"],
                     "series": peers["data"]["series"] if peers else None})
    if peers is None and acc:  # the baselines as the accuracy benchmark scored them
        for key in ("naive", "seasonal_naive", "naive2"):
            rows.append({"method": LABELS[key], **_scores(acc["runs"][0]["scores"][key]),
                         "series": acc["runs"][0]["series"]})
    for run in (acc or {}).get("runs", []):
        cfg, members = run["model"], run.get("members", 1)
        kind = f"ensemble of {members}" if members > 1 else f"{cfg['cell'].upper()}"
        name = f"nearcast {kind} {cfg['units']}x{cfg['layers']} ({run['config']})"
        intervals = run.get("intervals") or run.get("interval_coverage") or {}
        rows.append({"method": name, **_scores(run["scores"]["model"]),
                     "training (s)": run["train_seconds"], "forecast (s)": run["forecast_seconds"],
                     "series": run["series"], "80% coverage": intervals.get("coverage_80"),
                     "80% MSIS": intervals.get("msis_80")})
    return rows


def _baseline_check(acc: Mapping[str, Any] | None, peers: Mapping[str, Any] | None) -> str:
    if not acc or not peers or acc["runs"][0]["series"] != peers["data"]["series"]:
        return ""
    ours = {m["method"]: m for m in peers["methods"]}
    gap = max(abs(run["scores"][k][metric] - ours[k][metric])
              for run in acc["runs"] for k in ("naive", "seasonal_naive", "naive2")
              for metric in ("smape", "mase"))
    return (f"The baselines scored inside the accuracy benchmark's training jobs and by the peers "
            f"benchmark agree to {gap:.1e} (largest sMAPE/MASE difference).")


def _accuracy_ratios(rows: list[dict[str, Any]]) -> list[str]:
    ours = [r for r in rows if r["method"].startswith("nearcast")]
    peers = [r for r in rows if r["method"].startswith("statsforecast")]
    if not ours or not peers:
        return []
    if {r["series"] for r in ours} != {r["series"] for r in peers}:
        return ["- No ratios: nearcast and the peers were scored on different series counts."]
    best, peer = min(ours, key=lambda r: r["owa"]), min(peers, key=lambda r: r["owa"])
    lines = [f"- Best nearcast OWA / best statsforecast OWA: {best['owa']:.3f} / "
             f"{peer['owa']:.3f} = **{best['owa'] / peer['owa']:.2f}** "
             f"({best['method']} vs {peer['method']})."]
    if best.get("training (s)") and peer.get("forecast (s)"):
        ours_s = best["training (s)"] + best["forecast (s)"]
        lines.append(f"- Time to forecast every series from scratch: {best['method']} "
                     f"{best['training (s)']:.0f} s training + {best['forecast (s)']:.2f} s "
                     f"forecast, {peer['method']} {peer['forecast (s)']:.1f} s fit + forecast "
                     f"(ratio **{ours_s / peer['forecast (s)']:.1f}**); afterwards nearcast "
                     f"forecasts all series again in {best['forecast (s)'] * 1000:.0f} ms "
                     "without refitting.")
    return lines


def _accuracy(results: Path) -> list[str]:
    acc, peers = read_json(results / "accuracy.json"), read_json(results / "peers.json")
    if acc is None and peers is None:
        return []
    rows = _accuracy_rows(acc, peers)
    cols = ["method", "smape", "mase", "owa", "training (s)", "forecast (s)", "series",
            "80% coverage", "80% MSIS"]
    heads = ["method", "sMAPE", "MASE", "OWA", "training (s)", "forecast (s)", "series",
             "80% interval coverage", "80% interval MSIS"]
    lines = [
        "## Accuracy: M4 Hourly, last 48 points of each series held out", "",
        "Every method forecasts the last 48 points of each bundled M4 Hourly training series "
        "from the points before them and is scored by `models.evaluation.score_methods`, the "
        "code that scores nearcast's models: sMAPE (%), MASE (seasonal lag-24 scale), OWA "
        "relative to Naive2 (M4: seasonality test at lag 24 with 90% confidence, classical "
        "multiplicative decomposition). nearcast's rows are the default configs trained through "
        "`nearcast train`'s code path (`benchmarks/accuracy_bench.py`); training is the fit "
        "loop's wall time, forecast the time to forecast every series once. Statistical "
        "methods have no separate training: their column holds fit + forecast of every series "
        f"(statsforecast with `n_jobs={(peers or {}).get('n_jobs', '?')}`). For a model with "
        "quantiles, the 80% interval (q0.1 to q0.9) is scored by its coverage of the held-out "
        "points and by MSIS, M4's interval metric (`models.mase.msis`: width plus 2/alpha times "
        "each miss's distance, alpha = 0.2, scaled per series by the in-sample seasonal-naive "
        "MAE like MASE; lower is better).", "",
        markdown_table(rows, cols, heads), ""]
    check = _baseline_check(acc, peers)
    lines += [check, ""] if check else []
    lines += _accuracy_ratios(rows) + [""]
    lines += [
        "Published M4 Hourly figures, for orientation: they are scored on the competition's test "
        "set (the 48 points after these training series, not bundled), so they can only be "
        "approached, not reproduced, on this validation split:", "",
        markdown_table(PUBLISHED, ["method", "smape", "mase"], ["method", "sMAPE", "MASE"]), ""]
    return lines


# ----------------------------------------------------------------------------- training
def _training(results: Path) -> list[str]:
    data = read_json(results / "training.json")
    if data is None:
        return []
    cols = ["side", "series", "epochs", "steps_per_epoch", "batch_size", "prepare_seconds",
            "epoch_median_seconds", "samples_per_s", "samples_per_cpu_s", "val_loss",
            "peak_added_mib", "peak_rss_mib"]
    heads = ["side", "series", "epochs", "steps/epoch", "batch", "prepare (s)", "s/epoch",
             "samples/s", "samples/CPU-s", "val loss (last epoch)", "peak added (MiB)",
             "peak RSS (MiB)"]
    ratios = [f"- {k.replace('_', ' ')}: **{format_value(v)}**"
              for k, v in data.get("ratios", {}).items()]
    return ["## Training: nearcast's pipeline vs a tutorial-style `model.fit`", "",
            f"Same network (`{data.get('config')}` model, built by `build_model`), optimizer, "
            "loss, batch and number of steps on both sides; `nearcast` = `models.training.fit` "
            "on windows gathered on the fly, `tutorial` = every window materialised as numpy "
            "arrays, then Keras `model.fit` (see `benchmarks/training_bench.py`). Each side ran "
            "in a fresh process; s/epoch is the median after the first (tracing) epoch and "
            "includes the validation pass; samples/CPU-s divides by the process' CPU time per "
            "epoch instead (all threads; steadier than wall time on a shared machine); peak "
            "added = resident high-water mark above the process after loading the data.", "",
            markdown_table(data.get("runs", []), cols, heads), "", *ratios, ""]


# ----------------------------------------------------------------------------- load
def _load(results: Path) -> list[str]:
    data = read_json(results / "load.json")
    if data is None:
        return []
    cols = ["load", "requests", "failed", "p50_ms", "p99_ms", "rps", "versions_seen",
            "swaps_observed", "followed", "swap_lag_max_s", "outage", "readyz"]
    heads = ["load", "requests", "failed", "p50 (ms)", "p99 (ms)", "req/s",
             "answers per version", "swaps observed", "alias moves followed",
             "slowest swap (s)", "tracking server down (s into the load)",
             "/readyz: registry unreachable (s into the load)"]
    rows = [r | {"followed": f"{r['moves_followed']} of {r['alias_moves']}" if r["alias_moves"]
                 else None,
                 "outage": f"{r['stopped_at_s']:.1f} to {r['answering_at_s']:.1f}"
                 if "down_s" in r else None,
                 "readyz": "{:.1f} to {:.1f}".format(*r["readyz_registry_unreachable_s"])
                 if r["readyz_registry_unreachable_s"] else None,
                 "versions_seen": ", ".join(f"v{v}: {n}" for v, n in r["versions_seen"].items())}
            for r in data["loads"]]
    failed = [f"- {r['load']}, sent {r['failed_between_s'][0]} to {r['failed_between_s'][1]} s "
              "into the load: " + "; ".join(f"{n} x {kind}" for kind, n in r["failures"].items())
              for r in data["loads"] if r["failed"]]
    return ["## Load: 64 concurrent clients, moving alias, tracking server restart", "",
            f"`nearcast serve` (1 worker, `NEARCAST_POLL_SECONDS={data['poll_seconds']:g}`) on "
            f"127.0.0.1 serves the quickstart model ({data['model']['config']}) from a real "
            f"{data['tracking']}; each load runs {data['seconds_per_load']:g} s at concurrency "
            f"{data['concurrency']} of single-series requests ({data['client']}; see "
            "`benchmarks/load_bench.py`). Failed = any answer but 200, or a connection error "
            f"(target {data['targets']['failed']}). The alias moves between v1 and v2 every "
            f"{data['swap_every_seconds']:g} s; a move is followed when the new version answers "
            "before the next move; a swap's lag runs from the latest move to its version to the "
            "first answer by it. The tracking server is stopped a quarter into the third load, "
            f"kept down {data['outage_seconds']:g} s, restarted on the same port, and the alias "
            "moves once more after it answers.", "",
            markdown_table(rows, cols, heads), "",
            *(["Failed requests:", "", *failed] if failed else ["No request failed."]), ""]


# ----------------------------------------------------------------------------- epf
# MAE on the EPF benchmark's held-out TEST period (the 728 days after the bundled files, not
# bundled): published forecasts of Lago, Marcjasz, De Schutter & Weron (2021), Applied Energy 293,
# 116983, re-estimated daily, ensembles of 4 models.
EPF_PUBLISHED = [
    {"market": "NP", "naive": 3.165, "lear": 1.738, "dnn": 1.683},
    {"market": "PJM", "naive": 4.846, "lear": 3.013, "dnn": 2.862},
    {"market": "DE", "naive": 8.040, "lear": 3.609, "dnn": 3.413},
]


def _epf(results: Path) -> list[str]:
    data = read_json(results / "epf.json")
    if data is None:
        return []
    markets = data["markets"]
    protocol = data["protocol"]
    cols = ["method", "library", "mae", "rmae", "train_seconds", "forecast_seconds", "note"]
    heads = ["method", "library", "MAE", "rMAE", "train (s)", "forecast (s)", "note"]
    methods = [m["method"] for m in markets[0]["methods"]] if markets else []
    summary = []
    for method in methods:
        row: dict[str, Any] = {"method": method}
        for market in markets:
            score: dict[str, Any] = next(
                (m for m in market["methods"] if m["method"] == method), {})
            row[market["market"]] = (f"{format_value(score['mae'])} ({format_value(score['rmae'])})"
                                     if score.get("mae") is not None else "not run")
        summary.append(row)
    lines = [
        f"## Day-ahead electricity prices (EPF): last {protocol['validation_days']} days of each "
        "market", "",
        "Three hourly day-ahead markets of the open EPF benchmark (Lago et al. 2021; "
        "`benchmarks/data/epf/`), each with two day-ahead forecasts as future-known covariates. "
        f"The last {protocol['validation_days']} days of each file are the validation days; "
        "everything before is the training part. Every validation day D is forecast (24 hours) "
        "from the prices up to D-1 23:00 and both covariates up to D 23:00; MAE over all "
        "validation hours, rMAE = MAE / MAE of the benchmark's naive forecast (Monday, Saturday, "
        "Sunday: the same hour a week earlier; other days: a day earlier). LightGBM (L1 loss, "
        "lagged prices, previous-day statistics, hour, weekday and, with drivers, both covariates "
        "at t, t-24 h, t-168 h and their mean over day D) is fitted once on the training part; "
        "its leaves and trees are chosen on a time-based split of the training part only; its "
        "train seconds include that tuning (`benchmarks/epf_bench.py`, "
        "`benchmarks/epf_protocol.py`).", "",
        "MAE (rMAE) per market:", "", markdown_table(summary), ""]
    for market in markets:
        train, val = market["train"], market["validation"]
        lines += [f"**{market['market']}** ({market['label']}): training {train['from'][:10]} to "
                  f"{train['to'][:10]} ({train['days']} days), validation {val['from'][:10]} to "
                  f"{val['to'][:10]} ({val['days']} days)", "",
                  markdown_table(market["methods"], cols, heads), ""]
    lines += ["Published MAE on the benchmark's test period (the two years after these files, "
              "not bundled), for orientation only: a different period than the validation days "
              "above, with models re-estimated every day:", "",
              markdown_table(EPF_PUBLISHED, ["market", "naive", "lear", "dnn"],
                             ["market", "naive", "LEAR ensemble", "DNN ensemble"]), ""]
    return lines


# ----------------------------------------------------------------------------- generic
def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _generic(data: Mapping[str, Any], depth: int = 0) -> list[str]:
    """Scalars as a bullet list, dicts of scalars as one bullet, lists of dicts as tables."""
    lines, tables = [], []
    for key, value in data.items():
        if key in SKIP_KEYS:
            continue
        if _is_scalar(value) or (isinstance(value, list) and all(map(_is_scalar, value))):
            lines.append(f"- {key}: {format_value(value)}")
        elif isinstance(value, dict) and all(map(_is_scalar, value.values())):
            lines.append(f"- {key}: {format_value(value)}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables += [f"**{key}**", "", markdown_table(value), ""]
        elif isinstance(value, dict) and depth < 2:
            tables += [f"**{key}**", "", *_generic(value, depth + 1), ""]
        else:
            lines.append(f"- {key}: {format_value(value)}")
    return [*lines, "", *tables]


def _section(title: str, path: Path) -> list[str]:
    data = read_json(path)
    if data is None:
        return []
    return [f"## {title}", "", f"From `{path.relative_to(ROOT)}`.", "", *_generic(data)]


def _safe(make: Callable[[Path], list[str]], name: str, results: Path) -> list[str]:
    """A dedicated section, or the generic rendering if its JSON has an unexpected shape."""
    try:
        return make(results)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        print(f"report: {name} rendered generically ({type(exc).__name__}: {exc})")
        return _section(name, results / f"{name}.json")


def render(run: Mapping[str, Any], results: Path) -> str:
    """The whole report as markdown."""
    quick = bool(run.get("quick"))
    took = f"; the suite took {run['wall_seconds'] / 60:.1f} min" if "wall_seconds" in run else ""
    lines = [
        "# nearcast benchmarks" + (" (quick mode: smoke run, not the figures)" if quick else ""),
        "",
        f"Generated by `{run.get('command', 'python -m benchmarks.run')}` (`make bench"
        f"{'-quick' if quick else ''}`); latest run {run.get('finished', '?')}{took} (each "
        f"benchmark's date and commit: Commands; Machine: the latest run). Raw results: "
        f"`{results.relative_to(ROOT)}/*.json`; re-render without running: "
        f"`python -m benchmarks.run{' --quick' if quick else ''} --render-only`.",
        "", *_machine(run), *_commands(run),
        *_safe(_accuracy, "accuracy", results), *_safe(_training, "training", results)]
    known = {"accuracy", "peers", "training", "run", "load", "epf"}
    for path in sorted(results.glob("*.json"), key=lambda p: (p.stem not in TITLES, p.stem)):
        if path.stem not in known:
            lines += _section(TITLES.get(path.stem, path.stem.capitalize()), path)
    lines += _safe(_load, "load", results)
    lines += _safe(_epf, "epf", results)
    return "\n".join(lines).rstrip() + "\n"
