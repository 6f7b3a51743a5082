"""The run spec: everything that decides a run's numbers. Its hash is the run's identity."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import BadOptionError
from harness.hashing import json_sha256
from harness.lm_eval_compat import simple_parse_args_string
from harness.models.batching import parse_batch_size  # noqa: F401  `--batch-size`: one parser, the runner's
from harness.models.generation import GEN_KWARGS, GEN_KWARGS_ALIASES, check_gen_kwargs

# lm-eval's own defaults (simple_evaluate): python random 0, numpy/torch/few-shot 1234.
LM_EVAL_SEEDS = {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}

SERVED_NUMBERS = ("api", "api_model", "tokenizer")
SERVED_TRANSPORT = ("api_key_env", "max_concurrency", "timeout", "max_retries")


@dataclass(frozen=True)
class RunSpec:
    model: str
    tasks: tuple[str, ...]
    num_fewshot: int | None = None
    limit: float | None = None
    batch_size: int | str = 8  # or "auto"; does not change numbers, but is recorded
    seed: int | None = None  # None: lm-eval's default seeds, so numbers match lm-eval's
    gen_kwargs: dict[str, Any] | None = None
    apply_chat_template: bool = False
    system_instruction: str | None = None
    device: str | None = None
    dtype: str | None = None
    bootstrap_iters: int = 1000
    compile: bool = False  # torch.compile the forward pass; speed only
    adapter: str | None = None  # a PEFT adapter folder; its identity (file hashes) enters the hash, not the path
    merge_adapter: bool = False  # merge it into the weights (rounding differs slightly from unmerged)
    # a served model (--model http://HOST:PORT/v1); None: the default. api and tokenizer change
    # numbers; the others only how requests are sent (they stay out of the hash)
    api: str | None = None
    api_model: str | None = None
    tokenizer: str | None = None
    api_key_env: str | None = None  # the variable's name: the key itself is never stored
    max_concurrency: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    perturb: tuple[str, ...] = ()  # HELM perturbations of the input (harness.perturb): robustness, fairness, names
    # where things are read from; not part of the identity
    data_dir: str | None = None
    include_paths: tuple[str, ...] = field(default_factory=tuple)

    def seeds(self) -> dict[str, int]:
        if self.seed is None:
            return dict(LM_EVAL_SEEDS)
        return {k: self.seed for k in LM_EVAL_SEEDS}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        d["include_paths"] = list(self.include_paths)
        d["perturb"] = list(self.perturb)
        d["seeds"] = self.seeds()
        return d


def spec_hash(
    spec: RunSpec,
    model_identity: dict[str, Any],
    task_hashes: dict[str, str],
    perturbation: dict[str, Any] | None = None,
) -> str:
    """Identity of a run: settings that change numbers, the model's weights, the tasks' configs, and the
    perturbations (harness.perturb.Plan.identity: parameters and word-list hashes)."""
    settings = spec.to_dict()
    # where things were read from, and what changes speed but not numbers, stay out
    for key in ("data_dir", "include_paths", "model", "tasks", "batch_size", "compile", "adapter", "merge_adapter"):
        settings.pop(key)
    for key in SERVED_TRANSPORT:
        settings.pop(key)
    for key in SERVED_NUMBERS:  # only when given: runs of local models keep their hashes
        if settings[key] is None:
            settings.pop(key)
    settings.pop("perturb")
    if perturbation:  # only then: unperturbed runs keep their hashes
        settings["perturbation"] = perturbation
    weights = {k: model_identity.get(k) for k in ("sha256", "hub_id", "revision", "dtype")}
    if model_identity.get("adapter"):  # only then: runs without an adapter keep their hashes
        weights["adapter"] = {k: model_identity["adapter"][k] for k in ("sha256", "merged")}
    return json_sha256({"settings": settings, "model": weights, "tasks": task_hashes})


def parse_gen_kwargs(text: str | None) -> dict[str, Any] | None:
    """`--gen-kwargs`: `k=v,k=v` (lm-eval's form) or a JSON object; unknown keys are refused."""
    if not text:
        return None
    try:
        parsed = json.loads(text) if text.lstrip().startswith("{") else simple_parse_args_string(text)
    except (ValueError, IndexError) as exc:
        raise BadOptionError(f"--gen-kwargs '{text}': expected k=v,k=v or a JSON object ({exc})") from None
    if not isinstance(parsed, dict):
        raise BadOptionError(f"--gen-kwargs '{text}': expected k=v,k=v or a JSON object")
    out = {}
    for key, value in parsed.items():
        key = GEN_KWARGS_ALIASES.get(key, key)
        if key not in GEN_KWARGS:
            raise BadOptionError(f"--gen-kwargs: unknown setting '{key}' (known: {', '.join(sorted(GEN_KWARGS))})")
        out[key] = value
    check_gen_kwargs(out, "--gen-kwargs")
    return out
