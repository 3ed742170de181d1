"""Black-box studies a user can afford and trust: the request cache against the REAL llama.cpp
server (a re-run asks it nothing: its own access log says so), spend in money and the caps that stop
an APE cell, the faults a real API has (tests/fault_server.py: the one fake here, because a healthy
local server cannot fail on cue), and requests in flight bounded per base URL across processes."""

from __future__ import annotations

import multiprocessing
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fault_server import FaultServer
from helpers import records_of, run_cli, server_or_skip, write_suite
from boxbench.backends import load_backend, parse_model_spec
from boxbench.core.backend import GenerationConfig
from boxbench.backends.openai_api import BackendError
from boxbench.core.errors import UserError


def _requests_in(log) -> int:
    return len(re.findall(r'"(?:GET|POST) /(?:v1|extras)/', log.read_text(errors="replace")))


SUITE = """name: api-cache
models:
  - {{backend: openai, model: smollm2-135m, base_url: "{url}", label: api, max_retries: 1, timeout: 30}}
datasets: [sst2]
methods:
  - name: zero_shot
  - name: zero_shot
    access: grey
  - name: ape
    params: {{num_subsamples: 1, prompts_per_subsample: 2, eval_size: 4, rounds: 0, keep: 1, max_new_tokens: 3}}
seeds: [0]
limits: {{train: 40, dev: 8, test: 6}}
settings: {{max_new_tokens: 3{extra}}}
"""


def test_a_rerun_into_a_new_folder_asks_the_server_nothing_and_gives_the_same_results(tmp_path):
    from boxbench.backends.llama_server import LlamaServer

    server_or_skip()
    log = tmp_path / "server.log"
    env = {"BOXBENCH_REQUEST_CACHE": "1", "BOXBENCH_REQUEST_CACHE_DIR": str(tmp_path / "cache")}
    with LlamaServer("smollm2-135m", log=log) as srv:
        suite = write_suite(tmp_path / "s.yaml", SUITE.format(url=srv.base_url, extra=""))
        before = _requests_in(log)
        t0 = time.perf_counter()
        first = run_cli("run", str(suite), "--out", str(tmp_path / "a"), "--quiet", env=env)
        t1 = time.perf_counter()
        asked = _requests_in(log) - before
        second = run_cli("run", str(suite), "--out", str(tmp_path / "b"), "--quiet", env=env)
        t2 = time.perf_counter()
        again = _requests_in(log) - before - asked
        fresh = run_cli("run", str(suite), "--out", str(tmp_path / "c"), "--quiet", "--no-cache", env=env)
        no_cache = _requests_in(log) - before - asked - again
    assert first.returncode == second.returncode == fresh.returncode == 0, first.stderr[-1500:] + second.stderr[-1500:]
    assert asked > 20 and again == 0 and no_cache > 20  # the re-run's log is empty; --no-cache asks again
    a, b = ({r["label"]: r for r in records_of(tmp_path / d)} for d in ("a", "b"))
    for label in a:
        assert (a[label]["correct"], a[label]["accuracy"]) == (b[label]["correct"], b[label]["accuracy"])
        # the method's own demand is the same whether served fresh or from the cache; only the billed part differs
        assert (a[label]["model_calls"], a[label]["prompt_tokens"]) == (b[label]["model_calls"], b[label]["prompt_tokens"])
        assert b[label]["spend"]["billed_requests"] == 0 and b[label]["cache_hits"] > 0
        assert a[label]["spend"]["billed_requests"] > 0 and a[label]["tune_cost"] == 0.0  # a server on this machine costs 0
    print(f"\nfirst run {t1 - t0:.1f} s ({asked} requests), re-run {t2 - t1:.1f} s (0 requests)")


def test_a_capped_ape_cell_stops_at_its_cap_and_says_how_far_it_got(llama_server, tmp_path):
    price = ", price: {input_per_mtok: 1000.0, output_per_mtok: 1000.0}"
    text = SUITE.format(url=llama_server.base_url, extra=", max_cost: 0.05").replace("timeout: 30}", "timeout: 30" + price + "}")
    suite = write_suite(tmp_path / "s.yaml", text)
    run = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(run), "--quiet", "--only", "method=ape")
    assert proc.returncode == 0 and "1 capped" in proc.stdout, proc.stdout + proc.stderr[-1500:]
    (r,) = records_of(run)
    assert r["status"] == "capped" and r["capped_in"] == "tune" and r.get("accuracy") is None
    assert r["error"].startswith("cost cap reached: ") and "of settings.max_cost 0.05 after" in r["error"]
    # it stops once the cap is reached: one request at these prices passes it, and at most the other
    # requests already in flight (concurrency 4) land after it
    assert r["spend"]["tune_cost"] >= 0.05 and r["spend"]["billed_requests"] <= 2 + 4
    assert r["caps"]["max_cost"] == 0.05 and r["usage_so_far"]["model_calls"] > 0
    again = run_cli("run", str(suite), "--out", str(run), "--quiet", "--only", "method=ape")
    assert "0 ok, 0 error, 1 already done" in again.stdout  # the same caps: not re-run
    raised = write_suite(tmp_path / "t.yaml", text.replace("max_cost: 0.05", "max_cost: 500"))
    proc = run_cli("run", str(raised), "--out", str(run), "--quiet", "--only", "method=ape")
    assert "1 ok" in proc.stdout and records_of(run)[0]["status"] == "ok"


def test_the_runs_own_cap_stops_starting_cells(llama_server, tmp_path):
    price = ", price: {input_per_mtok: 1000.0, output_per_mtok: 1000.0}"
    text = SUITE.format(url=llama_server.base_url, extra=", suite_max_cost: 0.01").replace("timeout: 30}", "timeout: 30" + price + "}")
    run = tmp_path / "run"
    proc = run_cli("run", str(write_suite(tmp_path / "s.yaml", text)), "--out", str(run), "--quiet")
    recs = records_of(run)
    assert [r["status"] for r in recs].count("capped") >= 2, proc.stdout  # the first cell spends it all
    queued = [r for r in recs if r.get("capped_in") == "queue"]
    assert queued and queued[0]["error"].startswith("the run's cap is spent (cost left ")


def _fake(srv: FaultServer, **options):
    return load_backend(parse_model_spec({"backend": "openai", "model": "fake", "base_url": srv.base_url, "score": "none",
                                          "max_retries": 3, "timeout": 1.5, "concurrency": 1, **options}))


@pytest.mark.parametrize("script, retries, wait", [
    (["429"], 1, 1.0),              # Retry-After: 1 is waited, then it answers
    (["500", "500"], 2, 1.5),       # backoff 0.5 s, 1 s
    (["reset"], 1, 0.5),            # the connection drops mid-response
    (["slow"], 1, 0.5),             # slower than the 1.5 s timeout
    (["badjson"], 1, 0.5),          # a body that is not JSON
])
def test_a_transient_fault_is_retried_counted_and_survived(script, retries, wait):
    with FaultServer(script) as srv:
        b = _fake(srv)
        out = b.generate(["Review: fine. Sentiment:"], GenerationConfig(max_new_tokens=2))
        assert out == [" positive"] and srv.posts() == retries + 1
        d = b.describe()
        assert (d["retries"], d["retry_wait_s"]) == (retries, pytest.approx(wait)) and d["billed"]["requests"] == 1


@pytest.mark.parametrize("script, message", [
    (["500"] * 9, r"^server http://127\.0\.0\.1:\d+/v1 POST /completions: answered 500: internal error after 3 retries; raise timeout"),
    (["slow"] * 9, r"^server http://127\.0\.0\.1:\d+/v1 POST /completions: timed out after 3 retries; raise timeout"),
    (["badjson"] * 9, r"^server http://127\.0\.0\.1:\d+/v1 POST /completions: unreadable body \(.*\) after 3 retries"),
    (["400"], r"^server http://127\.0\.0\.1:\d+/v1 POST /completions: answered 400: bad request; check the request"),
])
def test_a_fault_retries_do_not_fix_is_one_line_naming_the_server(script, message, monkeypatch):
    import boxbench.backends.openai_api as api

    monkeypatch.setattr(api, "_backoff", lambda s: None)  # the backoff itself is tested above
    with FaultServer(script) as srv:
        with pytest.raises(BackendError, match=message) as err:
            _fake(srv).generate(["x"], GenerationConfig(max_new_tokens=2))
    assert "\n" not in str(err.value)


def test_a_response_without_usage_is_counted_not_invented():
    with FaultServer(["nousage"]) as srv:
        b = _fake(srv)
        assert b.generate(["x"], GenerationConfig(max_new_tokens=2)) == [" positive"]
        d = b.describe()
        assert d["usage_missing"] == 1 and d["billed"]["prompt_tokens"] == 0 and d["billed"]["requests"] == 1


def test_a_failing_cell_fails_alone_and_writes_no_result_as_if_complete(tmp_path):
    with FaultServer(["500", "500"]) as srv:
        suite = write_suite(tmp_path / "s.yaml", f"""name: faults
models:
  - {{backend: openai, model: fake, base_url: "{srv.base_url}", score: none, max_retries: 1, concurrency: 1, timeout: 5}}
datasets: [sst2]
methods:
  - name: zero_shot
  - name: few_shot
    params: {{k: 1}}
limits: {{train: 20, test: 4}}
""")
        run = tmp_path / "run"
        proc = run_cli("run", str(suite), "--out", str(run), "--quiet")
    assert proc.returncode == 1 and "1 ok, 1 error" in proc.stdout, proc.stdout + proc.stderr[-1000:]
    bad, good = sorted(records_of(run), key=lambda r: r["status"])
    assert bad["status"] == "error" and re.match(r"server http://127\.0\.0\.1:\d+/v1 POST /completions: answered 500: internal error "
                                                 r"after 1 retries", bad["error"])
    assert bad.get("accuracy") is None and not (run / "cells" / bad["cell_id"] / "predictions.jsonl").exists()
    assert good["status"] == "ok" and good["n"] == 4


def _burst(url: str, n: int) -> None:
    b = load_backend(parse_model_spec({"backend": "openai", "model": "fake", "base_url": url, "score": "none", "concurrency": 2}))
    b.generate([f"prompt {i}" for i in range(n)], GenerationConfig(max_new_tokens=2))


def test_requests_in_flight_are_bounded_per_base_url_across_processes():
    with FaultServer(delay_s=0.2) as srv:
        procs = [multiprocessing.get_context("spawn").Process(target=_burst, args=(srv.base_url, 6)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs) and srv.posts() == 18
        assert srv.max_in_flight == 2  # three processes of concurrency 2 each, one server: 2 at once, not 6


def test_rate_limit_headers_pause_the_next_request():
    with FaultServer(headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}) as srv:
        b = _fake(srv)
        b.generate(["a"], GenerationConfig(max_new_tokens=2))
        t0 = time.perf_counter()
        b.generate(["b"], GenerationConfig(max_new_tokens=2))
        assert time.perf_counter() - t0 >= 0.9


def test_a_price_is_checked_and_known_models_have_dated_prices():
    from boxbench.backends.budget import PRICES, price_for

    with pytest.raises(UserError, match=r"^m\.price\.input_per_mtok: must be a non-negative number, got -1"):
        parse_model_spec({"backend": "openai", "model": "x", "price": {"input_per_mtok": -1}}, "m")
    assert price_for("gpt-4o-mini", "https://api.openai.com/v1", None)["source"] == f"public list price, {PRICES['gpt-4o-mini'][2]}"
    assert price_for("mystery", "https://example.com/v1", None) is None
    assert price_for("mystery", "http://127.0.0.1:8080/v1", None)["input_per_mtok"] == 0.0


def test_an_in_process_model_uses_the_cache_only_while_it_is_as_loaded(tmp_path, monkeypatch, smol):
    """``cache: true`` on an hf model: repeated greedy generation, scoring and top-k come from the
    cache with the same results and the same usage; a model handed out at white access (its weights
    may change) neither reads nor writes it."""
    from boxbench.core.backend import Access
    from boxbench.backends.hf import HFBackend

    monkeypatch.setenv("BOXBENCH_REQUEST_CACHE", "1")
    monkeypatch.setenv("BOXBENCH_REQUEST_CACHE_DIR", str(tmp_path))
    prompts = ["Review: a gorgeous, witty film\nThe sentiment of this review is", "Review: dull and slow\nThe sentiment of this review is"]
    words = [[" negative", " positive"]] * 2
    m = HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8, cache=True)
    runs = []
    for _ in range(2):
        before = m.usage.snapshot()
        out = (m.generate(prompts, GenerationConfig(max_new_tokens=4)), m.score(prompts, words), m.next_token_logprobs(prompts, 3))
        runs.append((out, {k: v - before[k] for k, v in m.usage.snapshot().items()}))
    assert runs[0] == runs[1] and m.cache_hits == 6 and m.describe()["cache_hits"] == 6
    assert runs[0][0][1] == smol.score(prompts, words)  # the cached scores are the model's own
    m.view(Access.white)  # a method could now change the weights
    m.score(prompts, words)
    assert m.cache_hits == 6



def _lock_cache(folder: Path) -> subprocess.Popen:
    """Another process holding the cache's SQLite file locked for writing (as a stuck writer would)."""
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA journal_mode=WAL')\n"
        "db.execute('CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)')\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"), str(folder / "requests.sqlite")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("fault", ["a file where its folder should be", "locked by another process"])
def test_an_unusable_request_cache_is_warned_once_and_the_run_goes_on(llama_server, tmp_path, fault):
    folder, holder = tmp_path / "cache", None
    if fault == "locked by another process":
        holder, reason = _lock_cache(folder), "OperationalError: database is locked"
    else:
        folder.write_text("a file where the cache folder should be")
        reason = ""
    env = {"BOXBENCH_REQUEST_CACHE": "1", "BOXBENCH_REQUEST_CACHE_DIR": str(folder), "BOXBENCH_REQUEST_CACHE_BUSY_S": "1"}
    suite = write_suite(tmp_path / "s.yaml", SUITE.format(url=llama_server.base_url, extra=""))
    try:
        proc = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "--quiet", "--only", "method=zero_shot", env=env)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records_of(tmp_path / "run")
    assert len(recs) == 2 and all(r["status"] == "ok" and r["spend"]["billed_requests"] > 0 for r in recs)
    assert all(r["request_cache_error"].startswith(f"{folder}/requests.sqlite: {reason}") for r in recs)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("boxbench: warning: the request cache could not be used (")
