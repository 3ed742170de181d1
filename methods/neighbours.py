"""Cross-model vocabulary agreement for neighbour-restricted PEZ.

V_common: tokens that are single tokens with the same text in every model's vocabulary (text =
the tokenizer's own decoding of that one id, so "Ġword" and "▁word" both read " word"). For each
model i, W̃_i = its L2-normalised input-embedding rows for V_common. For L iterations a subset P of
h common tokens is drawn; every token u gets, per model, its top-K neighbours N_iu among P by
cosine similarity; J_u = mean over model pairs of Jaccard(N_iu, N_ju); J is averaged over the L
iterations. Tokens whose neighbourhoods agree across models (high J) form V_sub.

The scores are computed once per (models, h, K, L, seed) and cached on disk (``neighbours/``
under boxbench's cache dir); the time it took is returned with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from boxbench.backends.weights import cache_dir


@dataclass
class Agreement:
    """Common token texts, each model's id for them, and the agreement score J per token."""

    texts: list[str]
    ids: list[list[int]]  # ids[m][u]: model m's id of common token u
    scores: list[float]
    seconds: float
    cached: bool


def single_token_texts(tok: Any) -> dict[str, int]:
    """Text -> id for every id whose decoded text re-encodes to exactly that one id (first id wins)."""
    special = set(getattr(tok, "all_special_ids", []) or [])
    out: dict[str, int] = {}
    for i in range(len(tok)):
        if i in special:
            continue
        text = tok.decode([i])
        if not text or "\ufffd" in text or text in out:
            continue
        if tok(text, add_special_tokens=False).input_ids == [i]:
            out[text] = i
    return out


def common_vocabulary(tokenizers: Sequence[Any], fingerprints: Sequence[str] | None = None) -> tuple[list[str], list[list[int]]]:
    """V_common: texts that are one token in every tokenizer, and each tokenizer's id for them.

    Scanning a vocabulary re-encodes every token (minutes for Gemma's 262k), so with ``fingerprints``
    the result is cached on disk once per model set, shared by every seed and setting."""
    path = None
    if fingerprints is not None:
        key = hashlib.sha256(json.dumps(sorted(fingerprints)).encode()).hexdigest()[:16]
        path = cache_dir() / "neighbours" / f"common-{key}.json"
        if path.exists():
            data = json.loads(path.read_text())
            return data["texts"], [data["ids"][f] for f in fingerprints]
    maps = [single_token_texts(t) for t in tokenizers]
    texts = sorted(set.intersection(*(set(m) for m in maps)))
    ids = [[m[t] for t in texts] for m in maps]
    if path is not None and fingerprints is not None:
        _write_json(path, {"texts": texts, "ids": dict(zip(fingerprints, ids))})
    return texts, ids


def _write_json(path: Any, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def agreement(tokenizers: Sequence[Any], embeddings: Callable[[], Sequence[Any]], fingerprints: Sequence[str], *,
              h: int = 8192, k: int = 64, iterations: int = 5, seed: int = 0, chunk: int = 2048) -> Agreement:
    """J_u for the common vocabulary of these models (cached on disk by fingerprints and settings).

    ``embeddings`` returns each model's input-embedding matrix; it is called only on a cache miss,
    so a hit never loads the models."""
    import torch

    key = hashlib.sha256(json.dumps([sorted(fingerprints), h, k, iterations, seed]).encode()).hexdigest()[:16]
    path = cache_dir() / "neighbours" / f"{key}.json"
    order = sorted(range(len(fingerprints)), key=lambda i: fingerprints[i])
    if path.exists():
        data = json.loads(path.read_text())
        ids_sorted = data["ids"]
        ids = [ids_sorted[order.index(m)] for m in range(len(fingerprints))]
        return Agreement(data["texts"], ids, data["scores"], data["seconds"], True)
    t0 = time.perf_counter()
    texts, ids = common_vocabulary(tokenizers, fingerprints)
    c = len(texts)
    if c < 2:
        raise ValueError("the models share fewer than 2 single-token texts; no common vocabulary")
    w = [torch.nn.functional.normalize(e.detach().float()[torch.tensor(i)], dim=-1) for e, i in zip(embeddings(), ids)]
    h = min(h, c)
    k = min(k, h)
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(c)
    pairs = [(a, b) for a in range(len(w)) for b in range(a + 1, len(w))]
    for _ in range(iterations):
        subset = torch.randperm(c, generator=gen)[:h]
        for start in range(0, c, chunk):
            rows = slice(start, min(start + chunk, c))
            masks = []
            for wi in w:
                top = (wi[rows] @ wi[subset].T).topk(k, dim=-1).indices
                masks.append(torch.zeros(top.shape[0], h, dtype=torch.bool).scatter_(1, top, True))
            jac = sum(((masks[a] & masks[b]).sum(1).float() / (2 * k - (masks[a] & masks[b]).sum(1).float())) for a, b in pairs)
            total[rows] += jac / len(pairs)
    scores = (total / iterations).tolist()
    seconds = time.perf_counter() - t0
    _write_json(path, {"texts": texts, "ids": [ids[m] for m in order], "scores": scores, "seconds": seconds})
    return Agreement(texts, ids, scores, seconds, False)
