"""Torch helpers the backend and the training loop share: device and dtype, a model's forward
inputs for left-padded rows (with a continuous prompt in front), the CPU few-row product patch, and
transformers' KV-cache names across versions."""

from __future__ import annotations

from typing import Any

from boxbench.core.errors import UserError


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise UserError(f"dtype: {dtype!r} is not supported; use auto, float32, bfloat16 or float16") from None


def model_inputs(model: Any, ids: Any, mask: Any, prefix_embeds: Any = None, after_bos: int | None = None) -> dict[str, Any]:
    """Forward kwargs for padded ``ids``: position ids counted over unmasked tokens (so left padding
    is exact), and a soft prompt (n x hidden), if given, put in front as embeddings. ``[soft, pads,
    tokens]`` with the pads masked is the same computation as ``[pads, soft, tokens]``.

    ``after_bos`` (the BOS token id): the soft prompt goes right after each row's leading BOS token
    instead of before it (BBT's placement): ``[BOS, soft, pads, masked BOS, tokens]`` is the same
    computation as ``[pads, BOS, soft, tokens]``. Rows that do not open with it are left as they are."""
    import torch

    if prefix_embeds is None:
        return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
    embed = model.get_input_embeddings()
    emb = embed(ids)
    soft = prefix_embeds.to(emb.device, emb.dtype).unsqueeze(0).expand(ids.shape[0], -1, -1)
    if after_bos is not None:
        first = (mask.shape[1] - mask.sum(-1)).clamp(max=mask.shape[1] - 1)  # each row's first real position
        rows = torch.arange(ids.shape[0], device=ids.device)
        if bool((ids[rows, first] == after_bos).all()):
            mask = mask.clone()
            mask[rows, first] = 0
            bos = embed(torch.full((ids.shape[0], 1), after_bos, dtype=ids.dtype, device=ids.device))
            soft = torch.cat([bos, soft], 1)
    mask = torch.cat([torch.ones(ids.shape[0], soft.shape[1], dtype=mask.dtype, device=mask.device), mask], 1)
    return {"inputs_embeds": torch.cat([soft, emb], 1), "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}


SKINNY_ROWS = 64
SKINNY_MIN_WEIGHT = 4 * 2**20  # elements (16 MiB in fp32): weights that stream from memory, not cache


def _skinny_forward(self: Any, x: Any) -> Any:
    """``nn.Linear.forward`` with, at inference on the CPU with at most ``SKINNY_ROWS`` input rows (a
    decoding step: one row per sequence), the product as W·xᵀ instead of x·Wᵀ. MKL's fp32 GEMM with
    few rows and a transposed weight reads a large weight at 4–6 GB/s of the machine's 30 (measured
    on 2 cores: Qwen2.5-1.5B's MLP and output head, SmolLM2's output head); as W·xᵀ at 14–15 GB/s.
    Smaller weights gain little or lose below 16 rows, so only weights of ``SKINNY_MIN_WEIGHT``
    elements or more take this path. From 12 to 64 rows the result is bit for bit F.linear's (bias
    added the same way, ``addmm``; checked at those shapes); below 12 rows MKL's F.linear takes
    another kernel and the two differ in the last bits (1e-6 relative)."""
    import torch

    rows = x.numel() // x.shape[-1] if x.dim() >= 2 else 0
    if not (0 < rows <= SKINNY_ROWS and x.dtype == torch.float32 and torch.is_inference_mode_enabled()):
        return torch.nn.functional.linear(x, self.weight, self.bias)
    flat = x.reshape(rows, x.shape[-1]).T
    y = self.weight @ flat if self.bias is None else torch.addmm(self.bias[:, None], self.weight, flat)
    return y.T.reshape(*x.shape[:-1], self.out_features)


def skinny_linears(model: Any) -> None:
    """Every large plain ``nn.Linear`` of ``model`` (a CPU model) computes few-row products as W·xᵀ
    (``_skinny_forward``); training (gradients on) and many-row scoring keep F.linear."""
    import torch

    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.numel() >= SKINNY_MIN_WEIGHT:
            module.forward = _skinny_forward.__get__(module)


_CACHE_KWARG: dict[type, str] = {}


def cache_kwarg(model_cls: type) -> str:
    """transformers 5.x names the KV-cache argument ``cache``; earlier ``past_key_values``
    (looked up once per model class, not per batch)."""
    import inspect

    if model_cls not in _CACHE_KWARG:
        forward = getattr(model_cls, "forward")
        _CACHE_KWARG[model_cls] = "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
    return _CACHE_KWARG[model_cls]


def cache_tensors(cache: Any) -> list[tuple[Any, Any]]:
    """(keys, values) per layer of a transformers KV cache."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers < 4.56
