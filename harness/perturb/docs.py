"""A perturbation applied to an lm-eval task's documents: which fields are input, and the task hook.

Which fields are the model's input is read off the task itself, so any YAML works (Jinja templates
and `!function` code alike): a top-level string field is input when changing it changes
`doc_to_text` and changes neither `doc_to_target` nor `doc_to_choice`. The references (targets and
choices, MMLU's `choices` list included) are never perturbed: HELM leaves them alone for robustness,
and harness leaves them alone for fairness too, so that every perturbation is scored against the
same answers.

As in HELM (`should_augment_train_instances=False`), only the evaluated documents are perturbed;
few-shot exemplars stay as they are, and are the same exemplars as in the clean pass. Each document
gets its own generator, seeded as HELM seeds an instance: `Random("id<doc_id>")`, or
`Random(str(seed) + "id<doc_id>")` with a seed; its input fields are perturbed in the document's
field order on that one generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from random import Random
from typing import Any

from harness.perturb.text import TextPerturbation

_PROBE = " zqxj"  # appended to a field to see which of the task's functions read it
_PROBE_DOCS = 3


def input_fields(task: Any, docs: Sequence[dict]) -> list[str]:
    """The fields of `docs` the prompt is built from and the references are not (see the module doc)."""
    text: set[str] = set()
    answer: set[str] = set()
    functions: list[Callable[[dict], Any]] = [task.doc_to_target]
    if getattr(task.config, "doc_to_choice", None) is not None:
        functions.append(task.doc_to_choice)
    for doc in [docs[i] for i in range(min(_PROBE_DOCS, len(docs)))]:
        for key, value in doc.items():
            if not isinstance(value, str) or not value:
                continue
            changed = {**doc, key: value + _PROBE}
            if _differs(task.doc_to_text, doc, changed, on_error=False):
                text.add(key)
            if any(_differs(f, doc, changed, on_error=True) for f in functions):
                answer.add(key)
    first = docs[0] if len(docs) else {}
    return [k for k in first if k in text and k not in answer]


def _differs(function: Callable[[dict], Any], doc: dict, changed: dict, *, on_error: bool) -> bool:
    try:
        return function(doc) != function(changed)
    except Exception:  # a function that cannot take the changed value: counts as reading it (or not)
        return on_error


def perturb_doc(doc: dict, fields: Sequence[str], perturbation: TextPerturbation, doc_id: int, seed: int | None):
    """A copy of `doc` with its input fields perturbed, on HELM's per-instance generator."""
    instance_id = f"id{doc_id}"
    rng = Random(instance_id if seed is None or not perturbation.seeded else str(seed) + instance_id)
    perturbation.start()
    out = dict(doc)
    for key in fields:
        if isinstance(doc.get(key), str):
            out[key] = perturbation.perturb(doc[key], rng)
    return out


class PerturbedDocs(Sequence):
    """A task's evaluation documents, each perturbed when first read (a --limit reads only its docs)."""

    def __init__(self, docs: Sequence[dict], fields: Sequence[str], perturbation: TextPerturbation, seed: int | None):
        self.docs, self.fields, self.perturbation, self.seed = docs, list(fields), perturbation, seed
        self.done: dict[int, dict] = {}
        self.original: dict[int, dict] = {}  # id() of a perturbed doc -> the doc it came from

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = index + len(self) if index < 0 else index
        if index not in self.done:
            doc = self.docs[index]
            perturbed = perturb_doc(doc, self.fields, self.perturbation, index, self.seed)
            self.done[index] = perturbed
            self.original[id(perturbed)] = doc
        return self.done[index]

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))


class PerturbHook:
    """The task hook of one perturbation: every built task evaluates perturbed documents.

    `fields` records, per task, which fields were perturbed (the run's record shows them)."""

    def __init__(self, perturbation: TextPerturbation, seed: int | None = None):
        self.perturbation, self.seed = perturbation, seed
        self.fields: dict[str, list[str]] = {}

    def config_loaded(self, cfg: dict[str, Any], data_dir: Any) -> None:
        pass

    def task_built(self, task: Any) -> None:
        method = "test_docs" if task.has_test_docs() else "validation_docs" if task.has_validation_docs() else None
        if method is None:
            return
        clean = getattr(task, method)()
        fields = input_fields(task, clean)
        self.fields[task.config.task] = fields
        perturbed = PerturbedDocs(clean, fields, self.perturbation, self.seed)
        # lm-eval's eval_docs calls test_docs()/validation_docs() each time: the same perturbed docs
        setattr(task, method, lambda: perturbed)
        sampler = getattr(task, "sampler", None)
        if sampler is not None:
            # with exemplars drawn from the evaluated split, lm-eval leaves the evaluated doc out by
            # equality: hand it the clean doc, so that its clean copy is left out too
            sample = sampler.sample

            def sample_clean(n: int, eval_doc: dict | None = None, **kwargs: Any):
                doc = perturbed.original.get(id(eval_doc), eval_doc) if eval_doc is not None else None
                return sample(n, eval_doc=doc, **kwargs)

            sampler.sample = sample_clean
