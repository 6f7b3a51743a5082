"""A served model with harness vs lm-eval 0.4.13 `local-completions`, through the same server, side by side.

MMLU 0-shot (the bar's five subjects): harness `--model http://HOST:PORT/v1` against lm-eval's own
LocalCompletionsAPI with num_concurrent 1 and 8 (its best is the bar's baseline), and against
harness's in-process runner on the same weights (--in-process ALIAS). Prints acc per subject, the
predicted-answer agreement, wall times and the ratio. Then GSM8K CoT and SAMSum (--gen-limit docs,
greedy): how many outputs are identical to lm-eval's through the same server. Nothing is read from
the request cache (every run computes everything).

    python benchmarks/served_vs_lmeval.py --base-url http://127.0.0.1:8000/v1 --tokenizer DIR --data-dir ../shared/data
    python benchmarks/served_vs_lmeval.py --base-url ... --skip-generation --limit 20
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmlu_vs_lmeval import FIVE, predictions, timed  # noqa: E402  (the same agreement measure)


def lm_eval_run(base_url: str, tokenizer: str, tasks: list[str], data_dir: str, limit, concurrent: int, shots=None):
    import lm_eval
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    from harness.mirror import resolve_data_dir
    from harness.tasks import build_task_manager

    lm = LocalCompletionsAPI(
        base_url=f"{base_url}/completions",
        model="smollm2",
        tokenizer=tokenizer,
        tokenizer_backend="huggingface",
        num_concurrent=concurrent,
    )
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=build_task_manager(data_dir=resolve_data_dir(data_dir)),
        num_fewshot=shots,
        limit=limit,
        log_samples=True,
        bootstrap_iters=0,
    )


def harness_run(model: str, tasks: list[str], data_dir: str, limit, shots=None, **served):
    from harness.engine import run_evaluation
    from harness.spec import RunSpec

    spec = RunSpec(
        model=model, tasks=tuple(tasks), num_fewshot=shots, limit=limit, data_dir=data_dir, bootstrap_iters=0, **served
    )
    finished = run_evaluation(spec, request_cache=None)
    return {"results": finished.results["results"], "samples": finished.samples, "env": finished.env}


def save(directory: str | None, name: str, run: dict, seconds: float, tasks: list[str]) -> None:
    """Predictions and wall time of one run as JSON, so that runs of separate invocations compare."""
    if directory:
        import json

        picks = {t: {str(d): p[0] for d, p in predictions(run["samples"][t]).items()} for t in tasks}
        accs = {t: acc(run, t) for t in tasks}
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{name}.json").write_text(json.dumps({"seconds": seconds, "acc": accs, "picks": picks}))


def agreement(a: dict, b: dict, tasks: list[str]) -> tuple[int, int]:
    same = total = 0
    for task in tasks:
        pa, pb = predictions(a["samples"][task]), predictions(b["samples"][task])
        for doc, (pick, _) in pa.items():
            same += pick == pb[doc][0]
            total += 1
    return same, total


def acc(run: dict, task: str) -> float:
    return run["results"][task]["acc,none"]


def outputs(run: dict, task: str) -> dict[int, str]:
    return {s["doc_id"]: s["resps"][0][0] for s in run["samples"][task]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="the vLLM server's base URL, http://HOST:PORT/v1")
    ap.add_argument("--tokenizer", required=True, help="the served weights' folder (lm-eval's tokenizer)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--subjects", default=FIVE)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--concurrency", default="1,8", help="lm-eval num_concurrent values to time")
    ap.add_argument("--harness-tokenizer", default=None, help="harness's --tokenizer (default: --tokenizer)")
    ap.add_argument("--max-concurrency", type=int, default=32, help="harness's limit")
    ap.add_argument("--in-process", default="smollm2-135m", help="alias for harness's in-process run ('' skips)")
    ap.add_argument("--gen-limit", type=int, default=50)
    ap.add_argument("--save", default=None, help="folder for each run's predictions and time (JSON)")
    ap.add_argument("--skip-mmlu", action="store_true")
    ap.add_argument("--skip-generation", action="store_true")
    args = ap.parse_args()
    if not (Path(args.data_dir) / "mmlu/data/test").is_dir():
        print(f"skipped: no MMLU mirror under {args.data_dir} (expected mmlu/data/test)")
        return 0
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    base = args.base_url.rstrip("/")
    served = {"max_concurrency": args.max_concurrency, "tokenizer": args.harness_tokenizer or args.tokenizer}

    if not args.skip_mmlu:
        tasks = [f"mmlu_{s}" for s in args.subjects.split(",")]
        ours, t_ours = timed(lambda: harness_run(base, tasks, args.data_dir, args.limit, shots=0, **served))
        save(args.save, "harness-served", ours, t_ours, tasks)
        runner = ours["env"]["runner"]
        print(f"harness served: {t_ours:.1f} s; latency {runner.get('latency')}; usage {runner.get('usage')}")
        print("acc: " + ", ".join(f"{t} {acc(ours, t):.4f}" for t in tasks), flush=True)
        best = None
        for c in (int(x) for x in args.concurrency.split(",")):
            ref, t_ref = timed(lambda c=c: lm_eval_run(base, args.tokenizer, tasks, args.data_dir, args.limit, c, 0))
            save(args.save, f"lm-eval-c{c}", ref, t_ref, tasks)
            best = t_ref if best is None else min(best, t_ref)
            same, total = agreement(ours, ref, tasks)
            print(
                f"lm-eval local-completions num_concurrent={c}: {t_ref:.1f} s; same predictions {same}/{total} "
                f"({same / total:.2%}); acc: " + ", ".join(f"{t} {acc(ref, t):.4f}" for t in tasks)
            )
            print(f"wall time ratio harness / lm-eval best so far: {t_ours / best:.3f}", flush=True)
            if c == int(args.concurrency.split(",")[0]) and args.in_process:
                local, t_local = timed(lambda: harness_run(args.in_process, tasks, args.data_dir, args.limit, shots=0))
                save(args.save, "harness-in-process", local, t_local, tasks)
                same, total = agreement(ours, local, tasks)
                print(
                    f"harness in-process {args.in_process}: {t_local:.1f} s; same predictions {same}/{total} "
                    f"({same / total:.2%}); acc: " + ", ".join(f"{t} {acc(local, t):.4f}" for t in tasks),
                    flush=True,
                )

    if not args.skip_generation:
        for task, shots in (("gsm8k_cot", None), ("samsum", None)):
            ours, t_ours = timed(
                lambda task=task, shots=shots: harness_run(base, [task], args.data_dir, args.gen_limit, shots, **served)
            )
            ref, t_ref = timed(
                lambda task=task, shots=shots: lm_eval_run(
                    base, args.tokenizer, [task], args.data_dir, args.gen_limit, 8, shots
                )
            )
            a, b = outputs(ours, task), outputs(ref, task)
            same = sum(a[d] == b[d] for d in a)
            print(f"{task}: {same}/{len(a)} outputs identical; harness {t_ours:.1f} s, lm-eval c8 {t_ref:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
