"""SuperGLUE with harness vs lm-eval 0.4.13 `--model hf`, side by side in one process.

harness runs `super_glue` as `harness run --tasks super_glue --data-dir DIR --limit N` does (our
tasks/super_glue, the group, the mirror); lm-eval runs the members the mirror holds from its own
installed YAMLs (lm_eval/tasks/super_glue) over the same mirror data, with its hf backend on the same
weights (the safetensors harness converted from the bundled GGUF). Prints every metric of every task
for both, the per-document agreement of the predicted choice, and the wall time of each (one run,
model loaded outside the clocks, request cache off).

    python benchmarks/super_glue_vs_lmeval.py                 # 50 documents per task
    python benchmarks/super_glue_vs_lmeval.py --limit 20
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np


def predictions(samples: list[dict]) -> dict[int, int]:
    return {s["doc_id"]: int(np.argmax([ll for ll, _ in s["filtered_resps"]])) for s in samples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    if not (Path(args.data_dir) / "super_glue").is_dir():
        print(f"skipped: no SuperGLUE mirror under {args.data_dir} (expected super_glue/<Task>/val.jsonl)")
        return 0
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.engine import run_evaluation
    from harness.mirror import resolve_data_dir
    from harness.models.catalog import load_model
    from harness.spec import RunSpec
    from harness.tasks import MirrorTaskFactory

    loaded = load_model(args.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ref_lm = HFLM(
        pretrained=loaded.identity["weights"], device=device, dtype=loaded.identity["dtype"], batch_size=args.batch_size
    )
    spec = RunSpec(
        model=args.model,
        tasks=("super_glue",),
        limit=args.limit,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        bootstrap_iters=0,
    )
    t0 = time.perf_counter()
    ours = run_evaluation(spec, loaded=loaded, request_cache=None)
    t_ours = time.perf_counter() - t0
    tasks = sorted(ours.results["results"])
    tm = TaskManager(include_path=[Path(lm_eval.__file__).parent / "tasks" / "super_glue"], include_defaults=False)
    tm._factory = MirrorTaskFactory(data_dir=resolve_data_dir(args.data_dir))  # lm-eval's YAMLs, the same data
    t0 = time.perf_counter()
    ref = lm_eval.simple_evaluate(
        model=ref_lm, tasks=tasks, task_manager=tm, limit=args.limit, log_samples=True, bootstrap_iters=0
    )
    t_ref = time.perf_counter() - t0

    print(f"\nSuperGLUE 0-shot, {args.limit} documents per task, {args.model} ({loaded.identity['dtype']}, {device})")
    print(f"skipped by harness: {ours.results['harness']['skipped_tasks']}")
    head = f"{'task':<12}{'metric':<8}{'n':>5}{'lm-eval':>10}{'harness':>10}{'Δ':>9}{'same pred':>11}"
    print(head)
    print("-" * len(head))
    agree = total = 0
    worst = 0.0
    for task in tasks:
        pr, po = predictions(ref["samples"][task]), predictions(ours.samples[task])
        same = sum(pr[d] == po.get(d) for d in pr)
        agree, total = agree + same, total + len(pr)
        for key, value in ref["results"][task].items():
            if not key.endswith(",none") or "stderr" in key:
                continue
            mine = ours.results["results"][task][key]
            worst = max(worst, abs(mine - value))
            print(
                f"{task:<12}{key.split(',')[0]:<8}{len(pr):>5}{100 * value:>10.2f}{100 * mine:>10.2f}"
                f"{100 * (mine - value):>+9.2f}{f'{same}/{len(pr)}':>11}"
            )
    print("-" * len(head))
    print(f"same predicted choice on {agree}/{total} documents; largest |Δ| {100 * worst:.2f} points")
    print(f"wall seconds: lm-eval hf {t_ref:.1f}, harness {t_ours:.1f} (ratio {t_ours / t_ref:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
