"""Perturbations of a task's input, as HELM perturbs its instances (robustness, fairness).

`plan_perturbations("robustness,dialect", data_dir)` turns the names `harness run --perturb` takes
into the perturbations to run, each a member of one or more *sets* (`robustness`, `fairness`, or a
perturbation named alone); the engine evaluates every member once more, through the `PerturbHook`
task hook (harness.perturb.docs), and harness.scorers.worst_case scores each set as HELM does.

The names are HELM's (`PERTURBATION_SPECS_DICT` keys of crfm-helm 0.5.16's run_expander.py, and
its perturbations' own names), with HELM's parameters. Dialect and person-name substitution need
HELM's word lists, which HELM downloads at run time: here they are read from
`<data-dir>/helm_fairness/` (see shared/data/SOURCES.md); without them `fairness` runs the gender
perturbation alone and names the other two as skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadOptionError, DataUnavailableError
from harness.perturb import text as t

FAIRNESS_DIR = "helm_fairness"
DIALECT_FILE = "SAE_to_AAVE_mapping.json"
NAMES_FILE = "person_names.txt"
VERSION = 1  # of this module's behaviour; enters the run's identity

_Factory = Callable[["WordLists"], t.TextPerturbation]


def _dialect(prob: float) -> _Factory:
    return lambda w: t.Dialect(w.dialect(), prob=prob, mapping_sha256=w.sha256(DIALECT_FILE))


def _names(prob: float, preserve_gender: bool = True, last: bool = False) -> _Factory:
    kind = "last_name" if last else "first_name"
    source, target = (
        ({"race": "white"}, {"race": "hispanic"}) if last else ({"race": "white_american"}, {"race": "black_american"})
    )
    return lambda w: t.PersonName(
        w.names(kind), source, target, prob=prob, person_name_type=kind, preserve_gender=preserve_gender,
        names_sha256=w.sha256(NAMES_FILE),
    )  # fmt: skip


def _gender(mode: str, prob: float) -> _Factory:
    return lambda w: t.Gender(mode, prob, "male", "female")


PERTURBATIONS: dict[str, _Factory] = {
    "mild_mix": lambda w: t.MildMix(),
    "lowercase": lambda w: t.LowerCase(),
    "lower": lambda w: t.LowerCase(),
    "contraction": lambda w: t.Contraction(),
    "expansion": lambda w: t.Expansion(),
    "space": lambda w: t.Space(max_spaces=3),
    "extra_space": lambda w: t.ExtraSpace(num_spaces=2),
    "misspellings": lambda w: t.Misspelling(prob=0.1),
    "misspelling_mild": lambda w: t.Misspelling(prob=0.05),
    "misspelling_medium": lambda w: t.Misspelling(prob=0.2),
    "misspelling_hard": lambda w: t.Misspelling(prob=0.5),
    "gender_pronouns": _gender("pronouns", 1.0),
    "gender_pronouns_easy": _gender("pronouns", 0.1),
    "gender_pronouns_medium": _gender("pronouns", 0.3),
    "gender_pronouns_hard": _gender("pronouns", 0.5),
    "gender_terms": _gender("terms", 1.0),
    "gender_terms_easy": _gender("terms", 0.1),
    "gender_terms_medium": _gender("terms", 0.3),
    "gender_terms_hard": _gender("terms", 0.5),
    "dialect": _dialect(1.0),
    "dialect_easy": _dialect(0.1),
    "dialect_medium": _dialect(0.3),
    "dialect_hard": _dialect(0.5),
    "person_name": _names(1.0),
    "person_name_first_hard_preserve_gender": _names(0.5),
    "person_name_first_hard_dont_preserve_gender": _names(0.5, preserve_gender=False),
    "person_name_last": _names(1.0, preserve_gender=False, last=True),
    "person_name_last_hard": _names(0.5, preserve_gender=False, last=True),
}
# HELM's canonical sets (run_expander.py ROBUSTNESS_/FAIRNESS_PERTURBATION_SPECS)
SETS: dict[str, tuple[str, ...]] = {
    "robustness": ("mild_mix",),
    "fairness": ("dialect", "gender_pronouns", "person_name"),
}


@dataclass
class WordLists:
    """HELM's downloaded word lists, from a data folder."""

    folder: Path | None

    def path(self, name: str) -> Path:
        path = self.folder / name if self.folder else None
        if path is None or not path.is_file():
            where = self.folder or "no --data-dir"
            raise DataUnavailableError(f"HELM's word list {FAIRNESS_DIR}/{name} is not in {where}")
        return path

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.path(name).read_bytes()).hexdigest()

    def dialect(self) -> dict[str, list[str]]:
        return json.loads(self.path(DIALECT_FILE).read_text(encoding="utf-8"))

    def names(self, kind: str) -> dict[str, dict[str, list[str]]]:
        return t.load_names(self.path(NAMES_FILE), kind)


@dataclass
class Plan:
    """The perturbations a run evaluates, the sets they are scored in, and what was skipped and why."""

    members: dict[str, t.TextPerturbation] = field(default_factory=dict)
    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seed: int | None = None

    def identity(self) -> dict[str, Any]:
        """What changes the numbers: members with their parameters (word-list hashes included), sets, seed."""
        return {
            "version": VERSION,
            "seed": self.seed,
            "sets": {k: list(v) for k, v in self.sets.items()},
            "members": {k: {"kind": type(p).__name__, **p.params()} for k, p in self.members.items()},
        }


def parse_perturb(value: str | None) -> tuple[str, ...]:
    """`--perturb` names, comma-separated, checked; () for none."""
    names = tuple(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in SETS and n not in PERTURBATIONS]
    if unknown:
        known = ", ".join([*SETS, *PERTURBATIONS])
        raise BadOptionError(f"--perturb: unknown perturbation '{unknown[0]}' (known: {known})")
    return names


def plan_perturbations(names: tuple[str, ...], data_dir: Path | None, seed: int | None = None) -> Plan:
    """The members of the named sets and perturbations; a set's member whose word list is missing is
    skipped (and named), a perturbation named alone without its word list is an error."""
    words = WordLists(Path(data_dir) / FAIRNESS_DIR if data_dir else None)
    plan = Plan(seed=seed)
    for name in parse_perturb(",".join(names)):
        members = SETS.get(name, (name,))
        kept = []
        for member in members:
            if member not in plan.members:
                try:
                    plan.members[member] = PERTURBATIONS[member](words)
                except DataUnavailableError as exc:
                    if name not in SETS:
                        raise
                    plan.skipped[member] = str(exc)
                    continue
            kept.append(member)
        if kept:
            plan.sets[name] = tuple(kept)
    return plan
