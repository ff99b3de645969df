"""Browser check: headless Chromium renders the Prefect UI's deployments page and the MLflow UI's registered-model
page, served by `lmforge up`; the pages must show the deployment name and the model alias. Screenshots are kept
(in $LMFORGE_SCREENSHOTS when set, else in the test's tmp dir)."""

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from browser import CHROMIUM, QUIET

from infra.servers import ServersConfig, down, free_port, up


def render(url: str, screenshot: Path, profile: Path, budget_ms: int = 20000) -> str:
    """The DOM after JavaScript ran, and a PNG of the page (flags as for a closed network: no background traffic)."""
    flags = [CHROMIUM, *QUIET, f"--user-data-dir={profile}", "--window-size=1400,900",
             f"--virtual-time-budget={budget_ms}"]
    subprocess.run([*flags, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=180)
    return subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, timeout=180, text=True).stdout


def render_showing(text: str, url: str, screenshot: Path, profile: Path, attempts: int = 3) -> str:
    """Render until `text` is on the page: a cold single-page app may still be fetching its bundles and data when
    the first render's budget ends (seen on a fresh CI machine). Returns the last DOM."""
    for attempt in range(attempts):
        dom = render(url, screenshot, profile, budget_ms=20000 * (attempt + 1))
        if text in dom:
            break
    return dom


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (make setup installs it)")
def test_uis_show_deployment_and_model_alias(lmforge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import build_deployments

    monkeypatch.setenv("PREFECT_HOME", str(lmforge_home / "prefect"))
    shots = Path(os.environ.get("LMFORGE_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    state = up(ServersConfig(prefect_port=free_port(), mlflow_port=free_port()))
    try:
        with temporary_settings({PREFECT_API_URL: f"{state.prefect_url}/api"}):
            pipeline_deployment = next(d for d in build_deployments() if d.name == "pipeline")
            pipeline_deployment.apply()

        mlflow = MlflowClient(tracking_uri=state.mlflow_url, registry_uri=state.mlflow_url)
        experiment = mlflow.create_experiment("ui-check")
        run = mlflow.create_run(experiment)
        card = tmp_path / "MODEL_CARD.md"
        card.write_text("# lmforge ui check\n")
        mlflow.log_artifact(run.info.run_id, str(card), artifact_path="model")
        try:
            mlflow.create_registered_model("lmforge")
        except MlflowException as error:  # the client retries a slow request; the first try may have landed
            assert error.error_code == "RESOURCE_ALREADY_EXISTS", error
        version = mlflow.create_model_version("lmforge", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        mlflow.set_registered_model_alias("lmforge", "champion", version.version)

        prefect_dom = render_showing(
            "pipeline", f"{state.prefect_url}/deployments", shots / "prefect-deployments.png", tmp_path / "p1"
        )
        mlflow_dom = render_showing(
            "champion", f"{state.mlflow_url}/#/models/lmforge", shots / "mlflow-model.png", tmp_path / "p2"
        )
    finally:
        down()
    assert "pipeline" in prefect_dom
    assert "champion" in mlflow_dom
    assert (shots / "prefect-deployments.png").stat().st_size > 10_000
    assert (shots / "mlflow-model.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (make setup installs it)")
def test_uis_show_the_pipeline_run_its_charts_graph_and_model_card(demo_run, tmp_path: Path):
    """The shared tiny pipeline run (tests/demo_run.py) as a newcomer opens it after `lmforge up`: the MLflow run in
    the model-training view with its figures and metric charts, the Prefect flow-run graph, the model version with
    its card. Screenshots: docs/screenshots/ is refreshed from these (LMFORGE_SCREENSHOTS=docs/screenshots)."""
    from mlflow.tracking import MlflowClient

    shots = Path(os.environ.get("LMFORGE_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    prefect_port, mlflow_port = free_port(), free_port()
    up_done = demo_run.sh(f".venv/bin/lmforge up --prefect-port {prefect_port} --mlflow-port {mlflow_port}")
    assert up_done.returncode == 0, up_done.stderr
    prefect, mlflow_url = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    try:
        mlflow = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        experiment = mlflow.get_experiment_by_name("lmforge")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the training view
        version = mlflow.get_model_version_by_alias("lmforge", "champion")
        run = mlflow.get_run(version.run_id)
        assert {a.path for a in mlflow.list_artifacts(run.info.run_id, "figures")} == {
            "figures/training_curve.png", "figures/data_funnel.png"}
        summary = httpx.post(f"{prefect}/api/artifacts/filter", timeout=30,
                             json={"artifacts": {"key": {"any_": ["pipeline-summary"]}}}).json()
        for name in ("training_curve.png", "data_funnel.png"):  # the Prefect summary links the figures
            assert f"get-artifact?path=figures/{name}&run_uuid={run.info.run_id}" in summary[0]["data"]
        training_view = "?workflowType=machine_learning"  # MLflow 3's "Model training" view, as our links open it
        runs = f"{mlflow_url}/#/experiments/{experiment.experiment_id}/runs"
        run_page = f"{runs}/{run.info.run_id}"
        pages = {
            "mlflow-runs.png": ("tiny_cpu", f"{runs}{training_view}"),
            "mlflow-run.png": ("train/loss", f"{run_page}{training_view}"),
            "mlflow-training-curve.png": ("training_curve.png",
                                          f"{run_page}/artifacts/figures/training_curve.png{training_view}"),
            "mlflow-data-funnel.png": ("data_funnel.png", f"{run_page}/artifacts/figures/data_funnel.png{training_view}"),
            "prefect-flow-run.png": (run.data.tags["prefect.flow_run_name"],
                                     f"{prefect}/runs/flow-run/{run.data.tags['prefect.flow_run_id']}"),
            "mlflow-model-version.png": ("Data provenance",
                                         f"{mlflow_url}/#/models/lmforge/versions/{version.version}{training_view}"),
        }
        doms = {name: render_showing(text, url, shots / name, tmp_path / name) for name, (text, url) in pages.items()}
    finally:
        demo_run.sh(".venv/bin/lmforge down")
    for name, (text, _) in pages.items():
        assert text in doms[name], name
        assert (shots / name).stat().st_size > 10_000, name
