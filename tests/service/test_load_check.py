"""A registered model loads where it is served: custom layers register on import, and no alias
moves to a version that a fresh process cannot load (the load check, :mod:`models.load_check`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf
from retrain_helpers import corrupt_keras_file

from conftest import TINY_MODEL, Champion
from nearcast.models import load_check, registry
from nearcast.models.architectures import build_model
from nearcast.models.architectures.registry import MODULES, registered_names
from nearcast.models.artifact import log_forecaster
from nearcast.models.ensemble import join_members
from nearcast.models.forecaster import Forecaster, ModelMeta
from nearcast.models.load_check import LoadCheckError, check_mode, probe_history, verifier

REPO = Path(__file__).resolve().parents[2]


def test_every_module_with_registered_classes_is_in_the_registry() -> None:
    defining = set()
    for path in (REPO / "models").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "register_keras_serializable":
                defining.add(".".join(("nearcast", *path.relative_to(REPO).with_suffix("").parts)))
    assert defining == {m.__name__ for m in MODULES}
    assert {"nearcast>TakeLast", "nearcast>Combine", "nearcast>WidenIntervals",
            "nearcast>AutoregressiveHead", "nearcast>SeasonalSkip"} <= set(registered_names())


def _ensemble() -> Forecaster:
    """Two untrained members (windows 72 and 48) joined by median: TakeLast, Combine."""
    configs = [TINY_MODEL, TINY_MODEL.model_copy(update={"input_size": 48, "cell": "gru"})]
    keras.utils.set_random_seed(3)
    members = [build_model(c, name=f"member_{i}") for i, c in enumerate(configs)]
    return Forecaster(join_members(members, configs, "median"), ModelMeta(config=TINY_MODEL))


_FRESH = """
import json, sys
import numpy as np
from nearcast.models.forecaster import Forecaster   # the only nearcast import before loading
args = json.loads(sys.argv[1])
history = np.asarray(args["history"], np.float32)
out = {k: Forecaster.load(p).forecast([history]).values.tolist() for k, p in args["saved"].items()}
import mlflow
model = mlflow.pyfunc.load_model(args["uri"])
out["pyfunc"] = model.unwrap_python_model().forecaster.forecast([history]).values.tolist()
print("RESULT " + json.dumps(out))
"""


def test_a_fresh_process_loads_saved_ensembles_and_single_models(
    champion: Champion, tmp_path: Path
) -> None:
    ensemble, single = _ensemble(), champion.job.forecaster
    saved = {"ensemble": str(ensemble.save(tmp_path / "ens")),
             "single": str(single.save(tmp_path / "one"))}
    settings = champion.settings
    client = settings.connect()
    with mlflow.start_run(experiment_id=settings.ensure_experiment(client)):
        uri = log_forecaster(ensemble).model_uri
    history = probe_history(72, 24)
    args = json.dumps({"saved": saved, "uri": uri, "history": history.tolist()})
    env = {"MLFLOW_TRACKING_URI": settings.resolved_tracking_uri(), "PATH": "/usr/bin:/bin",
           "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _FRESH, args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    got = json.loads(lines[-1].removeprefix("RESULT "))
    want_ens = ensemble.forecast([history]).values
    np.testing.assert_allclose(got["ensemble"], want_ens, rtol=1e-5)
    np.testing.assert_allclose(got["pyfunc"], want_ens, rtol=1e-5)
    np.testing.assert_allclose(got["single"], single.forecast([history]).values, rtol=1e-5)


@keras.saving.register_keras_serializable(package="nearcast_tests")
class OnlyHereShift(keras.layers.Layer):
    """A layer only this test process knows: a fresh process cannot load a model using it."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x + 1.0


def _with_test_only_layer(forecaster: Forecaster) -> Forecaster:
    size = forecaster.config.input_size
    inputs = {"history": keras.Input((size,), name="history"),
              "mask": keras.Input((size,), name="mask")}
    out = OnlyHereShift(name="shift")(forecaster.model(inputs)["forecast"])
    return Forecaster(keras.Model(inputs, {"forecast": out}), forecaster.meta)


def test_registration_of_an_unloadable_version_moves_no_alias(
    champion: Champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``nearcast train`` does at registration (:func:`models.job.train_and_register`)."""
    monkeypatch.setenv(load_check.ENV, "subprocess")
    settings, name = champion.settings, "tiny-unloadable"
    client = settings.connect()
    good = champion.job.forecaster
    ok = registry.register(client, name, champion.job.model_uri, champion.job.run_id)

    broken = _with_test_only_layer(good)
    with mlflow.start_run(experiment_id=settings.ensure_experiment(client)) as run:
        uri = log_forecaster(broken).model_uri  # it loads here, where the layer is registered
        with pytest.raises(LoadCheckError) as caught:
            registry.register(client, name, uri, run.info.run_id,
                              verify=verifier(settings, client, broken))
    message = str(caught.value)
    assert message.startswith(f"{name} v{ok.version + 1} failed its load check (subprocess): it "
                              "does not load: TypeError: Could not locate class 'OnlyHereShift'")
    assert message.endswith("; no alias moved")
    assert registry.version_for_alias(client, name, registry.CHALLENGER) == ok
    tags = client.get_model_version(name, str(ok.version + 1)).tags
    assert tags[load_check.TAG] == "failed" and "OnlyHereShift" in tags[load_check.TAG_REASON]
    assert load_check.TAG_FORECAST not in tags


def test_in_process_check_catches_a_corrupt_artifact_and_a_wrong_forecast(
    champion: Champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(load_check.ENV, "inprocess")
    settings, name = champion.settings, "tiny-corrupt"
    client = settings.connect()
    good = champion.job.forecaster
    with mlflow.start_run(experiment_id=settings.ensure_experiment(client)) as run:
        ref = registry.register(client, name, log_forecaster(good).model_uri, run.info.run_id)
    wrong = load_check.reference_forecast(good) + 0.01
    with pytest.raises(LoadCheckError, match=r"its forecast differs from the reference by up to "
                                             r"0\.01\d* \(tolerance 1e-05\); no alias moved"):
        load_check.verify_version(settings, client, ref, wrong)
    corrupt_keras_file(settings, ref)
    with pytest.raises(LoadCheckError, match=r"failed its load check \(inprocess\): it does not "
                                             r"load: "):
        load_check.verify_version(settings, client, ref)


def test_the_mode_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(load_check.ENV, "sometimes")
    with pytest.raises(ValueError, match=r"NEARCAST_LOAD_CHECK='sometimes': expected one of "
                                         r"subprocess, inprocess, off"):
        check_mode()
    monkeypatch.delenv(load_check.ENV)
    assert check_mode() == "subprocess"  # what users get
