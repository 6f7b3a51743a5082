"""harness.perturb against crfm-helm 0.5.16's own perturbation code, on real texts.

crfm-helm's runtime pins conflict with ours, so it lives in a virtual environment of its own
(.ci/helm.sh makes one; HARNESS_HELM_PYTHON names its python) and runs as a subprocess
(tests/helm/oracle.py) on 500 MMLU questions, 500 BoolQ passages and 500 SAMSum dialogues per
perturbation: for the same text, instance id and seed, our text must equal HELM's.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from random import Random

import pytest

from harness.perturb import FAIRNESS_DIR, PERTURBATIONS, WordLists

N = 500
ORACLE = Path(__file__).parent / "helm" / "oracle.py"
WORDS = "{words}"  # the word list's path, filled in per perturbation


def _names(prob: float, source: str, target: str, kind: str, preserve_gender: bool) -> tuple[str, dict]:
    args = {"prob": prob, "source_class": {"race": source}, "target_class": {"race": target}}
    args.update(name_file_path=WORDS, person_name_type=kind, preserve_gender=preserve_gender)
    return "person_name_perturbation.PersonNamePerturbation", args


# our name -> HELM's class (module.Class under helm.benchmark.augmentations) and arguments
SPECS: dict[str, tuple[str, dict]] = {
    "mild_mix": ("mild_mix_perturbation.MildMixPerturbation", {}),
    "lowercase": ("lowercase_perturbation.LowerCasePerturbation", {}),
    "contraction": ("contraction_expansion_perturbation.ContractionPerturbation", {}),
    "expansion": ("contraction_expansion_perturbation.ExpansionPerturbation", {}),
    "space": ("space_perturbation.SpacePerturbation", {"max_spaces": 3}),
    "extra_space": ("extra_space_perturbation.ExtraSpacePerturbation", {"num_spaces": 2}),
    "misspellings": ("misspelling_perturbation.MisspellingPerturbation", {"prob": 0.1}),
    "misspelling_hard": ("misspelling_perturbation.MisspellingPerturbation", {"prob": 0.5}),
    "gender_pronouns": (
        "gender_perturbation.GenderPerturbation",
        {"mode": "pronouns", "prob": 1.0, "source_class": "male", "target_class": "female"},
    ),
    "gender_terms": (
        "gender_perturbation.GenderPerturbation",
        {"mode": "terms", "prob": 1.0, "source_class": "male", "target_class": "female"},
    ),
    "gender_terms_hard": (
        "gender_perturbation.GenderPerturbation",
        {"mode": "terms", "prob": 0.5, "source_class": "male", "target_class": "female"},
    ),
    "dialect": (
        "dialect_perturbation.DialectPerturbation",
        {"prob": 1.0, "source_class": "SAE", "target_class": "AAVE", "mapping_file_path": WORDS},
    ),
    "dialect_hard": (
        "dialect_perturbation.DialectPerturbation",
        {"prob": 0.5, "source_class": "SAE", "target_class": "AAVE", "mapping_file_path": WORDS},
    ),
    "person_name": _names(1.0, "white_american", "black_american", "first_name", True),
    "person_name_first_hard_dont_preserve_gender": _names(0.5, "white_american", "black_american", "first_name", False),
    "person_name_last": _names(1.0, "white", "hispanic", "last_name", False),
}
WORD_FILES = {"dialect": "SAE_to_AAVE_mapping.json", "person_name": "person_names.txt"}


@pytest.fixture(scope="session")
def helm_python() -> str:
    python = os.environ.get("HARNESS_HELM_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip(
            "crfm-helm's interpreter not found: set HARNESS_HELM_PYTHON to the python of a venv with "
            "crfm-helm==0.5.16 (.ci/helm.sh makes one at .ci/venvs/helm)"
        )
    return python


@pytest.fixture(scope="session")
def texts(shared_data) -> dict[str, list[str]]:
    """500 real texts of each kind: MMLU test questions, BoolQ passages, SAMSum dialogues."""
    mmlu: list[str] = []
    for path in sorted((shared_data / "mmlu" / "data" / "test").glob("*_test.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            mmlu += [row[0] for row in csv.reader(f)][:10]
    boolq_file = shared_data / "super_glue" / "BoolQ" / "val.jsonl"
    if not boolq_file.is_file():
        pytest.skip(f"{boolq_file} not in the data mirror")
    with open(boolq_file, encoding="utf-8") as f:
        boolq = [json.loads(line)["passage"] for line in f][:N]
    with open(shared_data / "samsum" / "test.jsonl", encoding="utf-8") as f:
        samsum = [json.loads(line)["context"] for line in f][:N]
    assert len(mmlu) >= N and len(boolq) == N and len(samsum) == N
    return {"mmlu": mmlu[:N], "boolq": boolq, "samsum": samsum}


def helm_outputs(python: str, shared_data: Path, texts: list[str], seed: int | None, tmp: Path) -> dict:
    specs = {}
    for name, (cls, args) in SPECS.items():
        kind = next((k for k in WORD_FILES if name.startswith(k)), None)
        words = str(shared_data / FAIRNESS_DIR / WORD_FILES[kind]) if kind else ""
        specs[name] = [cls, {k: (words if v == WORDS else v) for k, v in args.items()}]
    return helm_perturb(python, specs, texts, seed, tmp)


def helm_perturb(python: str, specs: dict, texts: list[str], seed: int | None, tmp: Path, ids=None) -> dict:
    """crfm-helm's perturbed texts per spec name, from its own interpreter (tests/helm/oracle.py)."""
    # HELM writes benchmark_output/ into the working directory: a temporary one
    done = subprocess.run(
        [python, str(ORACLE)],
        input=json.dumps({"specs": specs, "texts": texts, "seed": seed, "ids": ids}),
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def ours(name: str, shared_data: Path, texts: list[str], seed: int | None) -> list[str]:
    perturbation = PERTURBATIONS[name](WordLists(shared_data / FAIRNESS_DIR))
    out = []
    for i, text in enumerate(texts):
        iid = f"id{i}"
        perturbation.start()
        out.append(
            perturbation.perturb(text, Random(iid if seed is None or not perturbation.seeded else str(seed) + iid))
        )
    return out


# HELM's runs use seed None (the generator is seeded by the instance id alone); 7 checks the seeded path
@pytest.mark.parametrize(("kind", "seed"), [("mmlu", None), ("boolq", None), ("samsum", None), ("samsum", 7)])
def test_perturbed_text_equals_crfm_helms(helm_python, shared_data, texts, kind, seed, tmp_path):
    helm = helm_outputs(helm_python, shared_data, texts[kind], seed, tmp_path)
    changed = {}
    for name in SPECS:
        mine = ours(name, shared_data, texts[kind], seed)
        diffs = [i for i, (a, b) in enumerate(zip(mine, helm[name])) if a != b]
        assert len(helm[name]) == N
        assert not diffs, f"{name} on {kind} doc {diffs[0]}: ours {mine[diffs[0]]!r} HELM {helm[name][diffs[0]]!r}"
        changed[name] = sum(a != b for a, b in zip(mine, texts[kind]))
    # the comparison means something: every perturbation changed real texts (pronouns and names
    # are rare in MMLU questions, so those are held to the other two kinds)
    rare = {"gender_pronouns", "person_name", "person_name_first_hard_dont_preserve_gender", "person_name_last"}
    assert all(n > 0 for name, n in changed.items() if kind != "mmlu" or name not in rare), changed
    print(kind, seed, changed, file=sys.stderr)
