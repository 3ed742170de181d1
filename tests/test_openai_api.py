"""The OpenAI-compatible backend against a REAL llama.cpp server on 127.0.0.1 (fixture ``llama_server``)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from helpers import records_of, run_cli, server_or_skip, write_suite
from boxbench.backends import load_backend, parse_model_spec
from boxbench.core.backend import Access, AccessError, GenerationConfig
from boxbench.backends.openai_api import BackendError
from boxbench.backends.llama_server import LlamaServer
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.errors import UserError

SECRET = "sk-boxbench-test-SECRET-7f3a9c"


def api(srv: LlamaServer, **options) -> object:
    return load_backend(parse_model_spec({"backend": "openai", "model": "smollm2-135m", "base_url": srv.base_url, **options}))



def test_capabilities_are_detected_and_scores_agree_with_transformers(llama_server, smol):
    b = api(llama_server)
    # llama-cpp-python 0.3.36 echoes prompt log-probs shifted by one position: the probe must catch
    # that and fall back to top-k; a server whose echo agrees would be used with "echo".
    assert b.score_method in ("echo", "top_k") and b.max_access == Access.grey
    assert b.describe()["score_method"] == b.score_method
    splits = load_splits("sst2", 10, 0, 24, 0)
    prompts = [splits.task.template.format(text=e.text) for e in splits.test]
    words = [list(splits.task.label_words)] * len(prompts)
    via_api = b.score(prompts, words)
    via_hf = smol.score(prompts, words)
    agree = sum((a[1] > a[0]) == (h[1] > h[0]) for a, h in zip(via_api, via_hf))
    # same GGUF weights (llama.cpp Q4_1 kernels vs dequantised fp32 in torch): rankings must agree
    assert agree >= 22, (agree, via_api[:3], via_hf[:3])
    assert max(abs(a - h) for ar, hr in zip(via_api, via_hf) for a, h in zip(ar, hr)) < 1.0


def test_generation_and_exact_usage_from_the_server(llama_server, smol):
    b = api(llama_server, chat=False, concurrency=3)
    prompts = ["The capital of France is", "One, two, three,", "Water boils at"]
    outs = b.generate(prompts, GenerationConfig(max_new_tokens=5))
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs) and any(o.strip() for o in outs)
    u = b.usage
    assert u.model_calls == 3
    # the server's usage counts the prompt tokens its own tokenizer made: same vocabulary as the HF one
    assert u.prompt_tokens == sum(len(smol.tokenizer(p).input_ids) for p in prompts)
    assert 3 <= u.completion_tokens <= 15
    sampled = b.generate(["Write a word:"] * 4, GenerationConfig(max_new_tokens=6, temperature=1.0, seed=1))
    assert len(set(sampled)) > 1, "one seed per request: equal prompts must not give equal samples"
    chat = api(llama_server, chat=True)
    assert chat.generate(["Say hello."], GenerationConfig(max_new_tokens=6))[0].strip()


def test_black_views_refuse_logprobs_on_every_backend(llama_server, smol):
    for backend in (smol, api(llama_server)):
        view = backend.view(Access.black)
        for call in ("score", "next_token_logprobs"):
            with pytest.raises(AccessError):
                getattr(view, call)
        assert view.generate(["Hi"], GenerationConfig(max_new_tokens=2)) is not None
    no_logprobs = api(llama_server, score="none")  # what an API without logprobs looks like
    assert no_logprobs.max_access == Access.black
    with pytest.raises(AccessError):
        no_logprobs.view(Access.grey)


def test_unreachable_server_is_one_clear_line():
    with pytest.raises(BackendError) as e:
        load_backend(parse_model_spec({"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                                       "max_retries": 0, "timeout": 2}))
    assert "unreachable" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="score"):
        parse_model_spec({"backend": "openai", "model": "m", "score": "sometimes"})
    with pytest.raises(UserError, match="concurrency"):
        parse_model_spec({"backend": "openai", "model": "m", "concurrency": "many"})


SUITE = """
name: api-e2e
models:
  - {{backend: openai, model: smollm2-135m, base_url: "{url}", label: smol-api, max_retries: 1, timeout: 20}}
datasets: [sst2]            # AG News's four labels through the server: test_conformance
methods:
  - name: zero_shot
    access: grey
  - name: kate
    params: {{k: 2, pool_size: 40}}
  - name: ape
    params: {{num_subsamples: 1, prompts_per_subsample: 2, eval_size: 4, rounds: 1, keep: 1, resamples_per_candidate: 1}}
  - name: usp                # grey: pseudo-labels from the server's logprobs
    params: {{pool_size: 8, k: 2}}
seeds: [0]
limits: {{train: 60, dev: 8, test: 6}}
settings: {{max_new_tokens: 8}}
"""


def test_methods_end_to_end_through_the_server_and_no_key_in_the_run(llama_server, tmp_path):
    run = tmp_path / "run"
    suite = write_suite(tmp_path / "s.yaml", SUITE.format(url=llama_server.base_url))
    proc = run_cli("run", str(suite), "--out", str(run), "--quiet", "--report", env={"OPENAI_API_KEY": SECRET})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records_of(run)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    for r in recs:
        assert r["model_calls"] >= 6 and r["prompt_tokens"] > 0 and r["backend"]["backend"] == "openai"
        assert r["protocol"] == ("logprob" if r["access"] == "grey" else "generate")
    ape = [r for r in recs if r["method"] == "ape"]
    assert all(r["tune_usage"]["model_calls"] > 0 and r["candidates_scored"] >= 1 for r in ape)
    assert all(r["index_build_s"] > 0 and r["index_size"] == 40 for r in recs if r["method"] == "kate")
    usp = [r for r in recs if r["method"] == "usp"]
    assert all(r["backend"]["score_method"] in ("echo", "top_k") and sum(r["pseudo_label_counts"]) == 8 for r in usp)
    for path in run.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="ignore"), f"API key written to {path}"


SIDE_BY_SIDE = """name: side-by-side
models:
  - {{backend: hf, model: smollm2-135m, label: smol@hf}}
  - {{backend: openai, model: smollm2-135m, base_url: "{url}", chat: false, label: smol@llama.cpp}}
datasets: [sst2]
methods:
  - name: zero_shot
  - name: zero_shot
    access: grey
seeds: [0]
limits: {{train: 40, dev: 8, test: 12}}
settings: {{max_new_tokens: 4}}
"""


def test_the_report_sets_backends_side_by_side_row_by_row(llama_server, tmp_path):
    from boxbench.core.results import ResultStore, read_predictions
    from boxbench.reports.backends import agreement, backends_table, groups

    run = tmp_path / "run"
    suite = write_suite(tmp_path / "s.yaml", SIDE_BY_SIDE.format(url=llama_server.base_url))
    proc = run_cli("run", str(suite), "--out", str(run), "--quiet", "--report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = ResultStore(run).read()
    found = groups(recs)
    # one group per access, each led by the hf cell (the reference), the server's cell beside it
    assert sorted(g[0].access for g in found) == ["black", "grey"]
    assert all([r.model for r in g] == ["smol@hf", "smol@llama.cpp"] for g in found)
    grey = next(g for g in found if g[0].access == "grey")
    ref, other = (read_predictions(run, r.cell_id) for r in grey)
    a = agreement(ref, other)
    differ = sum(x["pred"] != y["pred"] for x, y in zip(ref, other))
    assert a["differ"] == differ and a["same"] == 1 - differ / 12 and 0 < a["max_score_delta"] < 1.0
    black = next(g for g in found if g[0].access == "black")
    assert "same_answer" in agreement(*(read_predictions(run, r.cell_id) for r in black))
    table = backends_table(recs, lambda cell_id: read_predictions(run, cell_id))
    assert [row[5] for row in table.rows].count("reference") == 2
    assert "### Backends side by side" in (run / "report.md").read_text()


def test_server_killed_mid_cell_errors_that_cell_the_next_fail_fast_and_rerun_completes(tmp_path):
    from boxbench.backends.llama_server import free_port

    server_or_skip()
    port, log = free_port(), tmp_path / "server.log"
    suite = write_suite(tmp_path / "s.yaml", f"""
name: kill
models:
  - {{backend: openai, model: smollm2-135m, base_url: "http://127.0.0.1:{port}/v1", label: api, max_retries: 1, timeout: 10}}
  - smollm2-135m
datasets: [sst2]
methods: [{{name: zero_shot}}, {{name: few_shot, params: {{k: 1}}}}, {{name: zero_shot, access: grey}}]
seeds: [0]
limits: {{train: 10, dev: 0, test: 24}}
settings: {{max_new_tokens: 4}}
""")
    run = tmp_path / "run"
    with LlamaServer("smollm2-135m", port, log=log) as srv:
        proc = subprocess.Popen([sys.executable, "-m", "boxbench.benchmarks.cli", "run", str(suite), "--out", str(run), "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and log.read_text(errors="ignore").count("/v1/completions") < 6:
            time.sleep(0.2)
        assert log.read_text(errors="ignore").count("/v1/completions") >= 6, "the cell never reached the server"
        srv.stop()  # mid-cell: the evaluation is under way
        out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out
    recs = {(r["model"], r["label"]): r for r in records_of(run)}
    first = recs[("api", "zero_shot")]
    assert first["status"] == "error" and "unreachable" in first["error"] and "\n" not in first["error"]
    # the API cells after it fail fast: one connection refused each, no cell process, no retries
    for label in ("few_shot", "zero_shot@grey"):
        r = recs[("api", label)]
        assert r["status"] == "error" and r["error"].startswith(f"the server at http://127.0.0.1:{port}/v1 is unreachable (")
        assert "checked before the cell started" in r["error"] and "cell_process" not in r
    assert all(r["status"] == "ok" for (m, _), r in recs.items() if m == "smollm2-135m")  # the suite went on
    with LlamaServer("smollm2-135m", port):
        again = run_cli("run", str(suite), "--out", str(run), "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    final = records_of(run)
    assert len(final) == 6 and all(r["status"] == "ok" for r in final)


def test_a_label_missing_from_the_top_k_is_asked_again_with_every_token_listed(llama_server, smol):
    """AG News's prompt ends "This article is about": its top 100 next tokens rarely hold the four label
    words. llama.cpp's server lists the whole vocabulary when asked, so such a prompt is asked again and
    its labels get the model's own log-probs (the second request counted), not a floor that ties them."""
    from boxbench.backends.openai_api import WIDE_TOP_K

    b = api(llama_server)
    assert b.score_method == "top_k" and b.wide_top_k == WIDE_TOP_K and b.describe()["wide_top_k"] == WIDE_TOP_K
    splits = load_splits("agnews", 10, 0, 8, 0)
    prompts = [splits.task.template.format(text=e.text) for e in splits.test]
    words = [list(splits.task.label_words)] * len(prompts)
    calls, requests = b.usage.model_calls, b.billed.model_calls
    via_api, via_hf = b.score(prompts, words), smol.score(prompts, words)
    assert b.labels_missing == 0 and 1 <= b.prompts_widened <= len(prompts)
    # one call a prompt, as on every backend; the server billed the second requests too
    assert b.usage.model_calls - calls == len(prompts) and b.billed.model_calls - requests == len(prompts) + b.prompts_widened
    # the same weights (llama.cpp's Q4_1 kernels vs fp32 torch): the same label on all rows but a near-tie
    agree = sum(max(range(4), key=a.__getitem__) == max(range(4), key=h.__getitem__) for a, h in zip(via_api, via_hf))
    assert agree >= len(prompts) - 1, (agree, via_api[:2], via_hf[:2])
    assert max(abs(a - h) for ar, hr in zip(via_api, via_hf) for a, h in zip(ar, hr)) < 1.0
    # a label the wide list cannot save (a server that lists no more) keeps the floor, counted
    b.wide_top_k = 0
    b.score(prompts[:1], [[" zzzqqq"]])
    assert b.labels_missing == 1 and b.prompts_widened <= len(prompts)


def test_top_k_scoring_reads_the_longest_listed_token_of_each_label():
    from boxbench.backends.openai_api import OpenAIBackend

    b = OpenAIBackend(client=None, model="m", base_url="http://x")
    top = {" ": -0.5, " pol": -3.0, " politics": -4.0, " sports": -2.0, "\n": -1.0}
    got = b._from_top_k(top, [" politics", " sports", " business"])
    assert got[:2] == [-4.0, -2.0]  # not -0.5 from the bare space that starts every label
    assert got[2] < min(top.values()) and b.labels_missing == 1
