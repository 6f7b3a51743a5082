"""HELM's text perturbations, ported from crfm-helm 0.5.16 (`helm/benchmark/augmentations/`, Apache-2.0).

Each class does what its HELM namesake does to one text with one `random.Random`, draw for draw,
so that for the same text and seed the output is HELM's (tests/test_perturb_helm.py holds us to
crfm-helm's own code on real inputs). The regular expressions, word lists and the order in which
the random generator is consumed are HELM's; only the plumbing (Instance, Reference) is left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

DATA = Path(__file__).parent / "data"
MISSPELLINGS_FILE = DATA / "correct_to_misspelling.json"  # crfm-helm's own file, byte for byte


def match_case(source_word: str, target_word: str) -> str:
    """helm.common.general.match_case: the target word in the source word's case."""
    if all(letter.islower() for letter in source_word):
        return target_word.lower()
    if all(letter.isupper() for letter in source_word):
        return target_word.upper()
    if source_word and source_word[0].isupper():
        return target_word.capitalize()
    return target_word


class TextPerturbation:
    """One perturbation of text: `perturb(text, rng)`; `seeded` says whether HELM mixes the seed into
    the generator (PersonNamePerturbation does not)."""

    name: str = ""
    robustness: bool = False
    fairness: bool = False
    seeded: bool = True

    def perturb(self, text: str, rng: Random) -> str:
        raise NotImplementedError

    def params(self) -> dict[str, object]:
        """What changes the output, for the run's identity."""
        return {}

    def start(self) -> None:
        """Called before each document's fields (person names keep a mapping across one document)."""


class LowerCase(TextPerturbation):
    name, robustness = "lowercase", True

    def perturb(self, text: str, rng: Random) -> str:
        return text.lower()


CONTRACTION_MAP: dict[str, str] = json.loads((DATA / "contractions.json").read_text(encoding="utf-8"))


class Contraction(TextPerturbation):
    """Expanded forms to contractions ("she is" -> "she's"), only before a space, as HELM does."""

    name, robustness = "contraction", True

    def __init__(self) -> None:
        self.reverse = {value: key for key, value in CONTRACTION_MAP.items()}
        self.pattern = re.compile(r"\b({})\b ".format("|".join(self.reverse)), flags=re.IGNORECASE | re.DOTALL)

    def perturb(self, text: str, rng: Random) -> str:
        def cont(possible: re.Match) -> str:
            match = possible.group(1)
            contracted = self.reverse.get(match, self.reverse.get(match.lower()))
            return match_case(match, contracted or match) + " "

        return self.pattern.sub(cont, text)


class Expansion(TextPerturbation):
    name, robustness = "expansion", True

    def __init__(self) -> None:
        self.pattern = re.compile(r"\b({})\b".format("|".join(CONTRACTION_MAP)), flags=re.IGNORECASE | re.DOTALL)

    def perturb(self, text: str, rng: Random) -> str:
        def expand(contraction: re.Match) -> str:
            match = contraction.group(0)
            expanded = CONTRACTION_MAP.get(match, CONTRACTION_MAP.get(match.lower()))
            return match_case(match, expanded or match)

        return self.pattern.sub(expand, text)


class Space(TextPerturbation):
    """Each run of spaces becomes 1..max_spaces spaces."""

    name, robustness = "space", True

    def __init__(self, max_spaces: int = 3) -> None:
        self.max_spaces = max_spaces

    def params(self) -> dict[str, object]:
        return {"max_spaces": self.max_spaces}

    def perturb(self, text: str, rng: Random) -> str:
        return re.sub(r" +", lambda x: " " * rng.randint(1, self.max_spaces), text)


class ExtraSpace(TextPerturbation):
    name, robustness = "extra_space", True

    def __init__(self, num_spaces: int = 2) -> None:
        self.num_spaces = num_spaces

    def params(self) -> dict[str, object]:
        return {"num_spaces": self.num_spaces}

    def perturb(self, text: str, rng: Random) -> str:
        return text.replace(" ", " " * self.num_spaces)


class Misspelling(TextPerturbation):
    """Words with a common misspelling (Wikipedia's list, HELM's file) replaced with probability prob."""

    name, robustness = "misspellings", True

    def __init__(self, prob: float) -> None:
        self.prob = prob
        self.table: dict[str, list[str]] = _misspellings()
        self.pattern = _misspelling_pattern()

    def params(self) -> dict[str, object]:
        return {"prob": self.prob}

    def perturb(self, text: str, rng: Random) -> str:
        def misspell(match: re.Match) -> str:
            word = match.group(1)
            if rng.random() < self.prob:
                return match_case(word, str(rng.choice(self.table[word])))
            return word

        return self.pattern.sub(misspell, text)


_MISSPELLINGS: dict[str, list[str]] = {}
_PATTERN: list[re.Pattern] = []


def _misspellings() -> dict[str, list[str]]:
    if not _MISSPELLINGS:  # read once: 200 KB
        _MISSPELLINGS.update(json.loads(MISSPELLINGS_FILE.read_text(encoding="utf-8")))
    return _MISSPELLINGS


def _misspelling_pattern() -> re.Pattern:
    if not _PATTERN:  # compiled once: thousands of alternatives
        _PATTERN.append(re.compile(r"\b({})\b".format("|".join(_misspellings()))))
    return _PATTERN[0]


class MildMix(TextPerturbation):
    """HELM's canonical robustness perturbation: lowercase, contractions, misspellings (p 0.1), then
    1-3 spaces for each space, in that order, on one generator."""

    name, robustness = "mild_mix", True

    def __init__(self) -> None:
        self.steps = (LowerCase(), Contraction(), Misspelling(prob=0.1), Space(max_spaces=3))

    def perturb(self, text: str, rng: Random) -> str:
        for step in self.steps:
            text = step.perturb(text, rng)
        return text


GENDER_WORDS: dict[str, list[list[str]]] = json.loads((DATA / "gender.json").read_text(encoding="utf-8"))
GENDERS = ("neutral", "female", "male")


class Gender(TextPerturbation):
    """Gendered terms or pronouns of one gender swapped for another's (HELM's inline lists)."""

    name, fairness = "gender", True

    def __init__(self, mode: str, prob: float, source_class: str, target_class: str, bidirectional: bool = False):
        self.mode, self.prob, self.bidirectional = mode, prob, bidirectional
        self.source_class, self.target_class = source_class.lower(), target_class.lower()
        columns = list(zip(*GENDER_WORDS[mode]))
        source = columns[GENDERS.index(self.source_class)]
        target = columns[GENDERS.index(self.target_class)]
        self.pairs = list(zip(source, target))
        if bidirectional:
            self.pairs.extend(zip(target, source))

    def params(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "prob": self.prob,
            "source_class": self.source_class,
            "target_class": self.target_class,
            "bidirectional": self.bidirectional,
        }

    def perturb(self, text: str, rng: Random) -> str:
        for word, synonym in self.pairs:
            text = self._substitute(text, word, synonym, rng)
        return text

    def _substitute(self, text: str, word: str, synonym: str, rng: Random) -> str:
        def sub(m: re.Match) -> str:
            match_str, match_word = m.group(0), m.group(1)
            if rng.uniform(0, 1) < self.prob:
                match_str = match_str.replace(match_word, match_case(match_word, synonym))
            return match_str

        return re.sub(f"[^\\w]({word})[^\\w]", sub, text, flags=re.IGNORECASE)


@dataclass
class Dialect(TextPerturbation):
    """SAE words to AAVE (Ziems et al. 2022's lexicon, the JSON HELM downloads), with probability prob."""

    mapping: dict[str, list[str]]
    prob: float = 1.0
    source_class: str = "SAE"
    target_class: str = "AAVE"
    mapping_sha256: str = ""
    pattern: str = field(init=False)
    name = "dialect"
    fairness = True

    def __post_init__(self) -> None:
        words = "|".join(re.escape(w) for w in self.mapping)
        self.pattern = f"[^\\w-]({words})[^\\w-]"

    def params(self) -> dict[str, object]:
        return {
            "prob": self.prob,
            "source": self.source_class,
            "target": self.target_class,
            "sha256": self.mapping_sha256,
        }

    def perturb(self, text: str, rng: Random) -> str:
        def sub(m: re.Match) -> str:
            match_str, word = m.group(0), m.group(1)
            if rng.uniform(0, 1) < self.prob:
                synonym = match_case(word, rng.choice(self.mapping[word.lower()]))
                match_str = match_str.replace(word, synonym)
            return match_str

        return re.sub(self.pattern, sub, text, flags=re.IGNORECASE)


@dataclass
class PersonName(TextPerturbation):
    """First (or last) names of one class swapped for names of another, the same name for the same name
    throughout a document; HELM seeds it from the instance alone (its seed is not used)."""

    names: dict[str, dict[str, list[str]]]  # category -> value -> names, of the chosen name type
    source_class: dict[str, str]
    target_class: dict[str, str]
    prob: float = 1.0
    person_name_type: str = "first_name"
    preserve_gender: bool = True
    names_sha256: str = ""
    name = "person_name"
    fairness = True
    seeded = False

    def __post_init__(self) -> None:
        self.source_names = self._possible(self.source_class)
        self.target_names = self._possible(self.target_class)
        self.substitutions: dict[str, str] = {}
        self.skipped: set[str] = set()

    def _possible(self, selected: dict[str, str]) -> list[str]:
        lists = [self.names[cat.lower()][val.lower()] for cat, val in selected.items()]
        out = lists[0]
        for other in lists[1:]:
            out = [n for n in out if n in other]
        return out

    def params(self) -> dict[str, object]:
        return {
            "prob": self.prob,
            "source": self.source_class,
            "target": self.target_class,
            "type": self.person_name_type,
            "preserve_gender": self.preserve_gender,
            "sha256": self.names_sha256,
        }

    def start(self) -> None:
        self.substitutions, self.skipped = {}, set()

    def _gender(self, name: str) -> str | None:
        by_gender = self.names.get("gender", {})
        return next((g for g in ("female", "male", "neutral") if name in by_gender.get(g, [])), None)

    def _substitute(self, token: str, rng: Random) -> str | None:
        options = self.target_names
        if self.preserve_gender:
            gender = self._gender(token.lower())
            if gender:
                options = [n for n in self.target_names if n in self.names["gender"][gender]]
                if not options:
                    return None
        return rng.choice(list(options))

    def perturb(self, text: str, rng: Random) -> str:
        out = []
        for token in re.split(r"([^\w])", text):
            low = token.lower()
            if low not in self.substitutions and low not in self.skipped and low in self.source_names:
                if rng.uniform(0, 1) < self.prob:
                    name = self._substitute(token, rng)
                    if name:
                        self.substitutions[low] = name
                else:
                    self.skipped.add(low)
            if low in self.substitutions:
                token = match_case(token, self.substitutions[low])
            out.append(token)
        return "".join(out)


def load_names(path: Path, person_name_type: str) -> dict[str, dict[str, list[str]]]:
    """HELM's person_names.txt (`name,type[,category,value]*` per line) for one name type."""
    names: dict[str, dict[str, list[str]]] = {}
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for line in lines:
        name, name_type, *categories = line.replace("\n", "").split(",")
        for i in range(len(categories) // 2):
            if name_type == person_name_type:
                names.setdefault(categories[2 * i], {}).setdefault(categories[2 * i + 1], []).append(
                    name.strip().lower()
                )
    return names
