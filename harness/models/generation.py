"""Generation settings: validation, precedence, OpenAI-style penalties and per-request seeded sampling.

Precedence is CLI > task YAML > defaults. lm-eval merges the CLI's `--gen-kwargs` into each task's
`generation_kwargs` before a request is built, so the runner sees one dict per request and fills
what it leaves unset the way lm-eval's hf backend (HFLM) does: greedy unless sampling is asked for
(a model's own `do_sample`/`temperature` are ignored, as HFLM passes both), `max_gen_toks` 256,
EOS added to the stop strings; when sampling, `top_k`/`top_p`/`min_p` from the model's
generation_config, then transformers' global defaults (so `top_k` is 50, as under HFLM).

Sampling runs as greedy decoding over scores plus Gumbel noise (argmax(s - log E), E ~ Exp(1), is a
draw from softmax(s)), the noise coming from one generator per request seeded by (seed, task,
prompt, repeat number): a request's samples do not depend on its batch, and the k repeats of a
self-consistency request get k different noise streams. vLLM seeds its per-request sampling the same way.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.generation import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from harness.errors import BadOptionError
from harness.lm_eval_compat import handle_stop_sequences, normalize_gen_kwargs

# Settings a user may give with --gen-kwargs (task YAMLs may name any key model.generate takes).
GEN_KWARGS = {
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "do_sample",
    "max_gen_toks",
    "until",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "num_beams",
    "repetition_penalty",
    "min_new_tokens",
}
GEN_KWARGS_ALIASES = {"max_new_tokens": "max_gen_toks", "stop": "until"}
PENALTY_RANGE = (-2.0, 2.0)  # OpenAI's documented range for frequency_penalty / presence_penalty
DEFAULT_SEED = 1234  # lm-eval's default torch seed
# transformers' global defaults (GenerationConfig._get_default_generation_params), which model.generate
# falls back to under HFLM when neither the request nor the model's generation_config sets them
TRANSFORMERS_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None}
# sampling filters of model.generate that seeded sampling does not reproduce
UNSUPPORTED_WARPERS = ("typical_p", "epsilon_cutoff", "eta_cutoff", "top_h")

# Who set a value, as recorded in the run record.
FROM_REQUEST = "request"  # the task's generation_kwargs after lm-eval merged the CLI's into them
FROM_CLI, FROM_TASK = "cli", "task"
FROM_LM_EVAL = "lm-eval default"
FROM_MODEL = "model generation_config"
FROM_TRANSFORMERS = "transformers default"
FROM_RUN_SEED = "run seed"
FROM_OFF = "default (off)"


def canonical_gen_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Aliases (max_new_tokens, stop) under their canonical names; a canonical key wins over its alias."""
    out = {GEN_KWARGS_ALIASES.get(k, k): v for k, v in kwargs.items() if k in GEN_KWARGS_ALIASES}
    out.update({k: v for k, v in kwargs.items() if k not in GEN_KWARGS_ALIASES})
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_CHECKS = {
    "temperature": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "top_k": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: off)"),
    "top_p": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "min_p": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "do_sample": (lambda v: isinstance(v, bool), "true or false"),
    "max_gen_toks": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "until": (
        lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
        "a string or a list of strings",
    ),
    "seed": (_is_int, "an integer"),
    "frequency_penalty": (
        lambda v: _is_number(v) and PENALTY_RANGE[0] <= v <= PENALTY_RANGE[1],
        "a number from -2 to 2 (OpenAI's range)",
    ),
    "presence_penalty": (
        lambda v: _is_number(v) and PENALTY_RANGE[0] <= v <= PENALTY_RANGE[1],
        "a number from -2 to 2 (OpenAI's range)",
    ),
    "num_beams": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "repetition_penalty": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "min_new_tokens": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}


def check_gen_kwargs(kwargs: dict[str, Any], where: str) -> None:
    """Raise BadOptionError (one line, naming `where`) for a value of a known setting that is out of range."""
    for key, value in canonical_gen_kwargs(kwargs).items():
        if key in _CHECKS and value is not None and not _CHECKS[key][0](value):
            raise BadOptionError(f"{where}: {key} must be {_CHECKS[key][1]}, not {value!r}")
    if kwargs.get("do_sample") is True and kwargs.get("temperature") == 0:
        raise BadOptionError(f"{where}: do_sample=true needs temperature > 0 (or leave temperature unset)")


@dataclass(frozen=True)
class GenerationSettings:
    """The settings one group of requests is generated with, and where each came from."""

    until: tuple[str, ...]
    max_gen_toks: int
    do_sample: bool
    temperature: float | None = None  # the sampling fields are None under greedy decoding
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # passed to model.generate as given (num_beams, ...)
    origin: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The settings used, JSON-ready, with the origin of each."""
        used = {
            "do_sample": self.do_sample,
            "max_gen_toks": self.max_gen_toks,
            "until": list(self.until),
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }
        if self.do_sample:
            used.update(
                temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p, seed=self.seed
            )
        used.update(self.extra)
        return {"settings": used, "origin": {k: self.origin.get(k, FROM_REQUEST) for k in used}}

    def logits_processors(self, prompt_len: int, row_seeds: list[int] | None) -> LogitsProcessorList:
        """Penalties over the tokens after `prompt_len`, then (sampling) warpers and the seeded draw."""
        processors = LogitsProcessorList()
        if self.penalised:
            processors.append(OpenAIPenaltyLogitsProcessor(prompt_len, self.frequency_penalty, self.presence_penalty))
        if self.do_sample:
            processors.extend(self.warpers())
            processors.append(SeededSamplingLogitsProcessor(row_seeds or []))
        return processors

    @property
    def penalised(self) -> bool:
        return bool(self.frequency_penalty or self.presence_penalty)

    def warpers(self) -> LogitsProcessorList:
        """transformers' own sampling warpers, in the order and on the conditions model.generate applies
        them (none under greedy decoding); they read the scores only, never the tokens so far."""
        warpers = LogitsProcessorList()
        if not self.do_sample:
            return warpers
        if self.temperature is not None and self.temperature != 1.0:  # never None when sampling
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            warpers.append(TopKLogitsWarper(self.top_k))
        if self.top_p is not None and self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        if self.min_p is not None:
            warpers.append(MinPLogitsWarper(self.min_p))
        return warpers

    def row_seed(self, task: str | None, prompt: tuple[int, ...], repeat: int) -> int:
        """The noise seed of one request: its seed, task, prompt tokens and which repeat it is."""
        h = hashlib.blake2b(digest_size=8)
        h.update(f"{self.seed}\0{task}\0{repeat}\0".encode())
        h.update(torch.tensor(prompt, dtype=torch.int64).numpy().tobytes())
        return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def resolve_generation(
    request_kwargs: dict[str, Any],
    *,
    eos: str | None,
    default_max_gen_toks: int,
    model_config: Any = None,
    run_seed: int = DEFAULT_SEED,
    where: str = "generation_kwargs",
) -> GenerationSettings:
    """Fill what a request's generation_kwargs leave unset (HFLM's defaults) and validate the rest.

    model_config: the model's transformers GenerationConfig, consulted for sampling filters only.
    """
    kwargs = canonical_gen_kwargs(dict(request_kwargs))
    check_gen_kwargs(kwargs, where)
    given = set(kwargs)
    origin: dict[str, str] = {}
    # lm-eval's rules: do_sample from temperature when unset, temperature 0 when do_sample is false
    norm = dict(normalize_gen_kwargs(kwargs, default_max_gen_toks))
    until = tuple(handle_stop_sequences(norm.pop("until", None), eos=eos))
    max_gen_toks = norm.pop("max_gen_toks")
    origin["max_gen_toks"] = FROM_REQUEST if "max_gen_toks" in given else FROM_LM_EVAL
    origin["until"] = FROM_REQUEST if "until" in given else FROM_LM_EVAL
    do_sample = bool(norm.pop("do_sample"))
    origin["do_sample"] = FROM_REQUEST if "do_sample" in given else FROM_LM_EVAL
    norm.pop("max_length", None)  # HF's prompt+generation length: max_gen_toks says it
    penalties: dict[str, Any] = {}
    for key in ("frequency_penalty", "presence_penalty"):
        penalties[key] = float(norm.pop(key, None) or 0.0)
        origin[key] = FROM_REQUEST if key in given else FROM_OFF
    seed = norm.pop("seed", None)
    sampling: dict[str, Any] = {}
    for key in ("temperature", "top_k", "top_p", "min_p"):
        value = norm.pop(key, None)
        if not do_sample:
            continue
        if key in given and value is not None:
            sampling[key], origin[key] = value, FROM_REQUEST
        elif getattr(model_config, key, None) is not None:
            sampling[key], origin[key] = getattr(model_config, key), FROM_MODEL
        else:
            sampling[key], origin[key] = TRANSFORMERS_SAMPLING_DEFAULTS[key], FROM_TRANSFORMERS
    if do_sample:
        sampling["temperature"] = float(sampling["temperature"])
        if sampling["temperature"] <= 0:
            raise BadOptionError(f"{where}: do_sample=true needs temperature > 0")
        sampling["seed"] = int(seed) if seed is not None else run_seed
        origin["seed"] = FROM_REQUEST if seed is not None else FROM_RUN_SEED
        if norm.get("num_beams", 1) > 1:
            raise BadOptionError(f"{where}: sampling with num_beams > 1 is not supported; use one or the other")
        unsupported = [k for k in UNSUPPORTED_WARPERS if norm.get(k) is not None]
        if unsupported:
            raise BadOptionError(
                f"{where}: {', '.join(unsupported)} not supported with sampling "
                "(supported: temperature, top_k, top_p, min_p)"
            )
    if (
        model_config is not None
        and "repetition_penalty" not in norm
        and getattr(model_config, "repetition_penalty", None) not in (None, 1.0)
    ):
        # model.generate applies it from the model's generation_config (as under HFLM): record it
        norm["repetition_penalty"] = model_config.repetition_penalty
        origin["repetition_penalty"] = FROM_MODEL
    return GenerationSettings(
        until=until, max_gen_toks=max_gen_toks, do_sample=do_sample, extra=norm, origin=origin, **penalties, **sampling
    )


def generation_record(recorded: dict[str, Any] | None, cli_kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """A task's recorded settings with 'request' origins split into 'cli' (given by --gen-kwargs) and 'task'."""
    if recorded is None:
        return None
    cli = set(canonical_gen_kwargs(cli_kwargs or {}))
    origin = {
        k: (FROM_CLI if k in cli else FROM_TASK) if v == FROM_REQUEST else v for k, v in recorded["origin"].items()
    }
    return {"settings": recorded["settings"], "origin": origin}


class OpenAIPenaltyLogitsProcessor(LogitsProcessor):
    """OpenAI's penalties over generated tokens: logit[j] -= frequency * count[j] + presence * (count[j] > 0).

    Counts cover the tokens after `prompt_len` (everything generated so far), never the prompt: in the
    runner's [prefix | pads | suffix] rows every prompt ends at the same column.
    """

    def __init__(self, prompt_len: int, frequency_penalty: float, presence_penalty: float) -> None:
        self.prompt_len = prompt_len
        self.frequency_penalty = frequency_penalty
        self.presence_penalty = presence_penalty

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        return penalise(scores, input_ids[:, self.prompt_len :], None, self.frequency_penalty, self.presence_penalty)


def penalise(
    scores: torch.Tensor, generated: torch.Tensor, valid: torch.Tensor | None, frequency: float, presence: float
) -> torch.Tensor:
    """OpenAI's formula, scores[r, j] -= frequency * count + presence * (count > 0), counting token j in
    row r of `generated` (rows, tokens) where `valid` (the same shape, or None: everywhere) is true."""
    if generated.shape[1] == 0:
        return scores
    ones = torch.ones_like(generated, dtype=scores.dtype) if valid is None else valid.to(scores.dtype)
    counts = torch.zeros_like(scores).scatter_add_(1, generated, ones)
    return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)


class SeededSamplingLogitsProcessor(LogitsProcessor):
    """Last processor of seeded sampling: adds Gumbel noise (-log E, E ~ Exp(1)) from each row's own
    generator, so the greedy argmax that follows is a draw from softmax(scores)."""

    def __init__(self, row_seeds: list[int]) -> None:
        self.row_seeds = row_seeds
        self.generators: list[torch.Generator] | None = None

    def select(self, rows: list[int]) -> None:
        """Keep the generators of `rows` only (the decoder dropped the other, finished, rows)."""
        self.row_seeds = [self.row_seeds[r] for r in rows]
        if self.generators is not None:
            self.generators = [self.generators[r] for r in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        if self.generators is None:
            if len(self.row_seeds) != scores.shape[0]:
                raise ValueError(f"{len(self.row_seeds)} row seeds for {scores.shape[0]} rows")
            self.generators = [row_generator(s, scores.device) for s in self.row_seeds]
        return gumbel_perturbed(scores, self.generators)


def row_generator(seed: int, device: Any) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def gumbel_perturbed(scores: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """scores (rows, vocab) plus Gumbel noise, row r's from generators[r]: their argmax is a draw."""
    # one draw per row per step, whatever the batch: row r's t-th token always uses its t-th draw
    # float64: float32 draws come from 24-bit uniforms, which cut the Gumbel tail off near 16 and
    # make near-ties coarse; the clamp keeps log() finite whatever the backend's kernel returns
    noise = torch.stack(
        [
            torch.empty(scores.shape[1], device=scores.device, dtype=torch.float64).exponential_(generator=g)
            for g in generators
        ]
    )
    return scores.double() - noise.clamp_min(torch.finfo(torch.float64).tiny).log()
