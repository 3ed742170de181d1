"""Any OpenAI-compatible HTTP server (OpenAI, ``vllm serve``, llama.cpp's server) as a backend.

Black access: generated text, through ``completions`` or, with ``chat: true``, ``chat.completions``
(default off, as for every backend). No stop strings are sent to the server: it generates to its
end token or ``max_new_tokens`` and the view cuts the answer by the one stop rule, as for every
backend (a server-side stop would end an answer that opens with a newline). Grey access only where the server returns logprobs, and the capability is
*measured* at load, not assumed:

* ``echo``  — ``completions(prompt + continuation, echo=True, logprobs=...)``: the server's own
  log-probabilities of the prompt tokens; a label is scored exactly. Trusted only when the probe
  finds the echoed log-prob of a token equal to the next-token log-prob the server reports for the
  same position (llama-cpp-python 0.3.36 returns them shifted by one position: its echo fails this
  check and is not used).
* ``top_k`` — ``completions(prompt, max_tokens=1, logprobs=k)``: the next-token top-k. A label is
  scored by its first token (the longest top-k token that starts it and is not bare whitespace).
  A prompt whose top-k misses a label is asked again with the whole vocabulary listed
  (``WIDE_TOP_K``) where the server allows it (llama.cpp's does; probed at load: ``wide_top_k``);
  labels still absent get a floor below every listed token. Exact for single-token labels, an
  approximation otherwise; the record says which method was used, how many prompts were asked
  again (``prompts_widened``) and how often labels were missing.

Every request goes through ``_request``: the on-disk request cache first (``request_cache``: a
re-run pays nothing), then the cell's spending caps (``budget``), then the server — at most
``concurrency`` requests in flight per base URL across every process on this machine (``slot``),
and retried here (the client's own retries are off, so every retry is counted): 408/409/429/5xx,
timeouts, dropped connections and unreadable bodies, up to ``max_retries`` times, waiting what the
server's ``Retry-After`` says or an exponential backoff, and pausing when its rate-limit headers say
nothing is left. The record keeps ``retries``, ``retry_wait_s``, cache hits and the money spent (a
price from the spec, a public list price, or 0 on this machine). The API key is read from the
environment variable named by ``api_key_env`` and is never recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import socket
import tempfile
import threading
import urllib.parse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from boxbench.backends import context, request_cache
from boxbench.backends.budget import check_price, money, price_for
from boxbench.core.backend import CHAT_DEFAULT, SEED_BOUND, Access, AccessError, Backend, GenerationConfig, Usage
from boxbench.core.errors import UserError
from boxbench.core.tokens import encode_pair, split_pair

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"


WIDE_TOP_K = 262_144  # the largest vocabulary here (Gemma-3's): a server that lists this many lists every token


class BackendError(UserError):
    """The server failed in a way retries did not fix (one line, for the cell's error field)."""


class OpenAIBackend(Backend):
    """An OpenAI-compatible server; black access always, grey where it returns logprobs."""

    name = "openai"
    max_access = Access.grey
    OPTIONS = {"base_url": str, "api_key_env": str, "chat": bool, "concurrency": int, "max_retries": int,
               "timeout": (int, float), "top_logprobs": int, "score": str,
               "n_params": (int, float), "price": dict}
    SCORE_METHODS = ("auto", "echo", "top_k", "none")

    @classmethod
    def check_spec(cls, model: str, options: dict[str, Any], where: str) -> None:
        super().check_spec(model, options, where)
        if options.get("score", "auto") not in cls.SCORE_METHODS:
            raise UserError(f"{where}.score: {options['score']!r} is not one of {', '.join(cls.SCORE_METHODS)}")
        for key in ("concurrency", "top_logprobs"):
            if key in options and options[key] < 1:
                raise UserError(f"{where}.{key}: must be at least 1, got {options[key]}")
        if "price" in options:
            check_price(options["price"], where)

    def __init__(self, client: Any, model: str, base_url: str, *, chat: bool = CHAT_DEFAULT, concurrency: int = 4,
                 top_logprobs: int = 20, max_retries: int = 5) -> None:
        super().__init__()
        self.name = model
        self.client = client
        self.base_url = base_url
        self.chat = chat
        self.concurrency = concurrency
        self.top_logprobs = top_logprobs
        self.max_retries = max_retries
        self.score_method = "none"
        self.labels_missing = 0  # top_k scoring: labels not among the top-k (scored at the floor)
        self.wide_top_k = 0  # top_k scoring: the k asked again where a label is not listed (0: the server lists no more)
        self.prompts_widened = 0  # prompts asked again at wide_top_k
        self.billed = Usage()  # what the server was sent and said it used: HTTP requests, its own token counts
        self._tokenize_url: str | None = ""  # "": not probed yet; None: the server has none
        self._cont_tokens: dict[str, int] = {}
        self._lock = threading.Lock()
        self.settings = {"base_url": base_url, "chat": chat, "concurrency": concurrency, "top_logprobs": top_logprobs,
                         "max_retries": max_retries}
        self.identity: dict[str, Any] = {"base_url": base_url, "model": model}
        self.price: dict[str, Any] | None = None
        self.cache_hits = 0
        self.retries = 0
        self.retry_wait_s = 0.0
        self.usage_missing = 0  # responses without a usage block: their tokens are not known
        self._paused_until = 0.0  # the server's rate-limit headers said: nothing left until then

    @classmethod
    def preflight(cls, options: dict[str, Any]) -> str | None:
        """One TCP connection to the server (3 s at most): refused or timed out -> the one-line reason."""
        url = options.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=3).close()
        except OSError as e:
            return (f"the server at {url} is unreachable ({e.strerror or type(e).__name__}; checked before the cell started, "
                    f"after an earlier cell of this model failed); start it and re-run the same command")
        return None

    @classmethod
    def load(cls, model: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", chat: bool = CHAT_DEFAULT,
             concurrency: int = 4, max_retries: int = 5, timeout: float = 60.0, top_logprobs: int = 100,
             score: str = "auto", n_params: float | None = None, price: dict[str, float] | None = None,
             **_runner_settings: Any) -> "OpenAIBackend":
        """Connect, check the server answers, and detect how (whether) it can score continuations.

        ``base_url`` defaults to ``$OPENAI_BASE_URL``, then the local server's default address.
        The runner's device/dtype/batch_size settings do not apply to a remote model and are ignored.
        ``n_params``: the served model's parameter count, for the compute estimate (an API does not
        say it; without it the record's compute for this model is unknown). ``price``: money per
        million tokens (``budget.price_for`` otherwise). A model whose identity and capabilities the
        request cache already holds is not contacted at all until a request misses the cache.
        """
        import openai

        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = os.environ.get(api_key_env) or "sk-no-key-needed"
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=timeout)  # retried in _call
        backend = cls(client, model, url, chat=chat, concurrency=concurrency, top_logprobs=top_logprobs,
                      max_retries=max_retries)
        backend.price = price_for(model, url, price)
        cache = request_cache.shared()
        id_key = request_cache.request_key({"base_url": url, "model": model}, "identity", {})
        known = cache.get(id_key) if cache else None
        if known is None:  # unreachable server: one clear line, before any work
            listed = backend._call(lambda: client.models.list(), "GET /models")
            entry = next((m for m in getattr(listed, "data", []) or [] if getattr(m, "id", None) == model), None)
            known = {"base_url": url, "model": model,
                     "server_model": {k: getattr(entry, k, None) for k in ("id", "owned_by")} if entry else None}
            if cache:
                cache.put(id_key, known)
        backend.identity = known
        backend.score_method = backend._detect_score_method(score)
        backend.max_access = Access.grey if backend.score_method != "none" else Access.black
        backend.settings["score_method"] = backend.score_method
        if backend.score_method == "top_k":
            backend.wide_top_k = backend._wide_top_k()
            backend.settings["wide_top_k"] = backend.wide_top_k
        if n_params:
            backend.settings["n_params"] = int(n_params)
        return backend

    # ----- plumbing -----
    RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)

    def _call(self, fn: Callable[[], R], what: str = "request") -> R:
        """One request, retried on transient faults (``RETRY_STATUS``, timeouts, dropped connections,
        unreadable bodies) up to ``max_retries`` times — waiting the server's ``Retry-After`` or an
        exponential backoff (0.5 s, 1 s, 2 s, … at most 30 s), each retry and wait counted; what
        retries did not fix becomes one line naming the server and the fault."""
        import openai

        attempt = 0
        while True:
            try:
                return fn()
            except (openai.APIConnectionError, openai.APIStatusError, openai.APIResponseValidationError, ValueError) as e:
                fault = self._fault(e)
                status = getattr(e, "status_code", None)
                transient = status is None or status in self.RETRY_STATUS
                if not transient or attempt >= self.max_retries:
                    tail = f" after {attempt} retries" if attempt else ""
                    down = isinstance(e, openai.APIConnectionError) and not isinstance(e, openai.APITimeoutError)
                    hint = ("start it or check base_url" if down else "raise timeout or max_retries, or lower concurrency"
                            if transient else "check the request and the model name")
                    raise BackendError(f"server {self.base_url} {what}: {fault}{tail}; {hint}") from None
                wait = self._retry_after(e) or min(30.0, 0.5 * 2 ** attempt)
                with self._lock:
                    self.retries += 1
                    self.retry_wait_s += wait
                _backoff(wait)
                attempt += 1

    @staticmethod
    def _fault(e: BaseException) -> str:
        """The fault in a few words: 'answered 429: …', 'timed out', 'connection failed (…)', 'unreadable body (…)'."""
        import openai

        if isinstance(e, openai.APITimeoutError):
            return "timed out"
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            name = type(cause).__name__ if cause else "no answer"
            return f"unreachable ({name})" if name in ("ConnectError", "no answer") else f"connection dropped ({name})"
        if isinstance(e, openai.APIStatusError):
            message = re.sub(r"^Error code: \d+ - ", "", " ".join(str(e.message).split()))  # the client's prefix says it again
            return f"answered {e.status_code}: {message[:160]}"
        return f"unreadable body ({type(e).__name__}: {' '.join(str(e).split())[:120]})"

    @staticmethod
    def _retry_after(e: BaseException) -> float | None:
        response = getattr(e, "response", None)
        value = response.headers.get("retry-after") if response is not None else None
        try:
            return min(60.0, max(0.0, float(value))) if value is not None else None
        except ValueError:
            return None

    def _request(self, endpoint: str, **params: Any) -> Any:
        """One completions / chat request: from the request cache when it holds it (no money, no
        server), else within the cell's caps, a slot of this base URL and the retry rule. Returns the
        parsed response (a cached one rebuilt as the same type)."""
        from openai.types import Completion
        from openai.types.chat import ChatCompletion

        kind: Any = ChatCompletion if endpoint == "chat" else Completion
        cache = request_cache.shared() if request_cache.cacheable(params) else None
        key = request_cache.request_key(self.identity, endpoint, params) if cache else ""
        stored = cache.get(key) if cache else None
        if stored is not None:
            with self._lock:
                self.cache_hits += 1
            return kind.construct(**stored)  # as leniently as the client builds a fresh one (a server's nulls kept)
        context.current().budget.check(f"model {self.name!r} at {self.base_url}", self.price)
        api: Any = self.client.chat.completions if endpoint == "chat" else self.client.completions

        def once() -> Any:
            with slot(self.base_url, self.concurrency):
                pause = self._paused_until - time.time()
                if pause > 0:
                    time.sleep(pause)
                raw = api.with_raw_response.create(**params)
                self._note_rate_limit(raw.headers)
                parsed = raw.parse()
                if not getattr(parsed, "choices", None):
                    raise ValueError("no choices in the response")
                return parsed

        r = self._call(once, f"POST /{'chat/completions' if endpoint == 'chat' else 'completions'}")
        usage = getattr(r, "usage", None)
        if usage is None:
            with self._lock:
                self.usage_missing += 1
        self._bill(usage)
        n_in, n_out = (getattr(usage, "prompt_tokens", 0) or 0), (getattr(usage, "completion_tokens", 0) or 0)
        context.current().budget.add(money(self.price, n_in, n_out), n_in + n_out)
        if cache:
            cache.put(key, r.model_dump(mode="json"))
        return r

    def _note_rate_limit(self, headers: Any) -> None:
        """OpenAI-style rate-limit headers: with no requests left, wait for the reset before the next."""
        left = headers.get("x-ratelimit-remaining-requests")
        reset = headers.get("x-ratelimit-reset-requests")
        if left is not None and reset is not None and str(left).strip() == "0":
            seconds = _duration_s(str(reset))
            if seconds:
                with self._lock:
                    self._paused_until = max(self._paused_until, time.time() + min(seconds, 60.0))

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` through a bounded pool, results in order; the first failure stops the rest."""
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(x) for x in items]
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = [pool.submit(fn, x) for x in items]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _bill(self, usage: Any) -> None:
        """One HTTP request and the server's own token counts (recorded apart, in ``describe``)."""
        with self._lock:
            self.billed.add(1, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)

    def _count(self, calls: int = 0, prompt: int = 0, completion: int = 0) -> None:
        """``Usage`` by its one definition (a call per prompt, whatever the requests were)."""
        with self._lock:
            self.usage.add(calls, prompt, completion)

    # ----- tokens -----
    def _tokenize(self, text: str) -> list[int] | None:
        """The server's token ids for ``text`` (llama.cpp ``/extras/tokenize``, vLLM ``/tokenize``;
        through the request cache); None when the server has no tokenize endpoint (OpenAI's API)."""
        if self._tokenize_url is None:  # probed before: the server has none
            return None
        cache = request_cache.shared()
        key = request_cache.request_key(self.identity, "tokenize", {"text": text}) if cache else ""
        stored = cache.get(key) if cache else None
        if stored is not None:
            return stored["tokens"]
        ids = self._tokenize_fresh(text)
        if cache and ids is not None:
            cache.put(key, {"tokens": ids})
        return ids

    def _tokenize_fresh(self, text: str) -> list[int] | None:
        import json
        import urllib.request

        root = self.base_url.rstrip("/").removesuffix("/v1")
        candidates = [self._tokenize_url] if self._tokenize_url else [f"{root}/extras/tokenize", f"{root}/tokenize"]
        for url in candidates:
            body = json.dumps({"input": text, "prompt": text, "model": self.name}).encode()
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    ids = json.loads(r.read()).get("tokens")
            except (OSError, ValueError):
                continue
            if isinstance(ids, list):
                self._tokenize_url = url
                return [int(i) for i in ids]
        if not self._tokenize_url:  # a failed probe: the server has no such endpoint (a known one may fail once)
            self._tokenize_url = None
        return None

    def encode_pair(self, prompt: str, continuation: str) -> tuple[list[int], list[int]] | None:
        prompt_ids = self._tokenize(split_pair(prompt, continuation)[0])  # also probes for the endpoint
        if prompt_ids is None:
            return None
        return encode_pair(lambda t: self._tokenize(t) or [], prompt, continuation, prompt_ids)

    def _continuation_tokens(self, prompt: str, continuation: str) -> int:
        """How many tokens a continuation adds to its prompt (for ``Usage``; cached per continuation
        text: label words tokenise the same after any prompt that does not end in whitespace)."""
        if continuation not in self._cont_tokens:
            pair = self.encode_pair(prompt, continuation)
            self._cont_tokens[continuation] = len(pair[1]) if pair else max(1, len(continuation.split()))
        return self._cont_tokens[continuation]

    # ----- capability detection -----
    def _detect_score_method(self, wanted: str) -> str:
        if wanted == "none":
            return "none"
        probe = "The capital of France is"
        top = self._top_k([probe], 5)[0][0] if wanted in ("auto", "top_k", "echo") else {}
        if not top:
            if wanted != "auto":
                raise UserError(f"model {self.name!r}: score: {wanted}, but the server at {self.base_url} returns no logprobs")
            return "none"
        if wanted == "top_k":
            return "top_k"
        token, lp = max(top.items(), key=lambda kv: kv[1])
        echoed = self._echo([probe + token])[0]
        last = echoed[-1] if echoed else None
        ok = last is not None and last[0] == token and last[1] is not None and abs(last[1] - lp) < 0.05
        if ok:
            return "echo"
        if wanted == "echo":
            got = "none" if not echoed or echoed[-1][1] is None else f"{echoed[-1][1]:.3f} for {echoed[-1][0]!r}"
            raise UserError(f"model {self.name!r}: score: echo, but the server's echoed log-probs disagree with its "
                            f"next-token log-probs ({lp:.3f} for {token!r} vs {got}); use score: top_k")
        return "top_k"

    def _wide_top_k(self) -> int:
        """The top-k to ask again for a prompt whose label words are not among the ``top_logprobs``
        listed: the whole vocabulary (``WIDE_TOP_K``) where the server lists that many — llama.cpp's
        does, so its label scores are the model's own, not a floor — else 0 (OpenAI and a stock
        ``vllm serve`` refuse more than 5 / 20: those labels keep the floor)."""
        try:
            top, _ = self._top_k(["The capital of France is"], WIDE_TOP_K)[0]
        except UserError:  # BackendError included: the server refused the request
            return 0
        return WIDE_TOP_K if len(top) > self.top_logprobs else 0

    # ----- requests -----
    def _top_k(self, prompts: Sequence[str], k: int) -> list[tuple[dict[str, float], int]]:
        """Per prompt: the next-token top-k and the prompt's token count (the server's usage)."""
        def one(prompt: str) -> tuple[dict[str, float], int]:
            r = self._request("completions", model=self.name, prompt=prompt, max_tokens=1, temperature=0, logprobs=k)
            lp = r.choices[0].logprobs
            return (dict(lp.top_logprobs[0]) if lp and lp.top_logprobs else {}), getattr(r.usage, "prompt_tokens", 0) or 0

        return self._map(one, prompts)

    def _echo(self, texts: Sequence[str]) -> list[list[tuple[str, float | None, int]] | None]:
        """Per text: (token, logprob, char offset) for every token the server echoes (None: no echo)."""
        def one(text: str) -> list[tuple[str, float | None, int]] | None:
            r = self._request("completions", model=self.name, prompt=text, max_tokens=1, temperature=0, logprobs=1, echo=True)
            lp = r.choices[0].logprobs
            if not lp or not lp.token_logprobs or not lp.text_offset:
                return None
            rows = list(zip(lp.tokens, lp.token_logprobs, lp.text_offset))
            return [row for row in rows if row[2] < len(text)]  # drop the generated token

        return self._map(one, texts)

    # ----- black -----
    def generate(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        """Raw text to the server's end token or ``max_new_tokens`` (no server-side stop: see the module doc)."""
        sampling = {"max_tokens": config.max_new_tokens, "temperature": config.temperature, "top_p": config.top_p}

        def one(item: tuple[int, str]) -> str:
            i, prompt = item
            # one seed per request (its own stream): the same seed on equal prompts would return equal samples
            kw = {**sampling, "seed": config.stream(i, SEED_BOUND)}
            if self.chat:
                r = self._request("chat", model=self.name, messages=[{"role": "user", "content": prompt}], **kw)
                text = r.choices[0].message.content or ""
            else:
                r = self._request("completions", model=self.name, prompt=prompt, **kw)
                text = r.choices[0].text or ""
            self._count(1, getattr(r.usage, "prompt_tokens", 0) or 0, getattr(r.usage, "completion_tokens", 0) or 0)
            return text

        return self._map(one, list(enumerate(prompts)))

    # ----- grey -----
    def _grey(self) -> None:
        if self.score_method == "none":
            raise AccessError(f"model {self.name!r} at {self.base_url} returns no logprobs: black access only")

    def next_token_logprobs(self, prompts: list[str], k: int) -> list[dict[str, float]]:
        """The top ``k`` next tokens, ``k`` capped at the ``top_logprobs`` the server lists (a stock
        ``vllm serve`` lists 20: ``top_logprobs: 20`` in its spec)."""
        self._grey()
        out = []
        k = min(k, self.top_logprobs)
        for top, n_prompt in self._top_k(prompts, max(k, 1)):
            self._count(1, n_prompt)
            out.append(dict(sorted(top.items(), key=lambda kv: -kv[1])[:k]))
        return out

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """Each continuation after its prompt (``tokens.split_pair`` first: a prompt's trailing
        whitespace belongs to the continuation, as in every backend). Echo: one request per label,
        the continuation = the echoed tokens that end after the prompt; a request without echoed
        log-probs is an error, never a score. Top-k: one request per prompt."""
        self._grey()
        if self.score_method == "echo":
            pairs = [split_pair(p, c) for p, cs in zip(prompts, continuations) for c in cs]
            echoed = self._echo([p + c for p, c in pairs])
            flat = iter(self._continuation_score(p, c, rows) for (p, c), rows in zip(pairs, echoed))
            out = []
            for p, cs in zip(prompts, continuations):
                row = [next(flat) for _ in cs]
                self._count(1, row[0][1] + sum(n for _, _, n in row) if row else 0)
                out.append([v for v, _, _ in row])
            return out
        stripped = [[split_pair(p, c) for c in cs] for p, cs in zip(prompts, continuations)]
        tops = self._top_k([split_pair(p, "")[0] for p in prompts], self.top_logprobs)
        unlisted = [i for i, ((top, _), pairs) in enumerate(zip(tops, stripped)) if not all(_listed(top, c) for _, c in pairs)]
        if self.wide_top_k and unlisted:  # asked again, the whole vocabulary listed: a billed request, still one call a prompt
            for i, wide in zip(unlisted, self._top_k([split_pair(prompts[i], "")[0] for i in unlisted], self.wide_top_k)):
                tops[i] = wide
            with self._lock:
                self.prompts_widened += len(unlisted)
        out = []
        for (top, n_prompt), p, pairs in zip(tops, prompts, stripped):
            self._count(1, n_prompt + sum(self._continuation_tokens(p, c) for _, c in pairs))
            out.append(self._from_top_k(top, [c for _, c in pairs]))
        return out

    def _continuation_score(self, prompt: str, cont: str, rows: list[tuple[str, float | None, int]] | None) -> tuple[float, int, int]:
        """(sum of the continuation's echoed log-probs, prompt tokens, continuation tokens)."""
        if rows is None:
            raise BackendError(f"server {self.base_url} returned no echoed log-probs for a scoring request "
                               f"({cont!r} after a prompt of {len(prompt)} characters); it cannot score at grey access")
        mine = [(tok, lp) for tok, lp, off in rows if off + len(tok) > len(prompt)]
        if not mine or any(lp is None for _, lp in mine):
            raise BackendError(f"server {self.base_url} echoed no log-prob for the continuation {cont!r}; "
                               f"it cannot score at grey access")
        return float(sum(lp for _, lp in mine if lp is not None)), len(rows) - len(mine), len(mine)

    def _from_top_k(self, top: dict[str, float], conts: list[str]) -> list[float]:
        """Each continuation's score from one next-token top-k: the log-prob of the longest listed
        token that starts it and carries some of its text (a bare " " starts every label and must not
        stand in for them); labels with no such token get a floor below every listed one."""
        floor = (min(top.values()) if top else 0.0) - math.log(2)
        scores = []
        for c in conts:
            starts = [(len(tok), lp) for tok, lp in top.items() if _starts(tok, c)]
            if not starts:
                with self._lock:
                    self.labels_missing += 1
            scores.append(max(starts)[1] if starts else floor)
        return scores

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", **self.settings, "labels_missing_from_top_k": self.labels_missing,
                "prompts_widened": self.prompts_widened,
                "billed": {"requests": self.billed.model_calls, "prompt_tokens": self.billed.prompt_tokens,
                           "completion_tokens": self.billed.completion_tokens,
                           "cost": money(self.price, self.billed.prompt_tokens, self.billed.completion_tokens)},
                "price": self.price, "cache_hits": self.cache_hits, "retries": self.retries,
                "retry_wait_s": round(self.retry_wait_s, 3), "usage_missing": self.usage_missing,
                "server_model": self.identity.get("server_model")}

    def spend(self) -> tuple[Usage, dict[str, Any] | None]:
        """What this model billed so far and at what price (the cell's money ledger)."""
        return self.billed, self.price


def _starts(token: str, continuation: str) -> bool:
    """A listed token that starts the continuation and carries some of its text (a bare " " does not)."""
    return bool(token.strip()) and continuation.startswith(token)


def _listed(top: dict[str, float], continuation: str) -> bool:
    return any(_starts(tok, continuation) for tok in top)


def _backoff(seconds: float) -> None:
    """The wait before a retry (one place, so a test can skip the waiting it has already measured)."""
    time.sleep(seconds)


def _duration_s(text: str) -> float:
    """'1s', '6m0s', '250ms', '20' as seconds (OpenAI's reset headers); 0 when unreadable."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(num) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    return total


_SLOT_DIR = Path(tempfile.gettempdir()) / "boxbench-slots"


@contextlib.contextmanager
def slot(base_url: str, n: int) -> Iterator[None]:
    """One of ``n`` request slots of ``base_url``, shared by every process on this machine (file
    locks): the cells that share a server keep at most ``n`` requests in flight between them."""
    import fcntl

    folder = _SLOT_DIR / hashlib.sha256(base_url.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for i in range(n):
            f = open(folder / f"slot{i}", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            return
        time.sleep(0.005)
