"""DialogSum task hooks (lm-eval `!function`): one doc per dialogue, scored against all its references."""

import datasets
from lm_eval.api.registry import get_metric

import harness.scorers  # noqa: F401  registers the metric names below with lm-eval

# must be the names in the YAML's metric_list: lm-eval aggregates exactly what process_results returns
SUMMARY_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "corpus_bleu")


def group_references(dataset):
    """One doc per dialogue (first-seen order) with `summaries`/`topics` lists; `summary` is the first."""
    groups: dict[str, list[dict]] = {}
    # keyed by the exact dialogue text, not by id, so any id scheme of a hub copy groups the same way;
    # not by its words: test_173 and test_337 are two dialogues that differ only in trailing spaces
    for row in dataset:
        groups.setdefault(row["dialogue"], []).append(row)
    docs = []
    for rows in groups.values():
        first_id = str(rows[0]["id"])
        docs.append(
            {
                # test ids are "test_<n>_<k>" per reference; the dialogue is "test_<n>"
                "id": first_id.rsplit("_", 1)[0] if len(rows) > 1 else first_id,
                "dialogue": rows[0]["dialogue"],
                "summary": rows[0]["summary"],
                "summaries": [r["summary"] for r in rows],
                "topics": [r["topic"] for r in rows],
            }
        )
    return datasets.Dataset.from_list(docs)


def score_against_all_references(doc, results):
    """Every summary metric of the generated text against all of the dialogue's references at once."""
    prediction = results[0]
    # each metric takes a gold that is a list of references (ROUGE: max over them; BLEU: one stream each)
    return {name: get_metric(name)(references=[doc["summaries"]], predictions=[prediction]) for name in SUMMARY_METRICS}
