"""Text rules that must not differ between backends: how a continuation is tokenised after its
prompt, and where a generated answer ends. Every backend, the training loop, PEZ and Proxy-Tuning
use these functions; the backend conformance test (tests/test_conformance.py) checks each backend.

* ``encode_pair`` — prompt + continuation are encoded *together* and split where the prompt ends
  (lm-evaluation-harness's rule). Encoding a label alone is wrong on tokenizers that add a dummy
  prefix (SentencePiece: ``" positive"`` alone can become ``[▁, ▁positive]``) and wherever a
  tokenizer merges across the boundary.
* ``finish_answer`` — a generated answer ends at the first stop string that follows some content;
  leading whitespace is dropped, never taken as the end (chat models often open with a newline).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Sequence

from boxbench.core.errors import UserError


def split_pair(prompt: str, continuation: str) -> tuple[str, str]:
    """Move the prompt's trailing whitespace onto the continuation (``"is " + "positive"`` ->
    ``"is" + " positive"``): the model then reads the space as part of the word, as in training text."""
    n = len(prompt) - len(prompt.rstrip())
    return (prompt[:-n], prompt[-n:] + continuation) if n else (prompt, continuation)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_pair(encode: Callable[[str], list[int]], prompt: str, continuation: str,
                prompt_ids: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(prompt ids, continuation ids) of ``prompt + continuation`` encoded as one text.

    The split is where the prompt's own encoding stops agreeing with the joint one, so a token that
    straddles the boundary belongs to the continuation (it is what the model must predict).
    ``encode`` maps text to ids with the special tokens the model reads (e.g. BOS);
    ``prompt_ids``: ``encode(prompt after split_pair)`` if the caller already has it.
    """
    if not continuation:
        raise UserError("a continuation is empty; label words must be non-empty text")
    prompt, continuation = split_pair(prompt, continuation)
    whole = encode(prompt + continuation)
    ctx = prompt_ids if prompt_ids is not None else encode(prompt)
    n = common_prefix(ctx, whole)
    if n == len(whole):
        raise UserError(f"the continuation {continuation!r} tokenises to nothing after its prompt")
    return whole[:n], whole[n:]


def finish_answer(text: str, stop: Sequence[str]) -> str:
    """The answer in a generated ``text``: leading whitespace dropped, then everything before the
    first stop string (a stop string at the very start does not end an empty answer)."""
    body = text.lstrip()
    cut = min((body.find(s) for s in stop if s and s in body), default=-1)
    return body[:cut] if cut >= 0 else body


def answer_ended(text: str, stop: Sequence[str]) -> bool:
    """True once ``text`` holds a stop string after some content (decoding may end there)."""
    body = text.lstrip()
    return any(s and s in body for s in stop)


def vocabulary_fingerprint(tok: Any) -> str:
    """sha256 (16 hex) of a tokenizer's token -> id map: equal for tokenizers that share a vocabulary."""
    return hashlib.sha256(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()[:16]
