"""Access classes and the views that enforce them.

A backend implements everything it can; a method never sees the backend, only a *view* whose
class carries exactly the calls its access level allows:

* ``BlackView``  — ``generate`` (text in, text out)
* ``GreyView``   — black + ``next_token_logprobs`` + ``score``
* ``WhiteView``  — grey + ``module`` + ``tokenizer`` (parameters, gradients)

The views are separate small classes (not a flag checked inside one big class), so a black-box
method has no ``score`` attribute to call even by accident. Python cannot make the wrapped backend
truly private; the views hold it under a name-mangled attribute and the access tests check the
public surface.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from boxbench.registry import UserError


class Access(enum.IntEnum):
    """How much of a model a method may touch: black < grey < white."""

    black = 0
    grey = 1
    white = 2

    @classmethod
    def parse(cls, value: "str | Access", where: str = "access") -> "Access":
        if isinstance(value, Access):
            return value
        try:
            return cls[str(value).strip().lower()]
        except KeyError:
            raise UserError(f"{where}: {value!r} is not an access class; use black, grey or white") from None

    def __str__(self) -> str:
        return self.name


class AccessError(UserError, AttributeError):
    """A method asked for more access than the model (or its view) gives.

    Also an AttributeError, so ``hasattr(black_view, "score")`` is False.
    """


@dataclass
class Usage:
    """Model calls and tokens, counted at the view so every method is metered the same way."""

    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, calls: int = 0, prompt: int = 0, completion: int = 0) -> None:
        self.model_calls += calls
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class GenerationConfig:
    """Decoding settings for ``generate``; greedy by default."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=lambda: ["\n"])
    seed: int | None = None


class Backend(ABC):
    """A loaded model. Implements every call it can; ``view(access)`` hands out the allowed subset."""

    name: str = "backend"
    max_access: Access = Access.black

    def __init__(self) -> None:
        self.usage = Usage()
        self.settings: dict[str, Any] = {}

    # --- black ---
    @abstractmethod
    def generate(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        """Continue each prompt; returns the generated texts (stop strings removed)."""

    # --- grey ---
    def next_token_logprobs(self, prompts: list[str], k: int) -> list[dict[str, float]]:
        """Top-k next-token log-probabilities after each prompt (token text -> logprob)."""
        raise AccessError(f"backend {self.name} gives no logprobs")

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """Sum of log p(continuation | prompt) for each prompt's candidate continuations."""
        raise AccessError(f"backend {self.name} gives no logprobs")

    # --- white ---
    @property
    def module(self) -> Any:
        raise AccessError(f"backend {self.name} gives no parameters")

    @property
    def tokenizer(self) -> Any:
        raise AccessError(f"backend {self.name} gives no tokenizer")

    OPTIONS: dict[str, type | tuple[type, ...]] = {}  # options a model spec may give this backend

    @classmethod
    def check_spec(cls, model: str, options: dict[str, Any], where: str) -> None:
        """Check a model spec for this backend before any work (a UserError naming the field)."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            known = ", ".join(["model", "access", "label", *cls.OPTIONS])
            raise UserError(f"{where}: unknown option(s) {', '.join(unknown)} for a {cls.name} model; use {known}")
        for key, val in options.items():
            want = cls.OPTIONS[key] if isinstance(cls.OPTIONS[key], tuple) else (cls.OPTIONS[key],)
            if not isinstance(val, want) or (isinstance(val, bool) and bool not in want):  # True is an int too
                raise UserError(f"{where}.{key}: expected {' or '.join(t.__name__ for t in want)}, got {val!r}")

    def vocabulary_id(self) -> str | None:
        """A fingerprint of the tokenizer's vocabulary (None where it cannot be known, e.g. an API).
        Public at every access: it says which tokens exist, nothing about parameters."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the runner records about this backend (device, dtype, ...)."""
        return {"backend": self.name, **self.settings}

    def component_scores(self) -> dict[str, list[list[float]]]:
        """A backend that combines models (Proxy-Tuning) returns each model's own scores, one row per
        prompt ``score`` has read since it was built; the runner turns them into per-model accuracies
        on the same examples. A single model: nothing."""
        return {}

    def view(self, access: Access | str) -> "BlackView":
        """The view for ``access``; an AccessError if the backend cannot give that much."""
        access = Access.parse(access)
        if access > self.max_access:
            raise AccessError(
                f"model {self.name!r} gives {self.max_access.name} access, but {access.name} access was asked for"
            )
        return VIEWS[access](self)


class BlackView:
    """Text in, text out."""

    access = Access.black

    def __init__(self, backend: Backend) -> None:
        self.__backend = backend

    @property
    def model_name(self) -> str:
        return self.__backend.name

    @property
    def usage(self) -> Usage:
        return self.__backend.usage

    def vocabulary_id(self) -> str | None:
        """The model's vocabulary fingerprint (public at every access; see ``Backend.vocabulary_id``)."""
        return self.__backend.vocabulary_id()

    def generate(self, prompts: list[str], config: GenerationConfig | None = None) -> list[str]:
        return self.__backend.generate(list(prompts), config or GenerationConfig())

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this view does not have: say which access would give it.
        for level, names in RESTRICTED.items():
            if name in names and level > self.access:
                raise AccessError(f"{name!r} needs {level.name} access; this is a {self.access.name} view")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _backend(self, caller_access: Access) -> Backend:
        # For subclasses only: the one way to reach the backend, checked against the view's access.
        if caller_access > self.access:
            raise AccessError(f"a {self.access.name} view cannot give {caller_access.name} access")
        return self.__backend


class GreyView(BlackView):
    """Black + log-probabilities."""

    access = Access.grey

    def next_token_logprobs(self, prompts: list[str], k: int = 5) -> list[dict[str, float]]:
        return self._backend(Access.grey).next_token_logprobs(list(prompts), k)

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        return self._backend(Access.grey).score(list(prompts), [list(c) for c in continuations])


class WhiteView(GreyView):
    """Grey + the torch module and tokenizer (parameters and gradients)."""

    access = Access.white

    @property
    def module(self) -> Any:
        return self._backend(Access.white).module

    @property
    def tokenizer(self) -> Any:
        return self._backend(Access.white).tokenizer

    @property
    def backend(self) -> Backend:
        """White-box methods may wrap the backend itself (e.g. to attach an adapter)."""
        return self._backend(Access.white)


RESTRICTED: dict[Access, set[str]] = {
    Access.grey: {"next_token_logprobs", "score", "logprobs", "embeddings"},
    Access.white: {"module", "tokenizer", "parameters", "backend", "model"},
}

VIEWS: dict[Access, type[BlackView]] = {Access.black: BlackView, Access.grey: GreyView, Access.white: WhiteView}
