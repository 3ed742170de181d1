"""In-process transformers backend (white access): loading (hub names, folders, GGUF files, offline
aliases: ``weights``), batching and the shared-prefix cache (planned by ``batching``), decoding and
scoring. Torch helpers it shares with training live in ``torch_utils``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from boxbench.backends import request_cache
from boxbench.backends.batching import plan_batches, plan_prefixes
from boxbench.backends.torch_utils import cache_kwarg, cache_tensors, model_inputs, resolve_device, resolve_dtype, skinny_linears
from boxbench.backends.weights import ALIASES, gguf_cache_folder, resolve_source, check_alias, load_gguf_cached
from boxbench.core.backend import CHAT_DEFAULT, Access, Backend, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.tokens import answer_ended, encode_pair, split_pair, vocabulary_fingerprint
from boxbench.core.versions import versions


@dataclass
class _Prefix:
    """A token prefix some rows of a call start with, and its keys and values (batch 1) per layer."""

    ids: list[int]
    kv: list[tuple[Any, Any]]


class HFBackend(Backend):
    """A transformers causal LM in this process; gives up to white access."""

    name = "hf"
    max_access = Access.white

    MIN_PREFIX = 16  # shared prompt prefixes shorter than this are not worth a cache

    def __init__(self, model: Any, tokenizer: Any, name: str, *, batch_size: int = 16, settings: dict[str, Any] | None = None,
                 prefix_cache: bool = True, chat: bool = CHAT_DEFAULT) -> None:
        super().__init__()
        self.name = name
        self._model = model
        self._tok = tokenizer
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        if chat and not getattr(tokenizer, "chat_template", None):
            raise UserError(f"model {name!r}: chat: true, but its tokenizer has no chat template; set chat: false")
        self.chat = chat
        self.settings = {"batch_size": batch_size, "padding_side": "left", "prefix_cache": prefix_cache, "chat": chat,
                         **(settings or {})}
        # soft prompt (n x hidden) placed before every input: set by a prompt-tuning artifact
        self.prefix_embeds: Any = None
        self.prefix_after_bos = False  # score_with_embeddings puts its prefix after BOS (BBT's placement)
        self.cache = False  # the request cache, an option in-process (``cache: true`` in the model spec)
        self.cache_hits = 0
        self._handed_out = False  # set once the module is handed out at white access: it may change, no caching

    OPTIONS = {"chat": bool, "quantize": str, "cache": bool}
    QUANTIZE = ("none", "4bit", "int8")

    @classmethod
    def spec_access(cls, options: dict[str, Any]) -> Access:
        """int8 weights take no gradients: such a model gives grey access at most."""
        return Access.grey if options.get("quantize") == "int8" else cls.max_access

    # ----- construction -----
    @classmethod
    def check_spec(cls, model: str, options: dict[str, Any], where: str) -> None:
        super().check_spec(model, options, where)
        if options.get("quantize", "none") not in cls.QUANTIZE:
            raise UserError(f"{where}.quantize: {options['quantize']!r} is not supported; use none, 4bit (QLoRA's NF4, CUDA only) "
                            f"or int8 (the fast CPU path, grey access at most)")
        if model in ALIASES:
            check_alias(model)
        elif not model.startswith("hf:") and not Path(model).exists():
            raise UserError(
                f"{where}: model {model!r} is not an alias, a hub name (hf:ORG/NAME) or an existing path; "
                f"aliases: {', '.join(ALIASES)}"
            )

    @classmethod
    def load(cls, spec: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 16, use_cache: bool = True,
             prefix_cache: bool = True, chat: bool = CHAT_DEFAULT, quantize: str = "none", cache: bool = False) -> "HFBackend":
        """Load an alias (``smollm2-135m``), a hub name (``hf:ORG/NAME``), a folder, or a ``.gguf`` file.

        ``quantize: 4bit``: weights in NF4 with double quantisation and bf16 compute through
        bitsandbytes, QLoRA's setting (Dettmers et al., 2023); CUDA only, refused elsewhere in one line.
        ``quantize: int8``: the fast CPU path — the linear layers quantized dynamically (int8 weights
        per output channel, activations per batch; the output head and MLP output projections stay
        fp32, see ``_int8``), for who chooses speed over fp32 identity; no gradients, so grey access
        at most. ``device: auto`` then means the CPU (so a suite's int8 proposer still loads on a GPU
        machine); any other device is refused before anything is loaded.

        ``chat``: send ``generate`` prompts as one user turn through the tokenizer's chat template
        (default off: measured on SST-2 with SmolLM2-135M-Instruct, the plain prompt answered better —
        0.68 vs 0.47 zero-shot on 100 test examples, the chat turn said "positive" to nearly everything).
        Scoring always reads raw text.

        ``cache``: serve repeated calls (greedy or seeded generation, scoring, top-k) from the on-disk
        request cache (``request_cache``), keyed by the model's identity (spec, dtype, device,
        quantization, vocabulary, torch and transformers versions) and the call — only while the
        model is as loaded: once it is handed out at white access (a method may change its
        weights) or carries a continuous prompt, nothing is read from or written to the cache.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = "cpu" if quantize == "int8" and device == "auto" else resolve_device(device)
        if quantize == "int8" and dev != "cpu":
            raise UserError(f"model {spec!r}: quantize: int8 is the CPU fast path, this cell runs on {dev}; "
                            f"drop quantize (bf16 on a GPU is faster) or set device: cpu")
        torch_dtype = resolve_dtype(dtype, dev)
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        gguf, name = resolve_source(spec)
        if quantize == "4bit":
            tok, model = cls._load_4bit(spec, gguf, name, dev)
            info = {"load_source": "hub" if spec.startswith("hf:") else "folder", "quantize": "4bit-nf4"}
        elif gguf is not None:
            tok, model, info = load_gguf_cached(gguf, torch_dtype, use_cache)
        else:
            tok = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
            info = {"load_source": "hub" if spec.startswith("hf:") else "folder"}
        info["n_params"] = int(model.num_parameters())  # tied weights once, 4-bit weights unpacked; before int8 packs them
        if quantize != "4bit":  # a bitsandbytes model is placed at load and cannot be moved
            model.to(dev)
        if quantize == "int8":
            model = cls._int8(model)
            info["quantize"] = "int8-dynamic"
        if dev == "cpu":
            skinny_linears(model)
        model.eval()
        settings = {"device": dev, "dtype": str(torch_dtype).removeprefix("torch."), **info,
                    "load_wall_s": round(time.perf_counter() - t0, 3)}
        backend = cls(model, tok, spec, batch_size=batch_size, settings=settings, prefix_cache=prefix_cache, chat=chat)
        backend.max_access = cls.spec_access({"quantize": quantize})
        backend.cache = cache
        return backend

    # ----- the request cache (an option in-process) -----
    def view(self, access: Any) -> Any:
        view = super().view(access)
        if view.access == Access.white:
            self._handed_out = True
        return view

    def _cache(self) -> Any:
        """The request cache while this model may use it (see ``load``), else None."""
        if not self.cache or self._handed_out or self.prefix_embeds is not None:
            return None
        return request_cache.shared()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "cache": self.cache, **({"cache_hits": self.cache_hits} if self.cache else {})}

    def _identity(self) -> dict[str, Any]:
        """What the cache keys this model by (computed once: the model as loaded does not change)."""
        if getattr(self, "_ident", None) is None:
            self._ident = self._identity_fresh()
        return self._ident

    def _identity_fresh(self) -> dict[str, Any]:
        v = versions()
        return {"backend": "hf", "model": self.name, "chat": self.chat, "vocabulary": self.vocabulary_id(),
                **{k: self.settings.get(k) for k in ("dtype", "device", "quantize", "n_params")},
                "torch": v.get("torch"), "transformers": v.get("transformers")}

    def _cached(self, kind: str, items: list[Any], fresh: Callable[[list[int]], list[Any]]) -> list[Any]:
        """``fresh(indices)`` for the items the cache does not hold (all of them without a cache);
        each value is (result, usage: calls, prompt, completion) and its usage is counted either way."""
        cache = self._cache()
        ident = self._identity() if cache else {}
        keys = [request_cache.request_key(ident, kind, {"item": it}) for it in items] if cache else []
        found: list[Any] = [cache.get(k) for k in keys] if cache else [None] * len(items)
        missing = [i for i, f in enumerate(found) if f is None]
        for i, value in zip(missing, fresh(missing) if missing else []):
            found[i] = value
            if cache:
                cache.put(keys[i], value)
        self.cache_hits += len(items) - len(missing)
        for value in found:
            self.usage.add(*value[1])
        return [value[0] for value in found]

    @staticmethod
    def _int8(model: Any) -> Any:
        """The linear layers quantized dynamically to int8 (per-channel weights, activations per
        batch), CPU only. The output head and the MLPs' output projections stay fp32: measured with
        SmolLM2-135M zero-shot on 128 SST-2 test examples, quantizing those too fell from 0.773 to
        0.586 accuracy (the activations entering a down projection have outliers a per-batch scale
        crushes); without them 0.734, 1.46x faster than fp32."""
        import warnings

        import torch
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        keep = ("lm_head", "down_proj", "fc2", "dense_4h_to_h")  # output head, MLP output projections
        names = {n: per_channel_dynamic_qconfig for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and not n.endswith(keep)}
        with warnings.catch_warnings():  # torch.ao's eager quantization announces its move to torchao
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)  # no second copy of the weights

    @staticmethod
    def _load_4bit(spec: str, gguf: Path | None, name: str, dev: str) -> tuple[Any, Any]:
        """QLoRA's base model: NF4 weights, double quantisation, bf16 compute (bitsandbytes, CUDA)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        if not dev.startswith("cuda"):
            raise UserError(f"model {spec!r}: quantize: 4bit (QLoRA) needs a CUDA device, this cell runs on {dev}; "
                            f"drop quantize (plain LoRA) or run the suite on a GPU")
        if gguf is not None:
            raise UserError(f"model {spec!r}: quantize: 4bit takes a hub name or a folder of safetensors, not a GGUF file")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise UserError("quantize: 4bit needs bitsandbytes; pip install bitsandbytes") from None
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(name, quantization_config=config, device_map={"": dev})
        return AutoTokenizer.from_pretrained(name), model

    @staticmethod
    def load_tokenizer(spec: str) -> Any:
        """Only the tokenizer of a model spec (from the dequantised cache when there: about a second)."""
        from transformers import AutoTokenizer

        gguf, name = resolve_source(spec)
        if gguf is None:
            return AutoTokenizer.from_pretrained(name)
        folder = gguf_cache_folder(gguf)
        if (folder / "done").exists():
            return AutoTokenizer.from_pretrained(folder)
        return load_gguf_cached(gguf, None)[0]  # converting a GGUF tokenizer is slow: fill the cache once

    def exact_twin(self) -> dict[str, Any] | None:
        return {"quantize": "none"} if self.settings.get("quantize") == "int8-dynamic" else None

    @property
    def device(self) -> Any:
        return next(self._model.parameters()).device

    @property
    def module(self) -> Any:
        return self._model

    @module.setter
    def module(self, value: Any) -> None:
        self._model = value

    @property
    def tokenizer(self) -> Any:
        return self._tok

    # ----- helpers -----
    def _encode(self, text: str, special: bool) -> list[int]:
        return self._tok(text, add_special_tokens=special).input_ids

    BATCH_COST = 64  # a forward pass's fixed cost in padded-token units (measured: batches of 8 vs 16 vs 4)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped into batches (``batching.plan_batches``: longest first, padding + per-batch cost fewest)."""
        return plan_batches(lengths, self.batch_size, self.BATCH_COST)

    def _left_pad(self, rows: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(r) for r in rows)
        pad = self._tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return ids, mask

    def model_inputs(self, ids: Any, mask: Any) -> dict[str, Any]:
        after = self._tok.bos_token_id if self.prefix_after_bos else None
        return model_inputs(self._model, ids, mask, self.prefix_embeds, after)

    def _batch_inputs(self, rows: list[list[int]], prefixes: list["_Prefix | None"] | None = None) -> dict[str, Any]:
        """Model inputs for left-padded ``rows``. With ``prefixes`` each row is the part after its
        own cached prefix (``_prefixes``; None: none): the batch is ``[pads, prefix, pads, row]``,
        each row's prefix keys and values left-padded to the longest, every pad masked and position
        ids counted over unmasked entries — the same computation as without the cache."""
        import torch

        ids, mask = self._left_pad(rows)
        width = max((len(p.ids) for p in prefixes or () if p is not None), default=0)
        if not width or prefixes is None:
            return self.model_inputs(ids, mask)
        p_mask = torch.tensor([[0] * (width - len(p.ids if p else ())) + [1] * len(p.ids if p else ()) for p in prefixes],
                              dtype=mask.dtype, device=mask.device)
        full = torch.cat([p_mask, mask], 1)
        return {"input_ids": ids, "attention_mask": full, "position_ids": (full.cumsum(-1) - 1)[:, width:].clamp(min=0),
                self.cache_kwarg(): self._batch_cache(prefixes, width)}

    def _batch_cache(self, prefixes: list["_Prefix | None"], width: int) -> Any:
        """One KV cache for a batch: each row's prefix keys/values, left-padded with zeros to ``width``."""
        import torch
        from transformers import DynamicCache

        some = next(p for p in prefixes if p is not None)
        shared = all(p is some for p in prefixes)  # one prefix for the whole batch: repeat it
        layers = []
        for layer, (k0, v0) in enumerate(some.kv):
            if shared:
                layers.append((k0.expand(len(prefixes), -1, -1, -1).contiguous(), v0.expand(len(prefixes), -1, -1, -1).contiguous()))
                continue
            ks, vs = [], []
            for p in prefixes:
                k, v = p.kv[layer] if p is not None else (k0[..., :0, :], v0[..., :0, :])
                pad = width - k.shape[-2]
                ks.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
                vs.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
            layers.append((torch.cat(ks), torch.cat(vs)))
        return DynamicCache(layers, config=self._base_config())

    def _forward(self, inputs: dict[str, Any], keep: int, use_cache: bool | None = None) -> Any:
        """One forward pass projecting only the last ``keep`` positions to the vocabulary
        (``use_cache``: return the KV cache; default only when a cache was passed in)."""
        if use_cache is None:
            use_cache = any(k in inputs for k in ("cache", "past_key_values"))
        try:
            return self._model(**inputs, logits_to_keep=keep, use_cache=use_cache)
        except TypeError:  # architectures without logits_to_keep
            return self._model(**inputs, use_cache=use_cache)

    def _forward_last(self, rows: list[list[int]], keep: int, prefixes: list["_Prefix | None"] | None = None) -> Any:
        """Log-softmax over the vocabulary at the last ``keep`` positions of each left-padded row."""
        import torch

        with torch.inference_mode():
            logits = self._forward(self._batch_inputs(rows, prefixes), keep).logits[:, -keep:]
        return torch.log_softmax(logits.float(), dim=-1)

    def _prefixes(self, rows: list[list[int]], need_keep: list[int]) -> list["_Prefix | None"]:
        """Per row, the cached prefix it starts with, or None: the prefix tree ``batching.plan_prefixes``
        plans (rows sharing ``MIN_PREFIX`` or more tokens), each node's keys and values computed once,
        from its parent's. All None when caching is off (or cannot be exact)."""
        if not self._cacheable(rows):
            return [None] * len(rows)
        done: dict[int, _Prefix] = {}

        def computed(node: Any) -> "_Prefix | None":
            if node is None:
                return None
            if id(node) not in done:
                done[id(node)] = self._extend(computed(node.parent), list(node.ids))
            return done[id(node)]

        return [computed(node) for node in plan_prefixes(rows, need_keep, self.MIN_PREFIX)]

    def _cacheable(self, rows: list[list[int]]) -> bool:
        """Whether prefix keys and values may be computed apart and reused exactly."""
        if not self.prefix_cache or self.prefix_embeds is not None or self._carries_prompt() or len(rows) < 2:
            return False
        window = getattr(self._base_config(), "sliding_window", None)  # a sliding layer keeps only its window
        return not window or max(len(r) for r in rows) < window

    def _extend(self, parent: "_Prefix | None", ids: list[int]) -> "_Prefix":
        """The prefix ``ids`` with its keys and values, computed after ``parent``'s (reused)."""
        import torch

        start = len(parent.ids) if parent else 0
        inputs: dict[str, Any] = {"input_ids": torch.tensor([ids[start:]], device=self.device),
                                  "position_ids": torch.arange(start, len(ids), device=self.device)[None]}
        if parent is not None:
            inputs[self.cache_kwarg()] = self._batch_cache([parent], start)
        with torch.inference_mode():
            out = self._model(**inputs, use_cache=True, logits_to_keep=1)
        return _Prefix(ids, cache_tensors(getattr(out, "cache", None) or out.past_key_values))

    def _base_config(self) -> Any:
        model = self._model.get_base_model() if hasattr(self._model, "get_base_model") else self._model
        return model.config

    def _n_soft(self) -> int:
        """Positions of a soft prompt in front of every input (read at every call, so counted as prompt tokens)."""
        return 0 if self.prefix_embeds is None else int(self.prefix_embeds.shape[0])

    def _carries_prompt(self) -> bool:
        """True when the module puts its own learned prompt or prefix in front (a peft prompt-learning
        adapter, e.g. prefix tuning): no shared-prefix cache then (its keys and values would lack the
        learned prefix) and no incremental decoding (peft inserts the prefix again at every call)."""
        return bool(getattr(getattr(self._model, "active_peft_config", None), "is_prompt_learning", False))

    def cache_kwarg(self) -> str:
        model = self._model.get_base_model() if hasattr(self._model, "get_base_model") else self._model
        return cache_kwarg(type(model))

    # ----- black -----
    def vocabulary_id(self) -> str | None:
        if getattr(self, "_vocab_id", None) is None:  # computed once per backend (hashes the whole vocabulary)
            self._vocab_id = vocabulary_fingerprint(self._tok)
        return self._vocab_id

    def end_token_ids(self) -> set[int]:
        """Every token that ends a generation: the tokenizer's EOS and all of the model's
        ``generation_config.eos_token_id`` (a list on models with several, e.g. Qwen's <|im_end|>)."""
        ids: set[int] = set()
        for value in (self._tok.eos_token_id, getattr(getattr(self._model, "generation_config", None), "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def chat_text(self, prompt: str) -> str:
        """``prompt`` as one user turn, rendered by the chat template up to the assistant's answer."""
        return self._tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        """Batched decoding (greedy, or sampled with temperature/top-p) with a KV cache; prefixes that
        prompts share (instruction, demonstrations) are computed once, as in ``score``. A row stops
        at an end token, at ``max_new_tokens``, or once its text holds a stop string after some
        content (``tokens.answer_ended``: the view's cut is then decided)."""
        if config.temperature > 0 and config.seed is None:  # not repeatable: never cached
            return [v[0] for v in self._generate(prompts, list(range(len(prompts))), config, count=True)]
        conf = [config.max_new_tokens, config.temperature, config.top_p, config.stop, config.seed]
        return self._cached("generate", [[p, i if config.seed is not None else 0, conf] for i, p in enumerate(prompts)],
                            lambda idx: self._generate([prompts[i] for i in idx], idx, config))

    def _generate(self, prompts: list[str], index: list[int], config: GenerationConfig, count: bool = False) -> list[Any]:
        """(text, usage) per prompt; ``index``: each prompt's place in the caller's list (its sampling
        stream: a sample does not depend on batching or caching)."""
        if self.chat:
            encoded = [self._encode(self.chat_text(p), False) for p in prompts]
        else:
            encoded = [self._encode(p, True) for p in prompts]
        outputs: list[Any] = [None] * len(prompts)
        prefixes = self._prefixes(encoded, [1] * len(encoded))
        gens: list[Any] = [None] * len(prompts)
        if config.seed is not None:
            import torch

            gens = [torch.Generator(device="cpu").manual_seed(config.stream(i)) for i in index]
        rest = [e[len(p.ids) if p else 0 :] for e, p in zip(encoded, prefixes)]
        for batch in self._batches([len(r) for r in rest]):
            new = self._decode([rest[i] for i in batch], [prefixes[i] for i in batch], config, [gens[i] for i in batch])
            for toks, i in zip(new, batch):
                usage = [1, len(encoded[i]) + self._n_soft(), len(toks)]
                outputs[i] = [self._tok.decode(toks, skip_special_tokens=True), usage]
                if count:
                    self.usage.add(*usage)
        return outputs

    def _decode(self, rows: list[list[int]], prefixes: list["_Prefix | None"], config: GenerationConfig,
                gens: list[Any]) -> list[list[int]]:
        """New token ids per row until an end token, max_new_tokens or an ended answer (see ``generate``)."""
        import torch

        inputs = self._batch_inputs(rows, prefixes)
        mask, last_pos = inputs["attention_mask"], inputs["position_ids"][:, -1]
        eos = self.end_token_ids()
        own = self._carries_prompt()
        new: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        with torch.inference_mode():
            for _ in range(config.max_new_tokens):
                out = self._forward(inputs, 1, use_cache=not own)
                logits = out.logits[:, -1].float()
                if config.temperature > 0:
                    probs = torch.softmax(logits / config.temperature, dim=-1)
                    if config.top_p < 1.0:
                        sorted_p, order = probs.sort(dim=-1, descending=True)
                        drop = sorted_p.cumsum(-1) - sorted_p > config.top_p  # keep the smallest set reaching top_p
                        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
                    nxt = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs.cpu(), gens)]).to(logits.device)
                else:
                    nxt = logits.argmax(-1)
                for i, t in enumerate(nxt.tolist()):
                    if done[i]:
                        continue
                    if t in eos:
                        done[i] = True
                        continue
                    new[i].append(t)
                    done[i] = bool(config.stop) and answer_ended(self._tok.decode(new[i], skip_special_tokens=True), config.stop)
                if all(done):
                    break
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                last_pos = last_pos + 1
                if own:  # the whole sequence again, no cache (see _carries_prompt)
                    inputs = self.model_inputs(torch.cat([inputs["input_ids"], nxt[:, None]], 1), mask)
                    continue
                inputs = {"input_ids": nxt[:, None], "attention_mask": mask, "position_ids": last_pos[:, None],
                          self.cache_kwarg(): getattr(out, "cache", None) or out.past_key_values}
        return new

    # ----- grey -----
    def next_token_logprobs(self, prompts: list[str], k: int) -> list[dict[str, float]]:
        return self._cached("top_k", [[p, k] for p in prompts], lambda idx: self._top_k([prompts[i] for i in idx], k))

    def _top_k(self, prompts: list[str], k: int) -> list[Any]:
        import torch

        encoded = [self._encode(p, True) for p in prompts]
        result: list[Any] = [None for _ in prompts]
        for batch in self._batches([len(e) for e in encoded]):
            lp = self._forward_last([encoded[i] for i in batch], 1)[:, -1]
            top = torch.topk(lp, k, dim=-1)
            for row, i in enumerate(batch):
                result[i] = [{self._tok.decode([t]): float(v) for v, t in zip(top.values[row].tolist(), top.indices[row].tolist())},
                             [1, len(encoded[i]) + self._n_soft(), 0]]
        return result

    def input_embeddings(self, text: str | Sequence[int]) -> Any:
        """The input embeddings (tokens × width, float32, CPU) the model reads for ``text`` (or for
        these token ids)."""
        import torch

        n = self._model.get_input_embeddings().weight.shape[0]
        if not isinstance(text, str) and any(not 0 <= int(i) < n for i in text):
            raise UserError(f"input_embeddings: token ids must lie in [0, {n}) for {self.name!r}")
        ids = torch.tensor([self._encode(text, False) if isinstance(text, str) else [int(i) for i in text]], device=self.device)
        with torch.inference_mode():
            return self._model.get_input_embeddings()(ids)[0].float().cpu()

    def set_input_prefix(self, embeds: Any, after_bos: bool = False) -> None:
        """A continuous prompt in front of every later input (``Backend.set_input_prefix``)."""
        self.prefix_embeds, self.prefix_after_bos = embeds, after_bos

    def score_with_embeddings(self, prefix: Any, prompts: list[str], continuations: list[list[str]],
                              after_bos: bool = True) -> list[list[float]]:
        """``score`` with ``prefix`` (n × width input embeddings) in front of every prompt."""
        if self.prefix_embeds is not None:
            raise UserError(f"model {self.name!r} already carries a soft prompt; load it fresh to score another in front")
        self.prefix_embeds, self.prefix_after_bos = prefix, after_bos
        try:
            return self.score(prompts, continuations)
        finally:
            self.prefix_embeds, self.prefix_after_bos = None, False

    def encode_pair(self, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
        """The token ids this backend scores for ``continuation`` after ``prompt`` (the one rule)."""
        return encode_pair(lambda t: self._encode(t, True), prompt, continuation)

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """Sum log-prob of each continuation after its prompt (``_score``; through the request cache
        when it is on)."""
        return self._cached("score", [[p, list(cs)] for p, cs in zip(prompts, continuations)],
                            lambda idx: self._score([prompts[i] for i in idx], [continuations[i] for i in idx]))

    def _score(self, prompts: list[str], continuations: list[list[str]]) -> list[Any]:
        """(scores, usage) per prompt: the sum log-prob of each continuation, all continuations of a
        prompt from one forward row.

        Each continuation is encoded together with its prompt (``tokens.encode_pair``); continuation c
        (tokens c1..cm after prompt ids p) needs the row p+c1..c(m-1); rows that are prefixes of
        another row are merged, so single-token label words cost one row per prompt and multi-token
        ones share it where they can. Rows are left-padded (position ids from the mask) and only the
        positions that are read are projected to the vocabulary.
        """
        rows: list[list[int]] = []
        reads: list[list[tuple[int, int, list[int]]]] = []  # per prompt: (row, offset-from-end, cont ids)
        usages: list[list[int]] = []
        for prompt, conts in zip(prompts, continuations):
            p_ids = self._encode(split_pair(prompt, "")[0], True)
            pairs = [encode_pair(lambda t: self._encode(t, True), prompt, c, p_ids) for c in conts]
            needed = sorted({tuple(p + c[:-1]) for p, c in pairs}, key=len, reverse=True)
            kept: list[tuple[int, ...]] = []
            for cand in needed:
                if not any(k[: len(cand)] == cand for k in kept):
                    kept.append(cand)
            base = len(rows)
            rows.extend(list(k) for k in kept)
            mine = []
            for p, c in pairs:
                want = tuple(p + c[:-1])
                r = next(j for j, k in enumerate(kept) if k[: len(want)] == want)
                # position (from the row's end) whose logits predict c[0]
                mine.append((base + r, len(kept[r]) - (len(p) - 1), c))
            reads.append(mine)
            usages.append([1, self._n_soft() + len(p_ids) + sum(len(c) for _, c in pairs), 0])
        need_keep = [0] * len(rows)
        by_row: dict[int, list[tuple[int, int, int, list[int]]]] = {}  # row -> (prompt, cont, off, ids)
        for pi, per in enumerate(reads):
            for ci, (r, off, c) in enumerate(per):
                need_keep[r] = max(need_keep[r], off)
                by_row.setdefault(r, []).append((pi, ci, off, c))
        scores: list[list[float]] = [[0.0] * len(per) for per in reads]
        prefixes = self._prefixes(rows, need_keep)
        rest = [r[len(p.ids) if p else 0 :] for r, p in zip(rows, prefixes)]
        for batch in self._batches([len(r) for r in rest]):
            keep = max(need_keep[i] for i in batch)
            lp = self._forward_last([rest[i] for i in batch], keep, [prefixes[i] for i in batch])
            for j, i in enumerate(batch):  # read the continuations now: keep no vocab-sized rows around
                for pi, ci, off, c in by_row[i]:
                    start = keep - off  # index of the position predicting c[0]
                    scores[pi][ci] = float(sum(lp[j, start + t, tok] for t, tok in enumerate(c)))
        return [[sc, u] for sc, u in zip(scores, usages)]
