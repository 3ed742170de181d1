"""`boxbench run --track mlflow`: a real MLflow tracking server on 127.0.0.1 and the local store,
fed by a real finished run (the smoke suite) and a cell run live; a resumed run logs nothing twice;
a tracker that is down costs one warning, never the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import SUITES, records_of, run_cli

pytest.importorskip("mlflow", reason="mlflow is not installed (pip install mlflow; the test extra installs it)")


def _free_port() -> int:
    from boxbench.backends.llama_server import free_port

    return free_port()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (SQLite backend, artifacts served) on a free 127.0.0.1 port."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
                             "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-1500:]}")
            time.sleep(0.5)
    else:
        pytest.fail("mlflow server did not come up in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _copy_run(smoke_run, dest):
    run, proc = smoke_run
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(run, dest)
    return dest


def _children(uri: str, suite: str = "smoke"):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(f"boxbench/{suite}")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return client, parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_a_run_and_its_cells_reach_a_real_tracking_server_once(smoke_run, mlflow_server, tmp_path):
    run = _copy_run(smoke_run, tmp_path / "run")
    lines = (run / "results.jsonl").read_text().splitlines()
    (run / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # one cell to run live, three finished before
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet", "--report", "--track", f"mlflow:{mlflow_server}")
    assert proc.returncode == 0 and "1 ok, 0 error, 3 already done" in proc.stdout, proc.stdout + proc.stderr
    assert "warning" not in proc.stderr and "INFO" not in proc.stderr
    client, parents, children = _children(mlflow_server)
    assert len(parents) == 1 and len(children) == 4
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    recs = {r["cell_key"]: r for r in records_of(run)}
    for c in children:
        r = recs[c.data.tags["boxbench.cell_key"]]
        assert c.data.metrics["accuracy"] == pytest.approx(r["accuracy"]) and c.data.params["method"] == r["method"]
        assert c.data.metrics["eval_wall_s"] == pytest.approx(r["eval_wall_s"]) and c.data.tags["boxbench.access"] == r["access"]
        assert c.data.params["seed"] == "0" and json.loads(c.data.params["settings.max_new_tokens"]) == 4
        assert [a.path for a in client.list_artifacts(c.info.run_id)] == ["predictions.jsonl"]
    assert sorted(a.path for a in client.list_artifacts(parents[0].info.run_id)) == ["report.html", "report.md"]
    again = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet", "--track", f"mlflow:{mlflow_server}")
    assert again.returncode == 0 and "4 already done" in again.stdout
    _, parents, children = _children(mlflow_server)
    assert len(parents) == 1 and len(children) == 4  # resumed: the same parent, no cell twice


def test_the_local_store_and_a_tracker_that_is_down(smoke_run, tmp_path):
    run = _copy_run(smoke_run, tmp_path / "run")
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet", "--track", "mlflow", cwd=tmp_path)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    _, parents, children = _children(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert len(parents) == 1 and len(children) == 4
    down = _copy_run(smoke_run, tmp_path / "down")
    t0 = time.time()
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(down), "--quiet", "--track", f"mlflow:http://127.0.0.1:{_free_port()}")
    took = time.time() - t0
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert proc.returncode == 0 and "4 already done" in proc.stdout
    assert len(warnings) == 1 and warnings[0].startswith("boxbench: warning: mlflow tracking stopped (")
    assert warnings[0].endswith("results.jsonl has every cell")
    print(f"\nrun with the tracker down: {took:.1f} s")
