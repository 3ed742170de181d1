"""Real SST-2 and AG News through the datasets library; fixed splits; clear errors on missing files."""

from __future__ import annotations

import pytest

from boxbench.benchmarks.datasets import check_dataset, clean_agnews, load_raw, load_splits
from boxbench.core.errors import UserError


def test_full_sizes_and_labels():
    tr, te, source = load_raw("sst2")
    assert (len(tr), len(te)) == (67349, 872)
    assert {e.label for e in te} == {0, 1} and sum(e.label for e in te) == 444
    tr, te, _ = load_raw("agnews")
    assert len(te) == 7600 and {e.label for e in te} == {0, 1, 2, 3}
    assert source.startswith(("local:", "hub:"))


def test_splits_are_disjoint_fixed_and_seed_independent():
    a = load_splits("sst2", train=100, dev=20, test=50)
    b = load_splits("sst2", train=100, dev=20, test=50)
    assert a.train == b.train and a.dev == b.dev and a.test == b.test
    assert not {e.text for e in a.train} & {e.text for e in a.dev}
    assert a.sizes == {"train": 100, "dev": 20, "test": 50, "train_total": 67349, "test_total": 872, "test_in_train": 0}
    assert len(load_splits("sst2", train=10).test) == 872  # no test limit = the full split


def test_agnews_text_is_unescaped():
    assert clean_agnews("a second\\team won #36;10 million, it#39;s &lt;b&gt;") == "a second team won $10 million, it's <b>"


def test_missing_data_file_is_a_clear_error(tmp_path, monkeypatch):
    from boxbench.benchmarks.datasets import hub_reachable

    monkeypatch.setenv("BOXBENCH_DATA", str(tmp_path))  # BOXBENCH_DATA also means: do not use the hub
    hub_reachable.cache_clear()
    with pytest.raises(UserError, match=r"missing data file .*sst2/train.tsv; set BOXBENCH_DATA"):
        check_dataset("sst2")
    with pytest.raises(UserError, match="unknown dataset 'imdb'; known datasets: agnews, sst2"):
        check_dataset("imdb")
