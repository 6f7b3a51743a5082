"""SuperGLUE: the mirror against the release's jsonl files and published sizes, the tasks against
lm-eval's own YAMLs, the scores against lm-eval's hf backend; and task code (`!function`) that
cannot be imported or raises, as a user's folder would have it."""

from __future__ import annotations

import json
from pathlib import Path

import lm_eval
import numpy as np
import pytest
from clirun import harness
from helpers import lm_eval_instances, lm_eval_manager, read_jsonl, task_instances

from harness.mirror import load_from_mirror
from harness.tasks import build_task_manager, list_tasks, packaged_tasks_dir, resolve_tasks

LM_EVAL_SUPER_GLUE = Path(lm_eval.__file__).parent / "tasks" / "super_glue"
IN_MIRROR = ("boolq", "cb", "copa", "multirc", "sglue_rte", "wic", "wsc")  # the super_glue members the mirror has
FOLDERS = {"boolq": "BoolQ", "cb": "CB", "copa": "COPA", "multirc": "MultiRC", "rte": "RTE", "wic": "WiC", "wsc": "WSC"}

# Published SuperGLUE sizes (the SuperGLUE paper / the hub's splits; MultiRC in answer options).
VAL_SIZES = {"boolq": 3270, "cb": 56, "copa": 100, "multirc": 4848, "rte": 277, "wic": 638, "wsc": 104}
TRAIN_SIZES = {"cb": 250, "copa": 400, "multirc": 27243, "rte": 2490, "wic": 5428, "wsc": 554}

# The hub's label classes in the hub's order (aps/super_glue dataset card), as release values.
LABELS = {
    "boolq": [False, True],
    "cb": ["entailment", "contradiction", "neutral"],
    "copa": [0, 1],
    "rte": ["entailment", "not_entailment"],
    "wic": [False, True],
    "wsc": [False, True],
}
FIELDS = {
    "boolq": ["question", "passage"],
    "cb": ["premise", "hypothesis"],
    "copa": ["premise", "choice1", "choice2", "question"],
    "rte": ["premise", "hypothesis"],
    "wic": ["word", "sentence1", "sentence2", "start1", "start2", "end1", "end2"],
    "wsc": ["text", "span1_index", "span2_index", "span1_text", "span2_text"],
}


def test_super_glue_task_files_are_lm_evals_unchanged():
    files = [p for p in LM_EVAL_SUPER_GLUE.rglob("*") if p.suffix in (".yaml", ".py")]
    assert len(files) == 25
    for theirs in files:
        assert (packaged_tasks_dir() / "super_glue" / theirs.relative_to(LM_EVAL_SUPER_GLUE)).read_bytes() == (
            theirs.read_bytes()
        ), theirs


# ------------------------------------------------------------------------------ the mirror
def test_super_glue_mirror_counts_match_published_sizes(shared_data):
    loaded = {name: load_from_mirror(shared_data, "aps/super_glue", name) for name in VAL_SIZES}
    assert {n: d["validation"].num_rows for n, d in loaded.items()} == VAL_SIZES
    assert {n: d["train"].num_rows for n, d in loaded.items() if "train" in d} == TRAIN_SIZES
    assert set(loaded["boolq"]) == {"validation"}  # BoolQ's train file is not in the mirror
    assert load_from_mirror(shared_data, "super_glue", "cb")["validation"].num_rows == 56  # the hub's older id


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_super_glue_mirror_rows_equal_the_release(shared_data, name):
    dd = load_from_mirror(shared_data, "aps/super_glue", name)
    for split, file in (("validation", "val.jsonl"), ("train", "train.jsonl")):
        if split not in dd:
            continue
        raw = read_jsonl(shared_data / "super_glue" / FOLDERS[name] / file)
        if name == "wsc":
            raw = [{**r, **r["target"]} for r in raw]
        ds = dd[split]
        assert list(ds.features) == FIELDS[name] + ["idx", "label"]
        for field in FIELDS[name]:
            assert ds[field] == [r[field] for r in raw], (split, field)
        assert ds["label"] == [LABELS[name].index(r["label"]) for r in raw]
        assert ds["idx"] == [r["idx"] for r in raw]


def test_multirc_is_one_row_per_answer_as_on_the_hub(shared_data):
    raw = read_jsonl(shared_data / "super_glue/MultiRC/val.jsonl")
    flat = [(p, q, a) for p in raw for q in p["passage"]["questions"] for a in q["answers"]]
    ds = load_from_mirror(shared_data, "aps/super_glue", "multirc")["validation"]
    assert list(ds.features) == ["paragraph", "question", "answer", "idx", "label"]
    assert ds["answer"] == [a["text"] for _, _, a in flat]
    assert ds["question"] == [q["question"] for _, q, _ in flat]
    assert ds["paragraph"] == [p["passage"]["text"] for p, _, _ in flat]
    assert ds["label"] == [a["label"] for _, _, a in flat]
    assert ds["idx"] == [{"paragraph": p["idx"], "question": q["idx"], "answer": a["idx"]} for p, q, a in flat]
    assert (len(raw), len({(i["paragraph"], i["question"]) for i in ds["idx"]})) == (83, 953)


def test_wsc_fixed_repairs_span_texts_as_the_hub_does_and_keeps_the_indices(shared_data):
    original = load_from_mirror(shared_data, "aps/super_glue", "wsc")
    fixed = load_from_mirror(shared_data, "aps/super_glue", "wsc.fixed")
    unfixable = ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin")  # left as they are by the hub
    changed = {}
    for split in ("validation", "train"):
        for before, after in zip(original[split], fixed[split], strict=True):
            for span in ("span1", "span2"):
                text = after[f"{span}_text"]
                # the hub's promise for wsc.fixed: every span text is a substring of the passage
                assert text in after["text"] or text in unfixable, (split, after["idx"], span)
                if text != before[f"{span}_text"]:
                    assert before[f"{span}_text"] not in before["text"]  # only broken spans are touched
                    assert text.lower() == before[f"{span}_text"].rstrip(".").replace("\n", " ").lower()
                    changed.setdefault(split, []).append(after["idx"])
            assert {k: v for k, v in after.items() if not k.endswith("_text")} == {
                k: v for k, v in before.items() if not k.endswith("_text")
            }
    assert changed["validation"] == [5, 23, 28, 29, 51, 81, 87, 89]  # "The table" -> "the table", ...
    assert 234 in changed["train"] and 380 in changed["train"]  # the newline inside a span text
    # span indices are not repaired, on the hub either: validation idx 42 gives "it" at word 30 ("use")
    row = fixed["validation"][42]
    assert (row["span2_text"], row["span2_index"], row["text"].split()[30]) == ("it", 30, "use")


# ------------------------------------------------------------------------------ tasks
# lm-eval's other SuperGLUE variants, but super_glue-wsc-t5-prompt (its metric `accuracy` is no
# lm-eval metric: lm-eval fetches it from the `evaluate` hub, offline it cannot be built)
LM_EVAL_TASK_NAMES = (
    IN_MIRROR
    + tuple(f"super_glue-{t}-t5-prompt" for t in ("boolq", "cb", "copa", "multirc", "rte", "wic"))
    + ("boolq-seq2seq",)
)


def test_super_glue_requests_equal_lm_evals_own_yamls(shared_data):
    theirs = lm_eval_manager(LM_EVAL_SUPER_GLUE, shared_data)
    for name in LM_EVAL_TASK_NAMES:
        ours = task_instances(name, shared_data, limit=5)
        assert [r.args for r in ours] == [r.args for r in lm_eval_instances(theirs, name, 5)], name
        assert ours
    # WSC's prompt is built from the fixed span texts: validation idx 5 names "the table", as the passage does
    wsc = task_instances("wsc", shared_data, limit=6)
    assert 'refer to "*the table*"?' in wsc[-1].args[0]


def test_super_glue_group_runs_what_the_mirror_holds_and_names_record(shared_data):
    tm = build_task_manager(data_dir=shared_data)
    selection = resolve_tasks(tm, ["super_glue"], shared_data)
    assert selection.names == list(IN_MIRROR)
    assert selection.skipped == {"record": f"dataset aps/super_glue/record is not in the mirror {shared_data}"}
    # no mirror: the hub decides, and the group runs as lm-eval builds it
    assert resolve_tasks(build_task_manager(), ["super_glue"]).names == ["super_glue"]
    rows = {r.name: r for r in list_tasks(tm, shared_data) if r.family == "super_glue"}
    assert rows["record"].data == "missing from mirror" and rows["super_glue"].kind == "group"
    assert "super_glue/BoolQ/val.jsonl" in rows["boolq"].data and rows["wsc"].dataset == "aps/super_glue/wsc.fixed"
    out = harness("tasks", "super_glue", "--data-dir", str(shared_data), env={"COLUMNS": "200"})
    listed = {line.split("│")[2].strip(): line for line in out.stdout.splitlines() if line.count("│") > 4}
    assert out.returncode == 0 and set(IN_MIRROR) | {"record", "super_glue"} <= set(listed)
    assert "missing from mirror" in listed["record"] and "super_glue/WSC/val.jsonl" in listed["wsc"]


def test_record_and_the_whole_group_load_from_a_mirror_that_has_them(shared_data, tmp_path):
    # a user's mirror with a ReCoRD release file (rows in the release's layout, written here) beside ours
    (tmp_path / "super_glue").mkdir()
    for folder in FOLDERS.values():
        (tmp_path / "super_glue" / folder).symlink_to(shared_data / "super_glue" / folder)
    passage = "Paris is in France.\n@highlight\nBerlin is in Germany"
    starts = {word: passage.index(word) for word in ("Germany", "Paris", "Berlin", "France")}
    row = {  # the release gives entity ends inclusive
        "idx": 0,
        "passage": {"text": passage, "entities": [{"start": s, "end": s + len(w) - 1} for w, s in starts.items()]},
        "qas": [
            {"idx": 7, "query": "@placeholder is the capital of Germany", "answers": [{"text": "Berlin"}]},
            {"idx": 8, "query": "Paris lies in @placeholder", "answers": [{"text": "France"}, {"text": "France"}]},
        ],
    }
    (tmp_path / "super_glue/ReCoRD").mkdir()
    (tmp_path / "super_glue/ReCoRD/val.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    ds = load_from_mirror(tmp_path, "aps/super_glue", "record")["validation"]
    assert ds[1]["entities"] == ["Berlin", "France", "Germany", "Paris"] and ds[1]["answers"] == ["France"]
    assert ds[0]["idx"] == {"passage": 0, "query": 7}
    assert ds[0]["entity_spans"]["start"] == sorted(starts.values())  # in passage order, ends exclusive
    assert [passage[s:e] for s, e in zip(ds[0]["entity_spans"]["start"], ds[0]["entity_spans"]["end"])] == [
        "Paris", "France", "Berlin", "Germany"
    ]  # fmt: skip
    # the T5-prompt variant builds from it as lm-eval builds it
    ours = task_instances("super_glue-record-t5-prompt", tmp_path)
    theirs = lm_eval_instances(lm_eval_manager(LM_EVAL_SUPER_GLUE, tmp_path), "super_glue-record-t5-prompt", None)
    assert [r.args for r in ours] == [r.args for r in theirs] and len(ours) == 2
    selection = resolve_tasks(build_task_manager(data_dir=tmp_path), ["super_glue"], tmp_path)
    assert selection.names == ["super_glue"] and not selection.skipped
    # lm-eval 0.4.13's `record` imports transformers.data.metrics, which transformers 5 removed: the
    # one-line error of task code that cannot be imported, on lm-eval's own file
    out = harness(*_run_args("record", packaged_tasks_dir() / "super_glue" / "record", tmp_path, tmp_path / "runs"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "!function util.doc_to_text" in out.stderr and "record/util.py:3 cannot be imported" in out.stderr


# ------------------------------------------------------------------------------ broken task code
BROKEN = {
    # case: (utils.py, the `!function` reference, what the one line must name)
    "no_function": (
        "def other(doc):\n    return ''\n",
        "utils.doc_to_text",
        ["utils.py has no function 'doc_to_text'"],
    ),
    "syntax": (
        "def doc_to_text(doc)\n    return ''\n",
        "utils.doc_to_text",
        ["utils.py:1 cannot be imported", "SyntaxError"],
    ),
    "import_fails": (
        "import no_such_package_here\n\ndef doc_to_text(doc):\n    return ''\n",
        "utils.doc_to_text",
        ["utils.py:1 cannot be imported", "No module named 'no_such_package_here'"],
    ),
    "no_module": (None, "nowhere.doc_to_text", ["nowhere.py", "no importable module 'nowhere'"]),
    "raises": (
        "def doc_to_text(doc):\n    return doc['no_such_field']\n",
        "utils.doc_to_text",
        ["doc_to_text (", "utils.py:2) raised KeyError: 'no_such_field'"],
    ),
}


def _broken_task(folder: Path, case: str, reference: str, code: str | None, **extra: str) -> Path:
    folder.mkdir()
    lines = [
        f"task: broken_{case}",
        "dataset_path: aps/super_glue",
        "dataset_name: copa",
        "output_type: multiple_choice",
        "validation_split: validation",
        f"doc_to_text: !function {reference}",
        "doc_to_target: label",
        "doc_to_choice: ['a', 'b']",
        "metric_list:\n  - metric: acc",
    ] + [f"{k}: {v}" for k, v in extra.items()]
    (folder / f"{case}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if code is not None:
        (folder / "utils.py").write_text(code, encoding="utf-8")
    return folder


def _run_args(task: str, folder: Path, data: Path, out: Path, limit: str = "2") -> list[str]:
    return [
        "run", "--model", "smollm2-135m", "--tasks", task, "--include-path", str(folder),
        "--data-dir", str(data), "--limit", limit, "--output", str(out),
    ]  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_task_code_that_cannot_load_or_raises_is_one_line_naming_file_and_function(shared_data, tmp_path, case):
    code, reference, expected = BROKEN[case]
    folder = _broken_task(tmp_path / "tasks", case, reference, code)
    out = harness(*_run_args(f"broken_{case}", folder, shared_data, tmp_path / "runs"))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"task 'broken_{case}'" in lines[0] and str(folder) in lines[0]
    for part in expected:
        assert part in lines[0], lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("results.json"))


# ------------------------------------------------------------------------------ scores
@pytest.mark.model
def test_process_results_that_raises_after_scoring_is_one_line(shared_data, tmp_path):
    code = (
        "def doc_to_text(doc):\n    return doc['premise']\n\n"
        "def process_results(doc, results):\n    raise ValueError('cannot score ' + doc['question'])\n"
    )
    folder = _broken_task(
        tmp_path / "tasks", "late", "utils.doc_to_text", code, process_results="!function utils.process_results"
    )
    out = harness(*_run_args("broken_late", folder, shared_data, tmp_path / "runs", limit="1"))
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr and line.startswith("error: task 'broken_late': process_results (")
    assert f"{folder / 'utils.py'}:5) raised ValueError: cannot score effect" in line


@pytest.mark.model
def test_harness_run_super_glue_names_record_as_skipped(shared_data, tmp_path):
    out = harness(
        "run", "--model", "smollm2-135m", "--tasks", "super_glue", "--data-dir", str(shared_data),
        "--limit", "1", "--output", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "skipping record: dataset aps/super_glue/record is not in the mirror" in out.stderr
    (results,) = tmp_path.rglob("results.json")
    stored = json.loads(results.read_text(encoding="utf-8"))
    assert set(stored["results"]) == set(IN_MIRROR) and set(stored["harness"]["skipped_tasks"]) == {"record"}


SCORED_LIMIT = 20  # per task; benchmarks/super_glue_vs_lmeval.py runs the 50-document comparison


@pytest.fixture(scope="module")
def super_glue_runs(harness_lm, reference_lm, shared_data):
    """`super_glue` through the engine (as `harness run --tasks super_glue --limit 20`), and lm-eval's
    simple_evaluate with its hf backend on the same weights, over lm-eval's own YAMLs and the same data."""
    from harness.engine import run_evaluation
    from harness.spec import RunSpec

    spec = RunSpec(
        model="smollm2-135m",
        tasks=("super_glue",),
        limit=SCORED_LIMIT,
        batch_size=8,
        data_dir=str(shared_data),
        bootstrap_iters=0,
    )
    ours = run_evaluation(spec, loaded=harness_lm.loaded)
    theirs = lm_eval.simple_evaluate(
        model=reference_lm,
        tasks=list(IN_MIRROR),
        task_manager=lm_eval_manager(LM_EVAL_SUPER_GLUE, shared_data),
        limit=SCORED_LIMIT,
        bootstrap_iters=0,
        log_samples=True,
    )
    return ours, theirs


def _predictions(samples: list[dict]) -> list[tuple[int, int]]:
    return sorted((s["doc_id"], int(np.argmax([ll for ll, _ in s["filtered_resps"]]))) for s in samples)


@pytest.mark.model
def test_super_glue_scores_equal_lm_evals_hf_backend(super_glue_runs):
    ours, theirs = super_glue_runs
    assert set(ours.results["results"]) == set(IN_MIRROR) and set(ours.results["harness"]["skipped_tasks"]) == {
        "record"
    }
    for task in IN_MIRROR:
        mine, ref = ours.results["results"][task], theirs["results"][task]
        metrics = ["acc", "f1"] if task == "cb" else ["acc"]
        assert sorted(k.split(",")[0] for k in ref if k.endswith(",none") and "stderr" not in k) == metrics
        for metric in metrics:
            assert mine[f"{metric},none"] == pytest.approx(ref[f"{metric},none"], abs=1e-12), task
        assert _predictions(ours.samples[task]) == _predictions(theirs["samples"][task]), task
        assert len(ours.samples[task]) == SCORED_LIMIT
        for a, b in zip(
            sorted(ours.samples[task], key=lambda s: s["doc_id"]),
            sorted(theirs["samples"][task], key=lambda s: s["doc_id"]),
        ):
            assert np.allclose(
                [x for x, _ in a["filtered_resps"]], [x for x, _ in b["filtered_resps"]], rtol=1e-4, atol=2e-3
            )
