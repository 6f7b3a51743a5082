"""Greedy generation: harness vs lm-eval 0.4.13 `--model hf` on the same BBH requests, same weights.

Prints generated tokens per second for both (min/median/max over --repeats), their ratio, and
whether every output is identical.

    python benchmarks/generation_vs_lmeval.py --tasks bbh_fewshot_boolean_expressions,bbh_fewshot_navigate --limit 50
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", default="bbh_fewshot_boolean_expressions,bbh_fewshot_navigate")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if not (Path(args.data_dir) / "bbh/bbh").is_dir():
        print(f"skipped: no BBH mirror under {args.data_dir} (expected bbh/bbh)")
        return 0
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import torch
    from lm_eval.models.huggingface import HFLM

    from harness.mirror import resolve_data_dir
    from harness.models.catalog import load_model
    from harness.models.hf import HarnessLM
    from harness.tasks import build_task_manager

    tm = build_task_manager(data_dir=resolve_data_dir(args.data_dir))
    requests = []
    for name in args.tasks.split(","):
        task = tm.load([name])["tasks"][name]
        task.set_fewshot_seed(seed=1234)
        task.build_all_requests(limit=args.limit, rank=0, world_size=1)
        requests += task.instances

    loaded = load_model(args.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ours_lm = HarnessLM(loaded=loaded, batch_size=args.batch_size)
    ref_lm = HFLM(
        pretrained=loaded.identity["weights"], device=device, dtype=loaded.identity["dtype"], batch_size=args.batch_size
    )

    def run(lm):
        times, outputs = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outputs = lm.generate_until(requests, disable_tqdm=True)
            times.append(time.perf_counter() - t0)
        return outputs, times

    ours, t_ours = run(ours_lm)
    ref, t_ref = run(ref_lm)
    # generated tokens, counted the same way for both: the returned text re-encoded
    n_tokens = sum(len(loaded.tokenizer.encode(text, add_special_tokens=False)) for text in ref)
    same = sum(a == b for a, b in zip(ours, ref))
    print(
        f"\ngreedy generation, {args.model} ({loaded.identity['dtype']}, {device}, {torch.get_num_threads()} threads), "
        f"{len(requests)} requests from {args.tasks}, batch size {args.batch_size}"
    )
    print(f"identical outputs: {same}/{len(requests)}; {n_tokens} generated tokens (lm-eval's outputs)")
    print(f"{'':24}{'min s':>8}{'median s':>10}{'max s':>8}{'tokens/s':>10}")
    for label, times in (("lm-eval hf", t_ref), ("harness", t_ours)):
        print(
            f"{label:<24}{min(times):8.1f}{statistics.median(times):10.1f}{max(times):8.1f}"
            f"{n_tokens / statistics.median(times):10.1f}"
        )
    print(f"tokens/s ratio harness/lm-eval (median): {statistics.median(t_ref) / statistics.median(t_ours):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
