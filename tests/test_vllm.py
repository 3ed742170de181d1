"""In-process vLLM on the real SmolLM2 (its CPU build on this machine, CUDA where there is one): runs
where vLLM is installed (the vLLM environment, ``.ci/vllm_env.sh``, in CI too); elsewhere it skips
saying how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from boxbench.backends.vllm import unavailable_reason

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_backend():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    from boxbench.backends import load_backend, parse_model_spec

    return load_backend(parse_model_spec({"backend": "vllm", "model": "smollm2-135m"}))


def test_vllm_black_and_grey_views_on_a_real_model(vllm_backend):
    from boxbench.core.backend import Access, AccessError, GenerationConfig

    b = vllm_backend
    assert b.settings["device"] in ("cpu", "cuda")
    black = b.view(Access.black)
    with pytest.raises(AccessError):
        black.score
    assert black.generate(["The movie was wonderful. Sentiment:"], GenerationConfig(max_new_tokens=4))[0].strip().startswith("positive")
    grey = b.view(Access.grey)
    s = grey.score(["Review: a wonderful, moving film\nThe sentiment of this review is"], [[" negative", " positive"]])
    assert s[0][1] > s[0][0]
    assert len(grey.next_token_logprobs(["Hello"], 5)[0]) == 5
    assert b.usage.model_calls >= 3


def test_a_script_without_a_main_guard_loads_vllm(tmp_path):
    """vLLM's engine would spawn a process that re-imports an unguarded script; boxbench keeps the
    engine in the process, so a user's plain script works."""
    if unavailable_reason():
        pytest.skip(unavailable_reason())
    script = tmp_path / "plain.py"
    script.write_text("from boxbench.backends import load_backend, parse_model_spec\n"
                      "from boxbench.core.backend import Access, GenerationConfig\n"
                      "b = load_backend(parse_model_spec({'backend': 'vllm', 'model': 'smollm2-135m'}))\n"
                      "print('ANSWER', b.view(Access.black).generate(['The capital of France is'], GenerationConfig(max_new_tokens=3))[0])\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ANSWER" in res.stdout and "Paris" in res.stdout


def test_check_names_what_is_missing_in_one_line(tmp_path):
    """In an environment without vLLM, ``boxbench check`` warns and ``run`` refuses, one line each."""
    if unavailable_reason() is None:
        pytest.skip("vllm is installed here")
    from helpers import run_cli, write_suite

    suite = write_suite(tmp_path / "v.yaml", "name: v\nmodels: [{backend: vllm, model: smollm2-135m}]\n"
                                              "datasets: [{name: sst2, limits: {test: 4}}]\nmethods: [zero_shot]\n")
    check = run_cli("check", str(suite))
    assert check.returncode == 0 and check.stderr.strip().splitlines() == [
        "boxbench: warning: model 'smollm2-135m': backend vllm unavailable: vllm is not installed in this environment "
        "(make its environment with `bash .ci/vllm_env.sh` and run .venv-vllm/bin/boxbench; README: vLLM) "
        "(cells would fail here; a cluster that has it may run them)"]
    run = run_cli("run", str(suite), "--out", str(tmp_path / "run"))
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "nothing was run" in run.stderr
    assert not (tmp_path / "run" / "results.jsonl").exists()
