"""The fidelity defects of issue 12, one test each (each failed on 8c45f20), on the real model and data.

Backend-against-backend checks (token ids, scores, stop rule, counting) are in test_conformance.py;
the access back door (12.12) is in test_access.py.
"""

from __future__ import annotations

import csv
import inspect
import json
import shutil
import time

import pytest

from helpers import SUITES, records_of, run_cli, write_method_plugin, write_suite
from boxbench.backends import BACKENDS
from boxbench.core.backend import CHAT_DEFAULT, GenerationConfig
from boxbench.backends.openai_api import BackendError, OpenAIBackend
from boxbench.benchmarks.datasets import SST2, agnews_text, clean_agnews, load_raw
from boxbench.core.method import Artifact
from boxbench.methods.training import encode_examples
from boxbench.core.errors import UserError

SPACE_TEMPLATE = "Review: {text}\nSentiment: "  # ends in a space: the label word must take it


def test_1_labels_are_tokenised_with_their_prompt_in_scoring_and_training(smol):
    """A template ending in a space + label words without one: the text is the same as the usual
    form, so the scores and the trained label tokens must be the same too (not a lone 'Ġ' + word)."""
    tok = smol.tokenizer
    text = "a gorgeous, witty film"
    spaced = smol.score([SPACE_TEMPLATE.format(text=text)], [["negative", "positive"]])[0]
    usual = smol.score([SPACE_TEMPLATE.format(text=text).rstrip()], [[" negative", " positive"]])[0]
    assert spaced == pytest.approx(usual, abs=1e-4)
    task = SST2.with_overrides(template=SPACE_TEMPLATE, label_words=["negative", "positive"])
    from boxbench.core.task import Example

    (ids, n_label), = encode_examples(tok, task, [Example(text, 1)], 256)
    assert n_label == 1 and ids[-1] == tok(" positive", add_special_tokens=False).input_ids[0]
    assert ids == tok(SPACE_TEMPLATE.format(text=text) + "positive").input_ids


def test_4_every_backend_has_the_same_chat_default():
    for name in BACKENDS.names():
        load = BACKENDS.get(name).load
        assert inspect.signature(load).parameters["chat"].default is CHAT_DEFAULT is False, name


def test_5_a_failed_echo_request_fails_loudly_never_scores():
    """No server here returns an echo without log-probs (llama.cpp always echoes), so the response
    parts are given directly: a missing echo, and an echo without the continuation's log-prob."""
    b = OpenAIBackend(client=None, model="m", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(BackendError, match="no echoed log-probs"):
        b._continuation_score("Review: x\nSentiment:", " positive", None)
    with pytest.raises(BackendError, match="no log-prob for the continuation"):
        b._continuation_score("Sentiment:", " positive", [("Sent", None, 0), ("iment", -3.0, 4), (":", -1.0, 9), (" positive", None, 10)])
    assert b._continuation_score("Sentiment:", " positive", [("Sent", None, 0), (":", -1.0, 9), (" positive", -0.5, 10)]) == (-0.5, 2, 1)


def test_6_cell_timeout_fires_while_a_method_tunes(tmp_path):
    plugin = write_method_plugin(tmp_path / "sleepy.py", "sleepy", "        time.sleep(120)", "import time")
    suite = write_suite(tmp_path / "s.yaml", "models: [smollm2-135m]\ndatasets: [sst2]\nmethods: [sleepy]\n"
                        "limits: {test: 2}\nsettings: {cell_timeout_s: 10}\n")
    t0 = time.monotonic()
    proc = run_cli("--plugin", str(plugin), "run", str(suite), "--out", str(tmp_path / "run"), "--quiet")
    wall = time.monotonic() - t0
    (rec,) = records_of(tmp_path / "run")
    assert proc.returncode == 1 and rec["status"] == "error"
    assert rec["timed_out_phase"] == "tune" and "timed out after 10 s while in phase 'tune'" in rec["error"]
    assert wall < 90, wall  # the tune would sleep 120 s


def test_7_agnews_text_is_canonical_and_the_data_is_in_the_key(tmp_path, monkeypatch):
    from boxbench.benchmarks.taskfile import local_data_dir
    from boxbench.benchmarks.suite import load_suite

    data = local_data_dir()
    with open(data / "agnews" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:50]
    _, test, source = load_raw("agnews")
    for row, ex in zip(rows, test):
        hub_text = f"{row['title']} {row['description']}"  # the hub's `text` field: title, one space, description
        assert ex.text == agnews_text(row["title"], row["description"]) == agnews_text("", hub_text) == clean_agnews(hub_text)
    # a copy of the data with one changed row is other data: another cell key
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    with open(copy / "sst2" / "validation.tsv", "a") as f:
        f.write("an extra sentence\t1\n")
    suite = write_suite(tmp_path / "s.yaml", "models: [smollm2-135m]\ndatasets: [sst2]\nmethods: [zero_shot]\n")
    key = load_suite(suite).cells[0].key
    monkeypatch.setenv("BOXBENCH_DATA", str(copy))
    assert load_suite(suite).cells[0].key != key


def test_8_full_finetune_keeps_fp32_master_weights():
    """A model loaded in bf16 (as on a GPU) is trained on fp32 master weights: at lr 2e-5 a bf16
    weight would not move at all (its spacing near 0.05 is 2^-12 ≈ 2.4e-4)."""
    import torch

    from boxbench.backends.hf import HFBackend
    from boxbench.benchmarks.datasets import load_splits
    from boxbench.methods.full_finetune import FullFinetune, FullFinetuneParams

    backend = HFBackend.load("smollm2-135m", device="cpu", dtype="bfloat16")
    splits = load_splits("sst2", train=8, test=4)
    before = {n: p.detach().float().clone() for n, p in backend.module.named_parameters() if "layers.0.self_attn.q_proj" in n}
    art = FullFinetune().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[],
                              params=FullFinetuneParams(max_steps=2, batch_size=4, save_weights=False, warmup_ratio=0.0), seed=0)
    assert art.stats["master_weights"] == "float32" and art.stats["loaded_dtype"] == "bfloat16"
    params = dict(backend.module.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())
    moved = [float((params[n].detach() - b).abs().max()) for n, b in before.items()]
    assert all(0 < m < 1e-3 for m in moved), moved


def test_9_an_artifact_of_unknown_kind_is_an_error(tmp_path):
    (tmp_path / "artifact.json").write_text(json.dumps({"kind": "no_such_kind", "instruction": "x"}))
    with pytest.raises(UserError, match="unknown kind 'no_such_kind'"):
        Artifact.load(tmp_path)


def test_10_generation_stops_at_every_end_token_of_the_model(smol):
    prompt = "The capital of France is"
    first = smol.tokenizer(smol.generate([prompt], GenerationConfig(max_new_tokens=1, stop=[]))[0], add_special_tokens=False).input_ids[0]
    config = smol.module.generation_config
    old = config.eos_token_id
    config.eos_token_id = [old if isinstance(old, int) else old[0], first]  # as Qwen lists <|im_end|> and <|endoftext|>
    try:
        assert first in smol.end_token_ids()
        assert smol.generate([prompt], GenerationConfig(max_new_tokens=8, stop=[])) == [""]
    finally:
        config.eos_token_id = old


def test_11_bad_output_folder_and_corrupt_data_are_one_line(tmp_path, monkeypatch):
    f = tmp_path / "a_file"
    f.write_text("x")
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(f))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"boxbench: error: --out {f}: is a file, not a folder; give a folder for the run (created if missing)"

    from boxbench.benchmarks.taskfile import local_data_dir

    bad = tmp_path / "data"
    data = local_data_dir()
    shutil.copytree(data, bad)
    lines = (bad / "sst2" / "validation.tsv").read_text().splitlines()
    lines[3] = "a sentence with a broken label\tpositive"
    (bad / "sst2" / "validation.tsv").write_text("\n".join(lines) + "\n")
    suite = write_suite(tmp_path / "s.yaml", "models: [smollm2-135m]\ndatasets: [sst2]\nmethods: [zero_shot]\nlimits: {test: 2}\n")
    proc = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "--quiet", env={"BOXBENCH_DATA": str(bad)})
    (rec,) = records_of(tmp_path / "run")
    assert rec["status"] == "error" and "Traceback" not in rec["error"]
    assert rec["error"] == (f"built-in task sst2.yaml.labels: data file {bad / 'sst2' / 'validation.tsv'}: line 4 (header = line 1) "
                            f"has label 'positive', which no label lists (listed: 0, 1); add it to labels or fix the row")

    (bad / "agnews").mkdir(exist_ok=True)
    (bad / "agnews" / "test.csv").write_text('label,title,description\n1,"unterminated,x\n')
    from boxbench.benchmarks import datasets as ds

    monkeypatch.setenv("BOXBENCH_DATA", str(bad))
    with pytest.raises(UserError, match=rf"data file {bad / 'agnews' / 'test.csv'} does not parse"):
        ds.DATASETS.get("agnews").load_local(bad)
