"""PEZ, the cross-model vocabulary agreement, and transfer cells — real SmolLM2, real SST-2."""

from __future__ import annotations

import pytest
import torch

from helpers import records_of, run_cli, write_suite
from boxbench.core.backend import Access
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.method import Artifact
from boxbench.methods.neighbours import agreement
from boxbench.methods.pez import Pez, PezParams, dictionary_fraction
from boxbench.core.errors import UserError


def test_pez_moves_only_the_prompt_and_returns_text_and_ids(smol, tmp_path):
    splits = load_splits("sst2", 64, 8, 4, 0)
    before = {n: p.detach().clone() for n, p in smol.module.named_parameters()}
    art = Pez().tune(smol.view(Access.white), task=splits.task, train=splits.train, dev=splits.dev,
                     params=PezParams(vocab="random", s=3000, steps=4, eval_every=2, batch_size=8, prompt_length=5), seed=0)
    assert all(torch.equal(before[n], p) for n, p in smol.module.named_parameters()), "a model parameter changed"
    assert all(not p.requires_grad or p.grad is None for p in smol.module.parameters())
    assert len(art.token_ids) == 5 and art.instruction == smol.tokenizer.decode(art.token_ids, skip_special_tokens=True)
    assert [h["step"] for h in art.history] == [2, 4] and art.stats["candidate_vocab"] == 3000  # the start is not scored
    assert art.stats["best_step"] in (2, 4) and art.stats["loss_first"] > 0
    art.save(tmp_path / "a")
    again = Artifact.load(tmp_path / "a")
    assert again.token_ids == art.token_ids and again.prompts(splits.task, ["x"]) == art.prompts(splits.task, ["x"])
    with pytest.raises(UserError, match="counterparts"):
        PezParams(vocab="neighbour")
    with pytest.raises(UserError, match="must be transformers models"):
        PezParams(vocab="common", counterparts=[{"backend": "openai", "model": "m"}])


def test_neighbour_agreement_on_two_real_vocabularies(smol, tmp_path, monkeypatch):
    """SmolLM2 (byte BPE) against BERT's WordPiece (the MiniLM encoder's): two real, different vocabularies."""
    from boxbench.methods.kate import load_encoder

    monkeypatch.setenv("BOXBENCH_CACHE", str(tmp_path))
    enc = load_encoder("all-MiniLM-L6-v2")
    bert_tok, bert_emb = enc.tokenizer, enc[0].auto_model.embeddings.word_embeddings.weight
    smol_emb = smol.module.get_input_embeddings().weight
    a = agreement([smol.tokenizer, bert_tok], lambda: [smol_emb, bert_emb], ["smol", "bert"], h=512, k=16, iterations=2, seed=0)
    assert 1000 < len(a.texts) < 30000 and not a.cached
    assert all(smol.tokenizer.decode([i]) == t for i, t in zip(a.ids[0][:50], a.texts[:50]))
    assert all(0.0 <= s <= 1.0 for s in a.scores) and 0.0 < sum(a.scores) / len(a.scores) < 0.5
    def never() -> list:
        raise AssertionError("a cache hit must not load the embeddings")

    b = agreement([smol.tokenizer, bert_tok], never, ["smol", "bert"], h=512, k=16, iterations=2, seed=0)
    assert b.cached and b.scores == a.scores
    same = agreement([smol.tokenizer, smol.tokenizer], lambda: [smol_emb, smol_emb], ["s1", "s2"], h=256, k=8, iterations=1, seed=0)
    assert min(same.scores) == pytest.approx(1.0)  # identical models: every neighbourhood agrees


def test_counterparts_may_be_the_whole_model_set():
    from boxbench.methods.pez import counterpart_models

    models = ["hf:org/a", "hf:org/b", {"model": "hf:org/c"}, "hf:org/b"]  # hub names: nothing is loaded
    assert counterpart_models(models, "hf:org/a") == ["hf:org/b", "hf:org/c"]
    assert counterpart_models(models, "hf:org/c") == ["hf:org/a", "hf:org/b"]
    assert counterpart_models(["smollm2-135m"], "smollm2-135m") == ["smollm2-135m"]


def test_dictionary_fraction():
    assert dictionary_fraction("the movie was great") == 1.0
    assert dictionary_fraction("xqzt the") == 0.5
    assert dictionary_fraction("1234 ...") is None


SUITE = """
name: transfer
models: [smollm2-135m]
datasets: [sst2]
methods:
  - name: zero_shot
    access: grey
    seeds: [0]
  - name: pez
    label: pez-neighbour
    params: {vocab: neighbour, counterparts: [smollm2-135m], s: 2000, h: 512, K: 16, L: 1, steps: 2, batch_size: 4, eval_every: 2, prompt_length: 4}
    transfer_to:
      - {model: smollm2-135m, label: smol-copy}
      - {model: smollm2-135m, access: black, label: smol-text-only}
seeds: [0, 1]
limits: {train: 40, dev: 4, test: 6}
"""


def test_transfer_cells_evaluate_the_source_prompt_on_each_target(tmp_path):
    run = tmp_path / "run"
    suite = write_suite(tmp_path / "s.yaml", SUITE)
    proc = run_cli("run", str(suite), "--out", str(run), "--quiet", "--report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records_of(run)
    assert len(recs) == 1 + 2 * 3 and all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    for seed in (0, 1):
        src = next(r for r in recs if r["label"] == "pez-neighbour" and r["seed"] == seed and r["target_model"] == "smollm2-135m")
        copy = next(r for r in recs if r["label"] == "pez-neighbour" and r["seed"] == seed and r["target_model"] == "smol-copy")
        text = next(r for r in recs if r["label"] == "pez-neighbour" and r["seed"] == seed and r["target_model"] == "smol-text-only")
        assert copy["source_model"] == text["source_model"] == "smollm2-135m"
        assert copy["accuracy"] == src["accuracy"]  # the same weights read the same text: same predictions
        assert copy["protocol"] == "logprob" and text["protocol"] == "generate"
        assert copy["artifact"] == src["artifact"] and copy["tune_wall_s"] < 5
        assert src["vocab"] == "neighbour" and src["common_vocab"] > 1000 and src["prompt_text"] is not None
    report = (run / "report.md").read_text()
    assert "### Transfer — sst2" in report and "| pez-neighbour | smollm2-135m |" in report and "smol-copy" in report
    assert "### Tuned prompts" in report and "### Dictionary words in tuned prompts" in report and (run / "report_transfer.png").exists()
    search = report.split("### PEZ search")[1].split("###")[0]
    assert "| pez-neighbour | smollm2-135m | sst2 | 2,000 |" in search  # s candidates, and how the dev set chose
