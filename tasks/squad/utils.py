"""SQuAD v1.1 task hooks (lm-eval `!function`): every gold answer as the target, scored against all at once."""

from collections import Counter

from lm_eval.api.registry import get_metric
from lm_eval.api.samplers import ContextSampler

import harness.scorers  # noqa: F401  registers squad_exact_match and squad_f1 with lm-eval

# must be the names in the YAML's metric_list: lm-eval aggregates exactly what process_results returns
SQUAD_METRICS = ("squad_exact_match", "squad_f1")


def gold_answers(doc):
    """All gold answer texts of a question (a few-shot example shows the first)."""
    return list(doc["answers"]["text"])


def score_squad(doc, results):
    """Official v1.1 EM and F1 of the generated answer, each the max over all gold answers."""
    # not lm-eval's list-target path: it scores each gold alone and keeps 1.0 if any is non-zero,
    # which turns F1 into a 0/1 score
    return {name: get_metric(name)(references=[gold_answers(doc)], predictions=[results[0]]) for name in SQUAD_METRICS}


class OtherArticleSampler(ContextSampler):
    """Few-shot examples drawn at random (the run's few-shot seed) from the questions of *other*
    articles than the one asked about: the pool is dev itself (the mirror has no train split), and
    a question's own article would hand the model its paragraph, often its very answer."""

    def sample(self, n, eval_doc=None, df=None, **kwargs):
        if df:
            self.df = df
        docs = self.fewshot_docs()
        title = eval_doc["title"] if eval_doc is not None else None
        if getattr(self, "_titles", (None,))[0] is not self.df:  # questions per article, once per pool
            self._titles = (self.df, Counter(d["title"] for d in docs))
        if len(docs) - self._titles[1][title] < n:
            raise ValueError(f"fewer than {n} few-shot examples outside the article {title!r}")
        chosen: dict[str, dict] = {}
        while len(chosen) < n:  # rejection: the filtered pool's distribution, without building it
            doc = docs[self.rnd.randrange(len(docs))]
            if doc["title"] != title:
                chosen.setdefault(doc["id"], doc)
        return list(chosen.values())
