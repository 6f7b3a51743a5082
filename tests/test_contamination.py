"""The contamination check against lm-eval's decontamination janitor (the oracle for n-grams and
for which evaluation n-grams a text holds), on planted and real data; the fine-tune guard; clean
scores of a stored run against its own samples file."""

from __future__ import annotations

import gzip
import json
import random
import string

import numpy as np
import pytest
from clirun import harness
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.contamination import INPUT, INPUT_AND_LABEL, EvalDoc, EvalNgrams, normalise, word_ngrams

janitor = pytest.importorskip("lm_eval.decontamination.janitor")

TEXT = st.text(
    alphabet=st.sampled_from(list(string.ascii_letters + string.punctuation + " \t\n\r\x0b\u00a0\u2003ÉéßİÆ0123")),
    max_size=300,
)


def oracle_ngrams(text: str, n: int) -> list[str]:
    """lm-eval's own: Janitor.normalize_string, then janitor.word_ngrams (what register_contaminant_python adds)."""
    return list(janitor.word_ngrams(janitor.Janitor(ngram_n=n).normalize_string(text), n))


@settings(max_examples=300, deadline=None)
@given(TEXT, st.integers(1, 14))
def test_ngrams_equal_lm_eval_janitor_on_any_text(text, n):
    assert word_ngrams(text, n) == oracle_ngrams(text, n)
    assert normalise(text) == janitor.Janitor().normalize_string(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=4), st.lists(TEXT, min_size=1, max_size=6), st.integers(2, 6))
def test_hashed_lookup_finds_what_the_janitor_set_holds(inputs, corpus, n):
    """Every document's n-grams seen == those in the janitor's set of the corpus (each text on its own)."""
    docs = [EvalDoc("t", i, str(i), text, " answer words here") for i, text in enumerate(inputs)]
    index = EvalNgrams(docs, n)
    dirt = janitor.Janitor(ngram_n=n)
    for text in corpus:
        index.feed(text)
        dirt.register_contaminant_python(text)
    for doc, found in zip(docs, index.results()):
        grams = set(oracle_ngrams(doc.input + doc.label, n))
        assert found.ngrams == len(grams)
        assert found.matched == len(grams & dirt.dirt_ngrams)


def test_blocks_and_lines_of_one_file_continue_each_other(tmp_path, monkeypatch):
    """An n-gram across a read block or a line break of a text file is found (the file is one text)."""
    import harness.contamination.overlap as overlap
    import harness.contamination.sources as sources

    monkeypatch.setattr(sources, "BLOCK_CHARS", 7)
    monkeypatch.setattr(overlap, "BLOCK_WORDS", 3)
    words = [f"w{i}" for i in range(40)]
    (tmp_path / "a.txt").write_text("\n".join(" ".join(words[i : i + 3]) for i in range(0, 40, 3)), encoding="utf-8")
    index = EvalNgrams([EvalDoc("t", 0, "h", " ".join(words), "")], 13)
    for text, new, _ in sources.read_source(str(tmp_path / "a.txt")):
        index.feed(text, new)
    (result,) = index.results()
    assert (result.matched, result.ngrams, result.longest) == (28, 28, 40)


# ------------------------------------------------------------------------------------ planted
def _change_every_20th(text: str) -> str:
    parts = text.split(" ")
    for i in range(10, len(parts), 20):
        parts[i] = "qzxv"
    return " ".join(parts)


def _wikitext_10mb(shared_data, path):
    """10 MB of WikiText-2 (both files; their lines shuffled again per copy, so copies differ at line ends)."""
    lines = []
    for name in ("wikitext-2/wiki.test.tokens", "wikitext-2-raw-reconstructed/wiki.test.raw"):
        lines += (shared_data / "wikitext" / name).read_text(encoding="utf-8").splitlines()
    rng, size = random.Random(0), 0
    with open(path, "w", encoding="utf-8") as f:
        while size < 10 * 2**20:
            rng.shuffle(lines)
            text = "\n".join(lines) + "\n"
            f.write(text)
            size += len(text.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def planted(shared_data, tmp_path_factory):
    """SAMSum test: of its documents with 60 words or more, 50 verbatim (as fine-tuning pairs), 50 with one word in twenty changed,
    50 with their dialogue alone, in a folder with 10 MB of WikiText; the check's report of it."""
    from harness.contamination.docs import load_leaf_tasks, task_eval_docs

    (task,), _ = load_leaf_tasks(["samsum"], shared_data)
    docs = list(task_eval_docs(task))
    rng = random.Random(1)
    # long enough that one word in twenty changed leaves whole 13-grams between the changes
    chosen = rng.sample([d.doc_id for d in docs if len(d.input.split()) >= 60], 150)
    groups = {"verbatim": chosen[:50], "changed": chosen[50:100], "input": chosen[100:]}
    root = tmp_path_factory.mktemp("planted")
    corpus = root / "corpus"
    (corpus / "sub").mkdir(parents=True)
    texts = {}
    with open(corpus / "pairs.jsonl", "w", encoding="utf-8") as f:
        for i in groups["verbatim"]:
            f.write(json.dumps({"prompt": docs[i].input, "completion": docs[i].label}) + "\n")
            texts[i] = docs[i].input + docs[i].label
    with open(corpus / "sub" / "rows.jsonl", "w", encoding="utf-8") as f:
        for i in groups["changed"]:
            texts[i] = _change_every_20th(docs[i].input + docs[i].label)
            f.write(json.dumps({"text": texts[i]}) + "\n")
        for i in groups["input"]:
            texts[i] = docs[i].input
            f.write(json.dumps({"id": i, "body": texts[i]}) + "\n")
    wiki = _wikitext_10mb(shared_data, corpus / "wikitext.txt")
    out = harness(
        "contamination",
        "--data",
        str(corpus),
        "--tasks",
        "samsum",
        "--data-dir",
        str(shared_data),
        "--json",
        str(root / "flags.json"),
        "--md",
        str(root / "report.md"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    dirt = janitor.Janitor()
    for text in texts.values():
        dirt.register_contaminant_python(text)
    dirt.register_contaminant_python(wiki.read_text(encoding="utf-8"))
    flags = json.loads((root / "flags.json").read_text(encoding="utf-8"))
    return docs, groups, flags, dirt, out


def test_planted_documents_are_found_with_their_class_and_share(planted):
    docs, groups, flags, dirt, _ = planted
    found = {row["doc_id"]: row for row in flags["flagged"]}
    for i in groups["verbatim"]:
        assert found[i]["kind"] == INPUT_AND_LABEL and found[i]["share"] == 1.0
        assert found[i]["longest"] == len(janitor.Janitor().normalize_string(docs[i].input + docs[i].label).split())
    for group in ("changed", "input"):
        for i in groups[group]:
            grams = set(oracle_ngrams(docs[i].input + docs[i].label, 13))
            assert found[i]["matched"] == len(grams & dirt.dirt_ngrams)  # the janitor's share
            assert 0 < found[i]["share"] < 1
    assert all(found[i]["kind"] == INPUT for i in groups["input"])
    assert all(found[i]["kind"] != "clean" for i in groups["changed"])
    shares = [found[i]["share"] for i in groups["changed"]]
    assert 0.2 < float(np.mean(shares)) < 0.6  # one word in 20 kills 13 of every 20 n-grams
    assert found[groups["verbatim"][0]]["doc_hash"] == docs[groups["verbatim"][0]].doc_hash


def test_no_unplanted_document_is_flagged_and_the_janitor_agrees(planted):
    docs, groups, flags, dirt, out = planted
    planted_ids = {i for ids in groups.values() for i in ids}
    unplanted = [d for d in docs if d.doc_id not in planted_ids]
    oracle = [d.doc_id for d in unplanted if set(oracle_ngrams(d.input + d.label, 13)) & dirt.dirt_ngrams]
    assert oracle == []
    assert {row["doc_id"] for row in flags["flagged"]} == planted_ids
    summary = flags["tasks"]["samsum"]
    counts = summary["counts"]
    assert counts["input"] >= 50 and counts["input-and-label"] >= 50 and sum(counts.values()) == 150
    assert summary["documents"] == len(docs) and summary["flagged"] == 150
    assert "samsum" in out.stdout and "150" in out.stdout  # the table on screen


# ------------------------------------------------------------------------------------ fine-tune guard
def test_finetune_refuses_the_evaluated_split_in_one_line(shared_data, tmp_path):
    out = harness(
        "finetune", "--task", "samsum", "--split", "test", "--out", str(tmp_path / "o"), "--data-dir", str(shared_data)
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "evaluated on its test split" in lines[0] and "--allow-eval-split" in lines[0]
    assert not (tmp_path / "o").exists()


def test_finetune_pairs_carry_their_overlap_with_the_evaluated_split(shared_data):
    """SAMSum validation pairs against SAMSum test: the flagged documents are those whose janitor
    n-grams meet the janitor set of the training pairs."""
    from harness.contamination.docs import load_leaf_tasks, task_eval_docs
    from harness.finetune import load_train_data

    data = load_train_data(None, "samsum", "validation", str(shared_data))
    overlap = data.contamination
    dirt = janitor.Janitor()
    for e in data.examples:
        dirt.register_contaminant_python(e.prompt + e.completion)
    (task,), _ = load_leaf_tasks(["samsum"], shared_data)
    expected = sorted(
        d.doc_hash for d in task_eval_docs(task) if set(oracle_ngrams(d.input + d.label, 13)) & dirt.dirt_ngrams
    )
    assert overlap["split"] == "test" and overlap["trained_on"] == "validation" and overlap["documents"] == 819
    assert overlap["flagged_doc_hashes"] == expected and overlap["flagged"] == len(expected) > 0


def test_adapter_card_overlap_reaches_the_record_and_the_ladder(tmp_path):
    from harness.adapters.lora import read_adapter
    from harness.record import RunRecord
    from harness.reports.ladder import ladder_markdown, overlap_note

    overlap = {"task": "samsum", "split": "test", "trained_on": "validation", "documents": 819, "flagged": 6}
    overlap.update(counts={"input": 3, "input-and-label": 3, "label": 0}, longest=117, n=13)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"0")
    (tmp_path / "card.json").write_text(json.dumps({"base_model": {"sha256": "x"}, "contamination": overlap}))
    identity = read_adapter(tmp_path)
    assert identity["contamination"] == overlap
    results = {"results": {"samsum": {"rougeL,none": 0.3}}, "harness": {"model": {"name": "m", "adapter": identity}}}
    record = RunRecord("r", None, results, {}, {})
    assert record.contamination == {"samsum": overlap}
    from harness.reports.leaderboard import _row_data, build_leaderboard

    (row,) = build_leaderboard([record]).rows
    assert (
        row.cells["samsum"].contamination == overlap and _row_data(row)["cells"]["samsum"]["contamination"] == overlap
    )
    note = overlap_note(overlap)
    assert "6 of 819 documents" in note and "3 input-and-label" in note
    from harness.reports.ladder import RungRow

    rows = [
        RungRow("zero", "samsum", "a", "rougeL", 0.2),
        RungRow("LoRA", "samsum", "b", "rougeL", 0.3, overlap=overlap),
    ]
    assert f"- LoRA: {note}" in ladder_markdown("t", "", rows)


# ------------------------------------------------------------------------------------ clean scores
@pytest.mark.model
def test_clean_scores_of_a_stored_run_pair_by_doc_hash(tmp_path, smollm2_weights):
    """A stored run's samples carry the doc_hash the check computes; its clean score is the mean over
    the unflagged samples of samples.jsonl.gz."""
    from harness.engine import run_evaluation
    from harness.spec import RunSpec
    from harness.store import RunStore

    run_dir = RunStore(tmp_path / "runs").save(
        run_evaluation(RunSpec(model="smollm2-135m", tasks=("demo_capitals",), limit=12, batch_size=4))
    )
    with gzip.open(run_dir / "samples.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    # doc 0 whole (question and answer), doc 2's question alone (7-grams: the template is 6 words)
    (tmp_path / "train.txt").write_text(
        "Question: What is the capital of France?\nAnswer: Paris\nQuestion: What is the capital of Italy?\n",
        encoding="utf-8",
    )
    flags = tmp_path / "flags.json"
    out = harness(
        "contamination", "--data", str(tmp_path / "train.txt"), "-t", "demo_capitals", "-n", "7", "--json", str(flags)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    flagged = {r["doc_hash"] for r in json.loads(flags.read_text())["flagged"]}
    assert len(flagged) == 2 and flagged <= {r["doc_hash"] for r in rows}
    assert {r["doc"]["country"] for r in rows if r["doc_hash"] in flagged} == {"France", "Italy"}
    out = harness("compare", str(run_dir), "--exclude", str(flags))
    assert out.returncode == 0, out.stderr[-2000:]
    clean = [r["acc"] for r in rows if r["doc_hash"] not in flagged]
    line = next(line for line in out.stdout.splitlines() if line.startswith("| demo_capitals"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == str(len(rows)) and float(cells[3]) == pytest.approx(np.mean([r["acc"] for r in rows]), abs=1e-4)
    assert cells[5] == str(len(clean)) and float(cells[6]) == pytest.approx(np.mean(clean), abs=1e-4)
    assert float(cells[8]) == pytest.approx(np.mean(clean) - np.mean([r["acc"] for r in rows]), abs=2e-4)
    # two runs: B against A on the clean documents (the run against itself: no difference, McNemar)
    out = harness("compare", str(run_dir), str(run_dir), "--exclude", str(flags))
    assert out.returncode == 0, out.stderr[-2000:]
    line = [line for line in out.stdout.splitlines() if line.startswith("| demo_capitals")][1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[11:] == ["+0.0000", "[+0.0000, +0.0000]", "1", "mcnemar"]


def test_check_prompts_finds_an_example_that_is_the_document_itself(shared_data, tmp_path):
    """first_n examples from a train split that holds the test rows: the prompts of the first two
    documents show the document itself (lm-eval drops the asked document only when examples come
    from the test split by name), so those two are flagged whole, and no other."""
    lines = [
        line
        for line in (shared_data / "wikitext" / "wikitext-2" / "wiki.test.tokens").read_text().splitlines()
        if len(line.split()) > 40
    ][::150][:6]  # paragraphs of different articles
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": t, "topic": f"topic {i}"}) + "\n" for i, t in enumerate(lines)))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "selfcheck.yaml").write_text(
        f"""task: fewshot_selfcheck
dataset_path: json
dataset_kwargs:
  data_files:
    train: {rows}
    test: {rows}
test_split: test
fewshot_split: train
fewshot_config:
  sampler: first_n
num_fewshot: 2
output_type: generate_until
doc_to_text: "Passage: {{{{text}}}}\\nTopic:"
doc_to_target: " {{{{topic}}}}"
metric_list:
  - metric: exact_match
"""
    )
    flags = tmp_path / "flags.json"
    out = harness(
        "contamination",
        "--check-prompts",
        "-t",
        "fewshot_selfcheck",
        "--include-path",
        str(tasks),
        "--json",
        str(flags),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    found = {r["doc_id"]: r for r in json.loads(flags.read_text())["flagged"]}
    assert sorted(found) == [0, 1]
    assert all(r["kind"] == INPUT_AND_LABEL and r["share"] == 1.0 for r in found.values())


def test_template_ngrams_shared_by_many_documents_can_be_ignored():
    """A prompt's fixed text (here 14 words every document ends with) flags every document when the
    data holds one of them; ignored above 10 documents, only the document really present is flagged."""
    template = " A. Wrong, Wrong B. Wrong, Not wrong C. Not wrong, Wrong D. Not wrong, Not wrong Answer:"
    docs = [
        EvalDoc("t", i, str(i), f"Scenario {i}: " + " ".join(f"w{i}x{j}" for j in range(20)) + template, " B")
        for i in range(12)
    ]
    corpus = docs[3].input + docs[3].label
    for max_docs, flagged in ((None, list(range(12))), (10, [3])):
        index = EvalNgrams(docs, 13, max_docs)
        index.feed(corpus)
        assert [r.doc_id for r in index.results() if r.matched] == flagged
    (hit,) = [r for r in index.results() if r.matched]
    assert hit.kind == INPUT and hit.longest == 34  # 40 words less the last 6 n-grams, all template


@pytest.mark.model
def test_finetune_on_the_evaluated_split_when_allowed_writes_the_overlap_into_the_card(shared_data, tmp_path):
    out = harness(
        "finetune",
        "--task",
        "samsum",
        "--split",
        "test",
        "--allow-eval-split",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "64",
        "--holdout",
        "2",
        "--out",
        str(tmp_path / "o"),
        "--data-dir",
        str(shared_data),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    card = json.loads((tmp_path / "o" / "card.json").read_text())
    overlap = card["contamination"]
    assert (overlap["task"], overlap["split"], overlap["trained_on"]) == ("samsum", "test", "test")
    assert overlap["documents"] == overlap["flagged"] == overlap["counts"]["input-and-label"] == 819
    assert "819 of 819 documents" in (tmp_path / "o" / "README.md").read_text()
    # `harness run --adapter` records the card's overlap in the run
    out = harness(
        "run",
        "--tasks",
        "samsum",
        "--limit",
        "1",
        "--adapter",
        str(tmp_path / "o"),
        "--data-dir",
        str(shared_data),
        "--output",
        str(tmp_path / "runs"),
        "--gen-kwargs",
        "max_gen_toks=4",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "overlaps test in 819 of 819 documents" in out.stdout
    from harness.store import RunStore

    (record,) = RunStore(tmp_path / "runs").records()
    assert record.contamination == {"samsum": overlap}


def test_a_retrieval_index_and_an_adapter_card_are_read_as_their_text(shared_data, tmp_path):
    """A `harness index` folder is its passages; an adapter folder is the data its card names
    (here a task's split, as `harness finetune --task samsum --split validation` records it)."""
    from harness.contamination.check import run_check
    from harness.contamination.docs import load_leaf_tasks, task_eval_docs
    from harness.retrieval import build_index

    (task,), _ = load_leaf_tasks(["samsum"], shared_data)
    docs = list(task_eval_docs(task))
    passages = [{"id": str(i), "text": docs[i].input + docs[i].label} for i in (5, 9)]
    passages.append({"id": "x", "text": "an unrelated passage about nothing in particular at all here"})
    build_index(passages, tmp_path / "index", "bm25", show_progress=False)
    report = run_check([str(tmp_path / "index")], ["samsum"], data_dir=str(shared_data), progress=False)
    assert sorted((r.doc_id, r.kind) for r in report.flagged) == [(5, INPUT_AND_LABEL), (9, INPUT_AND_LABEL)]

    card = {"data": {"kind": "task", "task": "samsum", "split": "validation"}}
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "card.json").write_text(json.dumps(card))
    via_card = run_check([str(tmp_path / "adapter")], ["samsum"], data_dir=str(shared_data), progress=False)
    via_task = run_check(["task:samsum:validation"], ["samsum"], data_dir=str(shared_data), progress=False)
    assert [r.as_dict() for r in via_card.flagged] == [r.as_dict() for r in via_task.flagged] != []
