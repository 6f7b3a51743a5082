"""MMLU with harness vs lm-eval 0.4.13 `--model hf`, side by side in one process.

Both read the same task YAMLs (tasks/mmlu) and the same mirror data; lm-eval gets the same weights
(the safetensors harness converted from the bundled GGUF). Prints per-subject acc and acc_norm for
both, the predicted-answer agreement, and wall times.

    python benchmarks/mmlu_vs_lmeval.py --data-dir ../shared/data --shots 0 \
        --subjects abstract_algebra,anatomy,college_biology,high_school_us_history,marketing
    python benchmarks/mmlu_vs_lmeval.py --data-dir ../shared/data --shots 5 --subjects abstract_algebra,anatomy,marketing
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def predictions(samples: list[dict]) -> dict[int, tuple[int, int]]:
    """doc_id -> (argmax log-likelihood, argmax length-normalised log-likelihood), as lm-eval scores them."""
    out = {}
    for s in samples:
        lls = np.array([r[0] for r in s["filtered_resps"]])
        lens = np.array([len(a[1]) for a in s["arguments"]], dtype=float)
        out[s["doc_id"]] = (int(lls.argmax()), int((lls / lens).argmax()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--subjects", default="abstract_algebra,anatomy,college_biology,high_school_us_history,marketing")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    if not (Path(args.data_dir) / "mmlu/data/test").is_dir():
        print(f"skipped: no MMLU mirror under {args.data_dir} (expected mmlu/data/test)")
        return 0
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import lm_eval
    import torch

    from harness.engine import run_evaluation
    from harness.mirror import resolve_data_dir
    from harness.models.catalog import resolve_weights
    from harness.spec import RunSpec
    from harness.store import RunStore, read_samples
    from harness.tasks import build_task_manager

    tasks = [f"mmlu_{s}" for s in args.subjects.split(",")]
    weights, _ = resolve_weights(args.model)  # converts the GGUF once, before either clock starts

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        spec = RunSpec(model=args.model, tasks=tuple(tasks), num_fewshot=args.shots, limit=args.limit,
                       batch_size=args.batch_size, data_dir=args.data_dir)
        finished = run_evaluation(spec)
        run_dir = RunStore(runs).save(finished)
        ours = finished.results
        our_samples: dict[str, list] = {}
        for s in read_samples(run_dir):
            our_samples.setdefault(s["task"], []).append(s)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(weights), "dtype": "float32"},
        tasks=tasks,
        task_manager=build_task_manager(data_dir=resolve_data_dir(args.data_dir)),
        num_fewshot=args.shots,
        limit=args.limit,
        batch_size=args.batch_size,
        device="cuda" if torch.cuda.is_available() else "cpu",
        log_samples=True,
        bootstrap_iters=1000,
    )
    t_ref = time.perf_counter() - t0

    print(f"\nMMLU {args.shots}-shot, {args.model}, batch size {args.batch_size}")
    head = f"{'subject':<26}{'n':>5}  {'acc lm-eval':>11}{'acc ours':>10}{'Δ':>7}  {'norm lm-eval':>12}{'norm ours':>10}{'Δ':>7}  {'same pred':>9}"
    print(head)
    print("-" * len(head))
    worst_delta, total, agree = 0.0, 0, 0
    for task in tasks:
        r, o = ref["results"][task], ours["results"][task]
        pr, po = predictions(ref["samples"][task]), predictions(our_samples[task])
        same = sum(pr[d] == po[d] for d in pr)
        total += len(pr)
        agree += same
        d_acc = 100 * (o["acc,none"] - r["acc,none"])
        d_norm = 100 * (o["acc_norm,none"] - r["acc_norm,none"])
        worst_delta = max(worst_delta, abs(d_acc), abs(d_norm))
        print(f"{task[5:]:<26}{len(pr):>5}  {100 * r['acc,none']:>11.2f}{100 * o['acc,none']:>10.2f}{d_acc:>+7.2f}  "
              f"{100 * r['acc_norm,none']:>12.2f}{100 * o['acc_norm,none']:>10.2f}{d_norm:>+7.2f}  {100 * same / len(pr):>8.1f}%")
    print("-" * len(head))
    print(f"same predicted answer (acc and acc_norm) on {agree}/{total} = {100 * agree / total:.2f}% of questions; "
          f"largest |Δ| {worst_delta:.2f} points")
    print(f"wall time: lm-eval hf {t_ref:.1f}s, harness {t_ours:.1f}s, ratio harness/lm-eval {t_ours / t_ref:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
