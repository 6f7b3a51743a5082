"""Retrieval-augmented evaluation: BM25 and dense indexes against their definitions, SQuAD retrieval
recall, the RAG tasks end to end, the index cache, and one-line errors. Real data, real MiniLM."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from clirun import harness

from harness import retrieval
from harness.adapters import task_hooks
from harness.retrieval import index as retrieval_index
from harness.store import RunStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def squad_data(shared_data) -> Path:
    if not (shared_data / "squad" / "dev-v1.1.json").is_file():
        pytest.skip(f"SQuAD v1.1 dev not in the data mirror {shared_data} (squad/dev-v1.1.json)")
    return shared_data


@pytest.fixture(scope="module")
def rag_cache(tmp_path_factory):
    """A harness cache folder of this module's own, so index building and reuse are seen from empty."""
    path = tmp_path_factory.mktemp("harness-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def paragraphs(squad_data):
    return retrieval.read_collection(retrieval.SQUAD_DEV_PARAGRAPHS, squad_data)


@pytest.fixture(scope="module")
def questions(squad_data):
    """Every dev question with the id of its own paragraph, straight from the official JSON."""
    articles = json.loads((squad_data / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    return [
        {"id": qa["id"], "question": qa["question"], "gold": f"{a}-{p}"}
        for a, article in enumerate(articles)
        for p, paragraph in enumerate(article["paragraphs"])
        for qa in paragraph["qas"]
    ]


def test_squad_dev_paragraphs_is_the_2067_unique_paragraphs(paragraphs, squad_data):
    assert len(paragraphs) == 2067 == len({p["text"] for p in paragraphs}) == len({p["id"] for p in paragraphs})
    assert paragraphs[0]["id"] == "0-0" and paragraphs[0]["title"] == "Super_Bowl_50"
    assert retrieval.read_collection(retrieval.SQUAD_DEV_PARAGRAPHS, squad_data) == paragraphs  # stable ids


def okapi_bm25(corpus: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Okapi BM25 from its definition (Robertson & Zaragoza 2009, eq. 3.15), with Lucene's non-negative idf
    ln(1 + (N - df + 0.5) / (df + 0.5)); every query token counts."""
    n = len(corpus)
    avgdl = sum(len(d) for d in corpus) / n
    df = Counter(t for d in corpus for t in set(d))
    scores = np.zeros(n)
    for i, doc in enumerate(corpus):
        tf = Counter(doc)
        for term in query:
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                scores[i] += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(doc) / avgdl))
    return scores


def test_bm25_scores_and_ranking_equal_okapi_bm25_by_definition(paragraphs, questions, tmp_path):
    passages = paragraphs[:150]
    index = retrieval.build_index(passages, tmp_path / "bm25", "bm25", show_progress=False)
    corpus = retrieval.bm25_tokens([p["text"] for p in passages], False)  # the same tokenisation
    asked = [q["question"] for q in questions if int(q["gold"].split("-")[0]) < 3][::7][:40]
    hits = index.search(asked, 5)
    loaded = retrieval.Index.load(tmp_path / "bm25").search(asked, 5)
    assert [[(i, s) for i, s, _ in row] for row in hits] == [[(i, s) for i, s, _ in row] for row in loaded]
    for question, row, tokens in zip(asked, hits, retrieval.bm25_tokens(asked, False)):
        # Lucene (and bm25s' "lucene" method) leave out the constant factor (k1 + 1): same ranking
        expected = okapi_bm25(corpus, tokens) / (1.5 + 1)
        order = np.argsort(-expected, kind="stable")[:5]
        assert [s for _, s, _ in row] == pytest.approx(expected[order].tolist(), rel=1e-5), question
        got_ids = [pid for pid, _, _ in row]
        # same ranking; equal reference scores may come in either order
        assert [round(expected[[p["id"] for p in passages].index(pid)], 4) for pid in got_ids] == [
            round(x, 4) for x in expected[order]
        ]
        assert got_ids[0] == passages[order[0]]["id"] or expected[order[0]] == expected[order[1]]
    assert index.spec["options"] == retrieval.BM25_OPTIONS and index.spec["collection_sha256"]


def test_dense_scores_are_cosine_similarities_of_minilm(paragraphs, questions, tmp_path):
    from sentence_transformers import SentenceTransformer

    passages = paragraphs[:60]
    retrieval.build_index(passages, tmp_path / "dense", "dense", show_progress=False)
    asked = [q["question"] for q in questions if int(q["gold"].split("-")[0]) == 0][::20][:12]
    hits = retrieval.Index.load(tmp_path / "dense").search(asked, 4)
    model = SentenceTransformer(str(retrieval.dense_model_dir()), device="cpu")
    p = model.encode([x["text"] for x in passages], convert_to_numpy=True)
    q = model.encode(asked, convert_to_numpy=True)
    cosine = (q @ p.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(p, axis=1)[None, :]
    for row, sims in zip(hits, cosine):
        order = np.argsort(-sims)[:4]
        assert [pid for pid, _, _ in row] == [passages[i]["id"] for i in order]
        assert [s for _, s, _ in row] == pytest.approx(sims[order].tolist(), abs=1e-5)
    spec = json.loads((tmp_path / "dense" / retrieval.SPEC_FILE).read_text())
    assert spec["model"]["name"] == retrieval.DENSE_MODEL and len(spec["model"]["weights_sha256"]) == 64
    assert spec["passages"] == 60 and spec["build_seconds"] > 0 and spec["libraries"]["faiss-cpu"]


def test_bm25_recall_on_all_squad_dev_questions_through_the_task(
    squad_data, rag_cache, questions, monkeypatch, tmp_path
):
    """The task's retrieved ids, gold flags and recall@3 / MRR@3 against an independent recount."""
    from harness.tasks import build_task_manager, packaged_tasks_dir

    tm = build_task_manager((), squad_data, hooks=task_hooks())
    task = tm.load(["squad_rag_bm25"])["tasks"]["squad_rag_bm25"]
    docs = task.eval_docs  # the dev set (SQuAD tasks name it test_split, see squad.yaml)
    assert len(docs) == len(questions) == 10570
    gold = {q["id"]: q["gold"] for q in questions}
    hits, reciprocal = [], []
    for doc in docs:
        ids = [r["id"] for r in doc["retrieved"]]
        assert len(ids) == 3 and doc["passages"].count("\n\n") >= 2
        assert [r["gold"] for r in doc["retrieved"]] == [i == gold[doc["id"]] for i in ids]
        hits.append(gold[doc["id"]] in ids)
        reciprocal.append(1 / (ids.index(gold[doc["id"]]) + 1) if gold[doc["id"]] in ids else 0.0)
        scores = [r["score"] for r in doc["retrieved"]]
        assert scores == sorted(scores, reverse=True)
    recall, mrr = float(np.mean(hits)), float(np.mean(reciprocal))
    print(f"BM25 on {len(docs)} SQuAD dev questions: recall@3 {recall:.4f}, MRR@3 {mrr:.4f}")
    assert recall > 0.75 and mrr > 0.65  # SQuAD questions share words with their paragraph
    metrics = [task.process_results(doc, ["x"]) for doc in docs.select(range(300))]
    assert np.mean([m["recall@3"] for m in metrics]) == pytest.approx(np.mean(hits[:300]))
    assert np.mean([m["mrr@3"] for m in metrics]) == pytest.approx(np.mean(reciprocal[:300]))
    assert task.aggregation()["recall@3"] is not None and task.higher_is_better()["mrr@3"] is True

    # a second load of the task searches nothing: the split's results are kept beside the cached index
    monkeypatch.setattr(retrieval.Index, "search", lambda *a, **k: pytest.fail("searched again"))
    again = build_task_manager((), squad_data, hooks=task_hooks()).load(["squad_rag_bm25"])["tasks"]["squad_rag_bm25"]
    assert again.eval_docs["retrieved"][:50] == docs["retrieved"][:50]

    # the bundled task says order: best_last; best_first puts the same passages in rank order
    texts = {p["id"]: f"{p['title']}: {p['text']}" for p in retrieval.squad_dev_paragraphs(squad_data)}
    for doc in docs.select(range(50)):
        assert doc["passages"].split("\n\n") == [texts[r["id"]] for r in doc["retrieved"]][::-1]
    (tmp_path / "first.yaml").write_text(
        f"include: {packaged_tasks_dir() / 'squad' / 'squad_rag_bm25.yaml'}\ntask: squad_rag_bm25_first\nmetadata:\n  version: 1.0\n  harness_rag:\n"
        "    collection: squad_dev_paragraphs\n    retriever: bm25\n    k: 3\n    passage_template: '{{title}}: {{text}}'\n"
        "    order: best_first\n    gold: '{{context}}'\n"
    )
    tm = build_task_manager((str(tmp_path),), squad_data, hooks=task_hooks())
    first = tm.load(["squad_rag_bm25_first"])["tasks"]["squad_rag_bm25_first"].eval_docs.select(range(50))
    for mine, theirs in zip(first, docs.select(range(50))):
        assert mine["retrieved"] == theirs["retrieved"]
        assert mine["passages"].split("\n\n") == theirs["passages"].split("\n\n")[::-1]


@pytest.mark.model
def test_harness_run_records_passages_and_retrieval_metrics(
    squad_data, rag_cache, smollm2_weights, tmp_path, monkeypatch
):
    out = harness(
        "run",
        "--model",
        "smollm2-135m",
        "--tasks",
        "squad_rag_bm25",
        "--limit",
        "5",
        "--data-dir",
        str(squad_data),
        "--output",
        str(tmp_path / "runs"),
    )
    assert out.returncode == 0, out.stderr
    (run_dir,) = RunStore(tmp_path / "runs").runs()  # the folder also holds the store's index.sqlite
    results = json.loads((run_dir / "results.json").read_text())
    scores = results["results"]["squad_rag_bm25"]
    for key in ("recall@3,none", "mrr@3,none", "recall@3_stderr,none", "squad_f1,none"):
        assert isinstance(scores[key], float), key
    with gzip.open(run_dir / "samples.jsonl.gz", "rt") as f:
        samples = [json.loads(line) for line in f]
    assert len(samples) == 5
    for s in samples:
        assert len(s["doc"]["retrieved"]) == 3
        assert s["prompt"].startswith("Background: " + s["doc"]["passages"] + "\n\nQuestion: ")
        assert s["recall@3"] == float(any(r["gold"] for r in s["doc"]["retrieved"]))
    assert scores["recall@3,none"] == pytest.approx(np.mean([s["recall@3"] for s in samples]))
    meta = results["configs"]["squad_rag_bm25"]["metadata"]
    assert meta["harness_rag_index"]["retriever"] == "bm25" and meta["harness_rag_index"]["passages"] == 2067

    # the index the run built is in the cache: the next use loads it, builds nothing
    built = list((rag_cache / "rag").iterdir())
    assert len(built) == 1 and built[0].name.startswith("squad_dev_paragraphs-bm25-")
    monkeypatch.setattr(retrieval_index, "build_index", lambda *a, **k: pytest.fail("the cached index was rebuilt"))
    index = retrieval.cached_index(retrieval.SQUAD_DEV_PARAGRAPHS, "bm25", squad_data)
    assert index.folder == built[0]


def test_index_cache_key_follows_the_collection(rag_cache, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "\n".join(
            json.dumps({"id": str(i), "text": t})
            for i, t in enumerate(["red apples and pears", "blue sky over the sea", "green grass"])
        )
    )
    first = retrieval.cached_index(str(docs), "bm25")
    assert retrieval.cached_index(str(docs), "bm25").folder == first.folder
    docs.write_text(docs.read_text() + "\n" + json.dumps({"id": "3", "text": "yellow sun"}))
    second = retrieval.cached_index(str(docs), "bm25")
    assert second.folder != first.folder and len(second.passages) == 4
    assert second.search(["sun"], 1)[0][0][0] == "3"


def test_txt_folder_collection_and_chunking(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("one two three four five six seven")
    (folder / "sub" / "b.txt").write_text("eight nine")
    passages = retrieval.read_collection(folder)
    assert [p["id"] for p in passages] == ["a", "sub/b"]
    index = retrieval.build_index(passages, tmp_path / "idx", "bm25", chunk=3, show_progress=False)
    assert [p["id"] for p in index.passages] == ["a#0", "a#1", "a#2", "sub/b#0"]
    assert index.spec["passages"] == 4 and index.spec["source_documents"] == 2
    assert index.search(["seven"], 1)[0][0][:1] == ("a#2",)


def test_index_commands_and_one_line_errors(squad_data, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "\n".join(
            json.dumps({"id": f"d{i}", "title": "t", "text": t})
            for i, t in enumerate(["the cat sat on the mat", "dogs chase cats", "stock markets fell"])
        )
    )
    out = harness("index", "build", "--docs", str(docs), "--out", str(tmp_path / "idx"), "--retriever", "bm25")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "idx" / "spec.json").read_text())["passages"] == 3
    out = harness("index", "search", str(tmp_path / "idx"), "markets", "-k", "1")
    assert out.returncode == 0 and out.stdout.startswith("1. d2 ")

    bad_yaml = tmp_path / "tasks"
    bad_yaml.mkdir()
    bundled = Path(__file__).resolve().parents[1] / "tasks" / "squad" / "squad_rag_bm25.yaml"

    def rag_task(name: str, collection: str, retriever: str) -> None:  # the bundled task, another retrieval
        (bad_yaml / f"{name}.yaml").write_text(
            f"include: {bundled}\ntask: {name}\nmetadata:\n  version: 1.0\n  harness_rag:\n"
            f"    collection: {collection}\n    retriever: {retriever}\n    k: 3\n"
            "    passage_template: '{{title}}: {{text}}'\n    gold: '{{context}}'\n"
        )

    rag_task("rag_missing", str(tmp_path / "absent.jsonl"), "bm25")
    rag_task("rag_unknown", "squad_dev_paragraphs", "tfidf")
    cases = [
        (
            (
                "index",
                "build",
                "--docs",
                str(tmp_path / "absent.jsonl"),
                "--out",
                str(tmp_path / "x"),
                "--retriever",
                "bm25",
            ),
            "absent.jsonl",
        ),
        (
            ("index", "build", "--docs", str(docs), "--out", str(tmp_path / "y"), "--retriever", "tfidf"),
            "unknown retriever 'tfidf'",
        ),
        (
            ("index", "build", "--docs", "squad_dev_paragraphs", "--out", str(tmp_path / "z"), "--retriever", "bm25"),
            "--data-dir",
        ),
        (("index", "search", str(tmp_path), "q"), "not a harness index"),
        (
            (
                "run",
                "--tasks",
                "rag_missing",
                "--include-path",
                str(bad_yaml),
                "--data-dir",
                str(squad_data),
                "--limit",
                "1",
            ),
            "absent.jsonl",
        ),
        (
            (
                "run",
                "--tasks",
                "rag_unknown",
                "--include-path",
                str(bad_yaml),
                "--data-dir",
                str(squad_data),
                "--limit",
                "1",
            ),
            "unknown retriever 'tfidf'",
        ),
    ]
    for args, words in cases:
        out = harness(*args, env={"HARNESS_DATA_DIR": ""})
        assert out.returncode == 2, (args, out.stderr)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, out.stderr)
