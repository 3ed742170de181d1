"""DSPy's prompt optimisers as black-box methods (``pip install -e '.[dspy]'``: dspy 3.4, optuna).

DSPy gets language models backed by boxbench views, through DSPy's engine interface
(``complete(Request) -> Response``): the tuned model's ``BlackView`` (so access is enforced and every
call is metered, cached and priced as APE's) and, as DSPy's ``prompt_model``, the proposer
(``proposer``: another model, or the tuned model itself; methods/proposer.py). DSPy's own response
cache is off: boxbench's request cache and meters see every call.

The program is one ``dspy.Predict`` over ``text -> label``. With ``format: boxbench`` (default) a
DSPy adapter renders it as boxbench renders every prompt — the instruction, each demonstration in the
task template with its label word, the query — and reads the answer with the shared parser, so the
optimiser tunes exactly the prompt the shared scorer evaluates. With ``format: dspy``, DSPy's
ChatAdapter formats and parses while it optimises (its field markers, its parsing); the result is
evaluated like every method's, as instruction + demonstrations in the task template
(docs/fidelity.md says what differs from running DSPy alone).

The optimised program becomes a ``PromptArtifact``: the predictor's instruction and demonstrations.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import random
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from boxbench.core.backend import Access, BlackView, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.evaluate import parse_label, with_hint
from boxbench.core.method import Checked, Method, PromptArtifact, render_prompt
from boxbench.core.task import Example, Task
from boxbench.methods.ape import clean_instruction
from boxbench.methods.proposer import HELP, Proposer, check_proposer

INSTALL = "pip install -e '.[dspy]' (dspy and optuna)"
FORMATS = ("boxbench", "dspy")


def missing() -> str | None:
    """Why DSPy's optimisers cannot run here (None when they can)."""
    for module in ("dspy", "optuna"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; {INSTALL}"
    return None


def _text(request: Any) -> str:
    """A DSPy request's system text and messages as one text prompt, blank lines between them."""
    parts = [request.system] if isinstance(request.system, str) and request.system else []
    for m in request.messages:
        parts.append("".join(getattr(p, "text", "") for p in m.parts))
    return "\n\n".join(p for p in parts if p)


class ViewEngine:
    """A DSPy engine over a boxbench black view: one request -> one ``generate`` call. ``prepare``
    turns the request's text into the prompt sent (the generate protocol's hint, for the tuned model);
    ``defaults`` is the decoding when the request sets none (greedy, as the shared scorer)."""

    def __init__(self, generate: Callable[[list[str], GenerationConfig], list[str]], defaults: GenerationConfig,
                 prepare: Callable[[str], str] = lambda s: s) -> None:
        self.generate, self.defaults, self.prepare = generate, defaults, prepare
        self.calls = 0
        self.stopped: UserError | None = None  # a spending cap reached (or another boxbench refusal) inside DSPy's loop

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, Usage

        c = request.config
        config = GenerationConfig(max_new_tokens=c.max_tokens or self.defaults.max_new_tokens,
                                  temperature=self.defaults.temperature if c.temperature is None else c.temperature,
                                  top_p=self.defaults.top_p if c.top_p is None else c.top_p,
                                  stop=list(c.stop) or self.defaults.stop, seed=self.defaults.seed if c.seed is None else c.seed)
        if config.temperature > 0 and config.seed is not None:
            # a sampled call draws afresh each time, reproducibly, on a stream of its own: ``seed + calls``
            # gave seed s + 1 the draws of seed s shifted by one (two COPRO seeds chose the same instruction)
            config.seed = config.stream(self.calls)
        self.calls += 1
        try:
            out = self.generate([self.prepare(_text(request))], config)[0]
        except UserError as e:  # DSPy may catch it per example and go on: tune() raises it when DSPy returns
            self.stopped = self.stopped or e
            raise
        return Response(id=None, model="boxbench", message=Message.assistant(out), finish_reason="stop", usage=Usage())

    def stream(self, request: Any) -> Iterator[Any]:
        raise NotImplementedError("boxbench's DSPy engine does not stream")

    def close(self) -> None:
        pass


def _adapter(task: Task, fmt: str, lenient: bool, counts: dict[str, int]) -> Any:
    """DSPy's ChatAdapter, which renders the classification signature as boxbench's prompt and reads
    its answer with the shared parser when ``fmt`` is ``boxbench`` (every other signature — the
    proposer's — stays DSPy's). ``lenient``: an answer DSPy cannot parse (the proposer's; the tuned
    model's too under ``dspy``) is read as its first line for the first output field (counted in
    ``counts["unparsed"]``) instead of failing the run."""
    import dspy

    class BoxbenchAdapter(dspy.ChatAdapter):
        def format(self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
            if fmt != "boxbench" or not _is_classifier(signature):
                return super().format(signature, demos, inputs)
            shown = [e for e in (_example(task, d) for d in demos) if e is not None]
            return [{"role": "user", "content": render_prompt(task, str(inputs["text"]), signature.instructions or "", shown)}]

        def parse(self, signature: Any, completion: str) -> dict[str, Any]:
            if fmt != "boxbench" or not _is_classifier(signature):
                try:
                    return dict(super().parse(signature, completion))
                except Exception:
                    if not lenient:
                        raise
                    counts["unparsed"] += 1
                    first = clean_instruction(re.sub(r"\[\[ ## \w+ ## \]\]", "", completion))
                    return {name: first if i == 0 else "" for i, name in enumerate(signature.output_fields)}
            label = parse_label(completion, task)
            return {"label": task.label_names[label] if label is not None else ""}

    return BoxbenchAdapter()


def _is_classifier(signature: Any) -> bool:
    return list(signature.input_fields) == ["text"] and list(signature.output_fields) == ["label"]


def _example(task: Task, demo: Any) -> Example | None:
    """A DSPy demonstration as a boxbench example (None when its label is not one of the task's)."""
    get = demo.get if hasattr(demo, "get") else (lambda k, d=None: getattr(demo, k, d))
    text, label = get("text"), get("label")
    if text is None or label is None:
        return None
    index = task.label_names.index(label) if label in task.label_names else parse_label(str(label), task)
    return Example(str(text), index) if index is not None else None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """DSPy's and optuna's warnings, logs, prints and progress bars stay out of the CLI (the record says
    what happened)."""
    loggers = [logging.getLogger(n) for n in ("dspy", "optuna", "LiteLLM", "httpx")]
    levels = [lg.level for lg in loggers]
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.ERROR)
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


@dataclass
class DspyParams(Checked):
    """What every DSPy optimiser here takes; each method adds its optimiser's own knobs."""

    format: str = field(default="boxbench", metadata={"help": "boxbench: the program is rendered and parsed as boxbench's prompts | "
                                                              "dspy: DSPy's ChatAdapter while optimising", "choices": FORMATS})
    max_new_tokens: int = field(default=8, metadata={"help": "answer length of the tuned model (dspy format: raised to 64)", "min": 1})
    lenient: bool = field(default=True, metadata={"help": "an answer DSPy cannot parse is read as its first line (counted: "
                                                          "dspy_unparsed) | false: DSPy's parse error ends the cell"})
    max_proposal_tokens: int = field(default=512, metadata={"help": "generation cap of one proposer answer", "min": 1})
    proposer: Any = field(default="", metadata={"help": HELP})


class DspyMethod(Method[BlackView, DspyParams]):
    """The shared part: models for DSPy, the program, the artifact. A subclass names its optimiser."""

    name = "dspy"
    access = Access.black
    family = "multi-pass"
    Params = DspyParams
    description = "DSPy optimiser"
    proposes = True  # the optimiser asks DSPy's prompt_model for instructions; False: it never does

    @classmethod
    def unavailable(cls) -> str | None:
        return missing()

    @classmethod
    def check(cls, params: DspyParams, model: Any, where: str) -> None:
        if params.proposer and not cls.proposes:  # else a proposer model would be loaded for nothing
            raise UserError(f"{where}.params.proposer: {cls.name} writes no instructions, so it asks no proposer; remove proposer")
        check_proposer(params.proposer, where)

    def optimise(self, dspy: Any, program: Any, *, metric: Callable[..., bool], prompt_lm: Any, trainset: list[Any],
                 valset: list[Any], params: Any, seed: int) -> Any:
        """The optimiser's compile call; returns the optimised program."""
        raise NotImplementedError

    def tune(self, view: BlackView, *, task: Task, train: list[Example], dev: list[Example], params: DspyParams, seed: int) -> PromptArtifact:
        reason = missing()
        if reason:
            raise UserError(f"{self.name}: {reason}")
        if not train:
            raise UserError(f"{self.name}: needs training examples; raise limits.train")
        import dspy

        proposer = Proposer(params.proposer, view)  # check() refused one where the optimiser never asks it
        answer = params.max_new_tokens if params.format == "boxbench" else max(params.max_new_tokens, 64)
        task_engine = ViewEngine(view.generate, GenerationConfig(max_new_tokens=answer, temperature=0.0, stop=["\n"] if params.format == "boxbench" else [], seed=seed),
                                 prepare=(lambda s: with_hint(task, s)) if params.format == "boxbench" else (lambda s: s))
        prompt_engine = ViewEngine(proposer.generate, GenerationConfig(max_new_tokens=params.max_proposal_tokens, temperature=1.0, stop=[], seed=seed))
        task_lm = dspy.LM("boxbench/task", engine=task_engine, cache=False, temperature=0.0)
        prompt_lm = dspy.LM("boxbench/proposer", engine=prompt_engine, cache=False)
        names = ", ".join(task.label_names)

        class Classify(dspy.Signature):
            __doc__ = task.instruction or f"Classify the text as one of: {names}."
            text: str = dspy.InputField()
            label: str = dspy.OutputField(desc=f"one of: {names}")

        def metric(gold: Any, pred: Any, trace: Any = None) -> bool:
            return bool(getattr(pred, "label", None) == gold.label)

        order = list(train)
        random.Random(seed).shuffle(order)  # the seed decides which examples the optimiser meets first (DSPy reads them in order)

        def to_dspy(exs: list[Example]) -> list[Any]:
            return [dspy.Example(text=e.text, label=task.label_names[e.label]).with_inputs("text") for e in exs]

        counts = {"unparsed": 0}
        with _quiet(), dspy.context(lm=task_lm, adapter=_adapter(task, params.format, params.lenient, counts)):
            try:
                compiled = self.optimise(dspy, dspy.Predict(Classify), metric=metric, prompt_lm=prompt_lm, trainset=to_dspy(order),
                                         valset=to_dspy(dev), params=params, seed=seed)
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as e:  # DSPy's own failure (a proposer whose answers it cannot parse, ...), in one line
                stopped = task_engine.stopped or prompt_engine.stopped
                if stopped is not None:
                    raise stopped from e
                raise UserError(f"{self.name}: DSPy's optimiser failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from e
        stopped = task_engine.stopped or prompt_engine.stopped
        if stopped is not None:
            raise stopped
        predictor = compiled.predictors()[0]
        demos = [e for e in (_example(task, d) for d in predictor.demos) if e is not None]
        art = PromptArtifact(predictor.signature.instructions or "", demos)
        art.stats.update(optimizer=self.name, demos=len(demos), task_model_calls=task_engine.calls,
                         proposer_requests=prompt_engine.calls, dspy_unparsed=counts["unparsed"], format=params.format, **proposer.stats())
        return art


class DspyZeroShot(DspyMethod):
    name = "dspy_zero_shot"
    family = "baseline"
    proposes = False
    description = "DSPy's program uncompiled: its signature's instruction, no demonstrations (what DSPy's optimisers start from)"

    def optimise(self, dspy: Any, program: Any, *, metric: Callable[..., bool], prompt_lm: Any, trainset: list[Any],
                 valset: list[Any], params: Any, seed: int) -> Any:
        return program  # compiling nothing: the baseline a DSPy user compares a compiled program with


@dataclass
class BootstrapParams(DspyParams):
    max_bootstrapped_demos: int = field(default=4, metadata={"help": "demonstrations from the program's own successful runs (DSPy: 4)", "min": 0})
    max_labeled_demos: int = field(default=16, metadata={"help": "demonstrations taken from the training set as labelled (DSPy: 16)", "min": 0})
    max_rounds: int = field(default=1, metadata={"help": "bootstrap rounds (DSPy: 1)", "min": 1})


class DspyBootstrap(DspyMethod):
    name = "dspy_bootstrap"
    Params = BootstrapParams
    proposes = False
    description = "DSPy BootstrapFewShot: demonstrations from the program's own correct runs on training examples"

    def optimise(self, dspy: Any, program: Any, *, metric: Callable[..., bool], prompt_lm: Any, trainset: list[Any],
                 valset: list[Any], params: Any, seed: int) -> Any:
        from dspy.teleprompt import BootstrapFewShot

        opt = BootstrapFewShot(metric=metric, max_bootstrapped_demos=params.max_bootstrapped_demos,
                               max_labeled_demos=params.max_labeled_demos, max_rounds=params.max_rounds)
        return opt.compile(program, trainset=trainset)


@dataclass
class RandomSearchParams(BootstrapParams):
    num_candidate_programs: int = field(default=16, metadata={"help": "bootstrapped programs tried, each scored on dev (DSPy: 16)", "min": 1})


class DspyRandomSearch(DspyMethod):
    name = "dspy_random_search"
    Params = RandomSearchParams
    proposes = False
    description = "DSPy BootstrapFewShotWithRandomSearch: several bootstrapped demonstration sets, the best on dev"

    def optimise(self, dspy: Any, program: Any, *, metric: Callable[..., bool], prompt_lm: Any, trainset: list[Any],
                 valset: list[Any], params: Any, seed: int) -> Any:
        from dspy.teleprompt import BootstrapFewShotWithRandomSearch

        if not valset:
            raise UserError(f"{self.name}: needs a dev set to score candidate programs on; set limits.dev above 0")
        opt = BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=params.max_bootstrapped_demos,
                                               max_labeled_demos=params.max_labeled_demos, max_rounds=params.max_rounds,
                                               num_candidate_programs=params.num_candidate_programs, num_threads=1)
        return opt.compile(program, trainset=trainset, valset=valset)


@dataclass
class MiproParams(DspyParams):
    auto: str = field(default="light", metadata={"help": "DSPy's budget preset: light | medium | heavy | none (then num_candidates and "
                                                         "num_trials) (DSPy: light)", "choices": ("light", "medium", "heavy", "none")})
    num_candidates: int = field(default=0, metadata={"help": "instruction and demonstration candidates, with auto: none", "min": 0})
    num_trials: int = field(default=10, metadata={"help": "Bayesian-optimisation trials, with auto: none (DSPy has no default then)", "min": 1})
    max_bootstrapped_demos: int = field(default=4, metadata={"help": "(DSPy: 4)", "min": 0})
    max_labeled_demos: int = field(default=4, metadata={"help": "(DSPy: 4)", "min": 0})
    minibatch_size: int = field(default=35, metadata={"help": "dev examples per trial's minibatch (DSPy: 35)", "min": 1})
    init_temperature: float = field(default=1.0, metadata={"help": "the proposer's sampling temperature (DSPy: 1.0)", "min": 0})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.auto == "none" and not self.num_candidates:
            raise UserError("params.num_candidates: with auto: none, set num_candidates (and num_trials, default 10)")


class DspyMipro(DspyMethod):
    name = "dspy_mipro"
    Params = MiproParams
    description = "DSPy MIPROv2: proposed instructions × bootstrapped demonstrations, chosen by Bayesian optimisation on dev"

    def optimise(self, dspy: Any, program: Any, *, metric: Callable[..., bool], prompt_lm: Any, trainset: list[Any],
                 valset: list[Any], params: Any, seed: int) -> Any:
        from dspy.teleprompt import MIPROv2

        if not valset:
            raise UserError(f"{self.name}: needs a dev set to score candidates on; set limits.dev above 0")
        auto = None if params.auto == "none" else params.auto
        opt = MIPROv2(metric=metric, prompt_model=prompt_lm, max_bootstrapped_demos=params.max_bootstrapped_demos,
                      max_labeled_demos=params.max_labeled_demos, auto=auto, num_candidates=params.num_candidates or None,
                      num_threads=1, seed=seed, init_temperature=params.init_temperature, verbose=False)
        return opt.compile(program, trainset=trainset, valset=valset, num_trials=params.num_trials if auto is None else None,
                           minibatch_size=min(params.minibatch_size, len(valset)), requires_permission_to_run=False)


@dataclass
class CoproParams(DspyParams):
    breadth: int = field(default=10, metadata={"help": "instructions proposed per round (DSPy: 10)", "min": 2})
    depth: int = field(default=3, metadata={"help": "refinement rounds (DSPy: 3)", "min": 1})
    init_temperature: float = field(default=1.4, metadata={"help": "the proposer's sampling temperature (DSPy: 1.4)", "min": 0})
    score_on: str = field(default="dev", metadata={"help": "the rows every candidate instruction is scored on: dev (as APE's and MIPROv2's) | "
                                                           "train (DSPy alone: the whole trainset given to compile)", "choices": ("dev", "train")})


class DspyCopro(DspyMethod):
    name = "dspy_copro"
    Params = CoproParams
    description = "DSPy COPRO: instructions proposed and refined by the proposer, coordinate ascent on the training score"

    def optimise(self, dspy: Any, program: Any, *, metric: Callable[..., bool], prompt_lm: Any, trainset: list[Any],
                 valset: list[Any], params: Any, seed: int) -> Any:
        from dspy.teleprompt import COPRO

        if params.score_on == "dev" and not valset:
            raise UserError(f"{self.name}: needs a dev set to score candidates on; set limits.dev above 0 (or params.score_on: train)")
        opt = COPRO(prompt_model=prompt_lm, metric=metric, breadth=params.breadth, depth=params.depth,
                    init_temperature=params.init_temperature)
        return opt.compile(program, trainset=valset if params.score_on == "dev" else trainset,
                           eval_kwargs={"num_threads": 1, "display_progress": False})
