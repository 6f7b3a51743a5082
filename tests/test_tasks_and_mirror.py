"""Task loading and the data mirror, checked against lm-eval's own task files and the raw data."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import lm_eval
import pytest
from helpers import task_instances
from lm_eval.tasks import TaskManager

from harness.errors import DataUnavailableError, UnknownTaskError
from harness.mirror import load_from_mirror
from harness.tasks import MirrorTaskFactory, build_task_manager, list_tasks, load_tasks, resolve_task_names

LM_EVAL_MMLU = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
REPO = Path(__file__).resolve().parents[1]


def lm_eval_mmlu_manager(data_dir):
    """lm-eval's own MMLU YAMLs (not ours), reading the same mirror."""
    tm = TaskManager(include_path=[LM_EVAL_MMLU], include_defaults=False)
    tm._factory = MirrorTaskFactory(data_dir=data_dir)
    return tm


def test_mmlu_family_has_lm_evals_names_and_groups():
    ours = build_task_manager()
    for variant, suffix in (("default", ""), ("continuation", "_continuation")):
        theirs = TaskManager(include_path=[LM_EVAL_MMLU.parent / variant], include_defaults=False)
        our_mmlu = {
            t
            for t in ours.all_subtasks
            if t.startswith("mmlu_") and t.endswith(suffix) and (suffix or not t.endswith("_continuation"))
        }
        assert our_mmlu == set(theirs.all_subtasks)
        assert len(our_mmlu) == 57
    assert {"mmlu", "mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other", "mmlu_continuation"} <= set(
        ours.all_groups
    )


@pytest.mark.parametrize("shots", [0, 5])
def test_mmlu_requests_equal_lm_evals_own_yaml(shared_data, shots):
    ours = task_instances("mmlu_college_biology", shared_data, num_fewshot=shots, limit=6)
    task = lm_eval_mmlu_manager(shared_data).load(["mmlu_college_biology"])["tasks"]["mmlu_college_biology"]
    task.set_config(key="num_fewshot", value=shots)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=6, rank=0, world_size=1)
    assert [r.args for r in ours] == [r.args for r in task.instances]
    assert (
        ours[0].args[0].startswith("The following are multiple choice questions (with answers) about college biology.")
    )


def test_mmlu_mirror_counts_match_published_sizes(shared_data):
    ds = load_from_mirror(shared_data, "cais/mmlu", "all")
    # published: test 14,042; dev 5 per subject (285); validation 1,531
    assert (ds["test"].num_rows, ds["dev"].num_rows, ds["validation"].num_rows) == (14042, 285, 1531)
    assert set(ds["test"].features) == {"question", "subject", "choices", "answer"}


def test_mmlu_mirror_rows_equal_the_raw_csv(shared_data):
    ds = load_from_mirror(shared_data, "cais/mmlu", "anatomy")["test"]
    with open(shared_data / "mmlu/data/test/anatomy_test.csv", newline="", encoding="utf-8") as f:
        raw = list(csv.reader(f))
    assert ds.num_rows == len(raw) == 135
    for row, (q, a, b, c, d, ans) in zip(ds, raw):
        assert (row["question"], row["choices"], row["answer"]) == (q, [a, b, c, d], "ABCD".index(ans))


def test_generic_mirror_layout_serves_any_hub_id(tmp_path):
    (tmp_path / "mirror/acme/quiz").mkdir(parents=True)
    (tmp_path / "mirror/acme/quiz/test.jsonl").write_text(
        '{"q": "2+2", "a": "4"}\n{"q": "3+3", "a": "6"}\n', encoding="utf-8"
    )
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks/quiz.yaml").write_text(
        "task: acme_quiz\ndataset_path: acme/quiz\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: '{{q}}='\ndoc_to_target: '{{a}}'\nmetric_list:\n  - metric: exact_match\n",
        encoding="utf-8",
    )
    requests = task_instances("acme_quiz", tmp_path / "mirror", include_paths=[str(tmp_path / "tasks")])
    assert [r.args[0] for r in requests] == ["2+2=", "3+3="]


def test_missing_mirror_entry_names_the_dataset_and_where_it_looked(tmp_path):
    tm = build_task_manager(data_dir=tmp_path)
    with pytest.raises(DataUnavailableError, match=r"cais/mmlu/anatomy.*mirror"):
        load_tasks(tm, ["mmlu_anatomy"])


def test_task_names_groups_and_globs_resolve():
    tm = build_task_manager()
    assert resolve_task_names(tm, ["mmlu_high_school_*"])[:2] == [
        "mmlu_high_school_biology",
        "mmlu_high_school_biology_continuation",
    ]
    # MMLU has 14 high-school subjects, each in the default and the continuation form
    assert len(resolve_task_names(tm, ["mmlu_high_school_*"])) == 28
    assert len(resolve_task_names(tm, ["mmlu_high_school_*_continuation"])) == 14
    assert resolve_task_names(tm, ["demo", "mmlu_anatomy", "demo"]) == ["demo", "mmlu_anatomy"]
    with pytest.raises(UnknownTaskError, match="did you mean mmlu_anatomy"):
        resolve_task_names(tm, ["mmlu_anatomyy"])
    with pytest.raises(UnknownTaskError):
        resolve_task_names(tm, ["nosuch_*"])


def test_task_hooks_change_configs_before_and_tasks_after_lm_eval_builds_them(tmp_path):
    """The seam adapters use (retrieval for RAG tasks): a hook sees every full config before lm-eval builds
    the task and every built task; without hooks the task is the one lm-eval builds from the same YAML."""
    seen = []

    class Hook:
        def config_loaded(self, cfg, data_dir):
            seen.append(("config", cfg["task"], data_dir))
            cfg["description"] = "Capitals.\n\n"

        def task_built(self, task):
            seen.append(("task", task.config.task, task.config.description))

    hooked = build_task_manager(data_dir=tmp_path, hooks=[Hook()]).load(["demo_capitals"])["tasks"]["demo_capitals"]
    assert seen == [("config", "demo_capitals", tmp_path), ("task", "demo_capitals", "Capitals.\n\n")]
    doc = hooked.eval_docs[0]
    theirs = TaskManager(include_path=[REPO / "tasks" / "demo"], include_defaults=False)
    plain = theirs.load(["demo_capitals"])["tasks"]["demo_capitals"]
    assert hooked.fewshot_context(doc, 0) == "Capitals.\n\n" + plain.fewshot_context(doc, 0)
    ours = build_task_manager().load(["demo_capitals"])["tasks"]["demo_capitals"]
    assert ours.fewshot_context(doc, 0) == plain.fewshot_context(doc, 0)


def test_tasks_module_imports_no_adapter():
    """Imports run downwards: adapters plug into harness.tasks through hooks, never the other way."""
    code = "import sys, harness.tasks; print(sorted(m for m in sys.modules if m.startswith('harness.adapters')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_task_listing_says_where_data_comes_from(shared_data, tmp_path):
    rows = {r.name: r for r in list_tasks(build_task_manager(data_dir=shared_data), shared_data)}
    assert rows["demo_capitals"].data == "bundled"
    assert "Hendrycks" in rows["mmlu_anatomy"].data and rows["mmlu_anatomy"].family == "mmlu"
    assert rows["mmlu"].kind == "group"
    offline = {r.name: r for r in list_tasks(build_task_manager(data_dir=tmp_path), tmp_path)}
    assert offline["mmlu_anatomy"].data == "missing from mirror"
    assert {r.data for r in list_tasks(build_task_manager(), None) if r.family == "mmlu" and r.kind == "task"} == {
        "hub"
    }


def test_user_lm_eval_task_folder_runs_unchanged(shared_data):
    # lm-eval's own MMLU folder passed as --include-path overrides ours and loads from the mirror
    requests = task_instances("mmlu_anatomy", shared_data, limit=2, include_paths=[str(LM_EVAL_MMLU)])
    assert len(requests) == 8


def test_bbh_mirror_counts_match_published_sizes(shared_data):
    names = sorted(p.stem for p in (shared_data / "bbh/bbh").glob("*.json"))
    sizes = {n: load_from_mirror(shared_data, "SaylorTwift/bbh", n)["test"].num_rows for n in names}
    assert len(sizes) == 27 and sum(sizes.values()) == 6511
    assert {n: s for n, s in sizes.items() if s != 250} == {
        "causal_judgement": 187,
        "penguins_in_a_table": 146,
        "snarks": 178,
    }


@pytest.mark.parametrize("variant", ["fewshot", "cot_fewshot", "zeroshot", "cot_zeroshot"])
def test_bbh_requests_equal_lm_evals_own_yaml(shared_data, variant):
    name = f"bbh_{variant}_date_understanding"
    ours = task_instances(name, shared_data, num_fewshot=3 if "fewshot" in variant else 0, limit=3)
    tm = TaskManager(include_path=[LM_EVAL_MMLU.parent.parent / "bbh" / variant], include_defaults=False)
    tm._factory = MirrorTaskFactory(data_dir=shared_data)
    task = tm.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=3 if "fewshot" in variant else 0)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=3, rank=0, world_size=1)
    assert [r.args for r in ours] == [r.args for r in task.instances]
    assert len(build_task_manager(data_dir=shared_data).load([f"bbh_{variant}"])["tasks"]) == 27
