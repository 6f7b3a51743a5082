"""Generation: harness vs lm-eval 0.4.13 `--model hf` on the same requests and weights, side by side.

Presets (issue 26's bar):
  bbh_cot   bbh_cot_fewshot navigate + date_understanding, 50 each, greedy, max_gen_toks 256 for both
  gsm8k_sc  gsm8k_cot_self_consistency_k5, 50 questions (5 samples each, temperature 0.2)
  samsum    samsum zero-shot, 100 dialogues, greedy
  bbh       bbh_fewshot boolean_expressions + navigate, 50 each (short answers)

Harness decodes with continuous batching, rows sized by memory (its default); lm-eval's HFLM runs
at each of --lm-eval-batch-sizes and its best median is the baseline. Repeats alternate (harness,
lm-eval at each size, harness, ...) so drift falls on both alike. Tokens per second count the
generated tokens of each side's own outputs (re-encoded, as the tokenizer reads them back). Greedy:
how many outputs are identical. Sampled (gsm8k_sc): lm-eval's samples come from torch's global
generator, so they are not compared; instead every harness sample is checked against harness's own
run at one row at a time (gen_batch_size=1), which must be identical (a sample depends on its seed).

    python benchmarks/generation_vs_lmeval.py --preset bbh_cot --repeats 3
    python benchmarks/generation_vs_lmeval.py --preset gsm8k_sc --limit 20 --repeats 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

PRESETS = {
    "bbh_cot": ("bbh_cot_fewshot_navigate,bbh_cot_fewshot_date_understanding", 50, 256),
    "gsm8k_sc": ("gsm8k_cot_self_consistency_k5", 50, None),
    "samsum": ("samsum", 100, None),
    "bbh": ("bbh_fewshot_boolean_expressions,bbh_fewshot_navigate", 50, None),
}


def build_requests(tm, tasks: str, limit: int, max_gen_toks: int | None, num_fewshot: int | None = None) -> list:
    """The requests lm-eval's evaluator sends (num_fewshot overriding the tasks' own, as simple_evaluate
    does): each instance `repeats` times."""
    requests = []
    for name in tasks.split(","):
        task = tm.load([name])["tasks"][name]
        if num_fewshot is not None:
            task.set_config(key="num_fewshot", value=num_fewshot)
        task.set_fewshot_seed(seed=1234)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        for inst in task.instances:
            if max_gen_toks is not None:
                inst.arguments = (inst.arguments[0], {**inst.arguments[1], "max_gen_toks": max_gen_toks})
            requests += [inst] * task.config.repeats
    return requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="bbh_cot")
    ap.add_argument("--tasks", default=None, help="instead of the preset's")
    ap.add_argument("--limit", type=int, default=None, help="documents per task (default: the preset's)")
    ap.add_argument("--max-gen-toks", type=int, default=None, help="given to both (default: the preset's)")
    ap.add_argument("--lm-eval-batch-sizes", default="8,32")
    ap.add_argument("--gen-batch-size", default="auto", help="harness's generation rows (default: by memory)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dtype", default=None, help="both sides' dtype (default: the model's)")
    ap.add_argument("--skip-lm-eval", action="store_true")
    args = ap.parse_args()
    if not (Path(args.data_dir) / "bbh/bbh").is_dir():
        print(f"skipped: no mirror under {args.data_dir} (expected bbh/bbh)")
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

    tasks, limit, max_gen = PRESETS[args.preset]
    tasks, limit = args.tasks or tasks, args.limit or limit
    max_gen = args.max_gen_toks or max_gen
    tm = build_task_manager(data_dir=resolve_data_dir(args.data_dir))
    requests = build_requests(tm, tasks, limit, max_gen)
    sampled = any(r.arguments[1].get("do_sample") for r in requests)

    loaded = load_model(args.model, dtype=args.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ours_lm = HarnessLM(loaded=loaded, gen_batch_size=args.gen_batch_size)
    sizes = [int(b) for b in args.lm_eval_batch_sizes.split(",")] if not args.skip_lm_eval else []
    # lm-eval loads the same weights itself (its own model object: ours runs harness's attention)
    dtype = args.dtype or loaded.identity["dtype"]
    refs = {b: HFLM(pretrained=loaded.identity["weights"], device=device, dtype=dtype, batch_size=b) for b in sizes}

    def count(texts: list[str]) -> int:
        return sum(len(loaded.tokenizer.encode(t, add_special_tokens=False)) for t in texts)

    times: dict[str, list[float]] = {"harness": [], **{f"lm-eval hf batch {b}": [] for b in sizes}}
    outputs: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for label, lm in (("harness", ours_lm), *((f"lm-eval hf batch {b}", refs[b]) for b in sizes)):
            t0 = time.perf_counter()
            outputs[label] = lm.generate_until(requests, disable_tqdm=True)
            times[label].append(time.perf_counter() - t0)
            print(f"  {label}: {times[label][-1]:.1f} s", flush=True)
    print(
        f"\n{args.preset}: {tasks}, {limit} docs each, {len(requests)} requests, max_gen_toks {max_gen or 'task'}; "
        f"{args.model} ({loaded.model.dtype}, {device}, {torch.get_num_threads()} threads); "
        f"harness gen_batch_size {args.gen_batch_size} (max rows in a batch: {ours_lm.report().work.max_batch_requests})"
    )
    print(f"{'':24}{'min s':>8}{'median s':>10}{'max s':>8}{'tokens':>8}{'tokens/s':>10}")
    rates = {}
    for label, ts in times.items():
        n = count(outputs[label])
        rates[label] = n / statistics.median(ts)
        print(f"{label:<24}{min(ts):8.1f}{statistics.median(ts):10.1f}{max(ts):8.1f}{n:8d}{rates[label]:10.1f}")
    if sizes:
        best = max((label for label in rates if label != "harness"), key=rates.get)
        print(f"tokens/s ratio harness / {best} (lm-eval's best, medians): {rates['harness'] / rates[best]:.2f}x")
        if not sampled:
            for label in rates:
                if label != "harness":
                    same = sum(a == b for a, b in zip(outputs["harness"], outputs[label]))
                    print(f"identical outputs, harness vs {label}: {same}/{len(requests)}")
    if sampled:
        single = HarnessLM(loaded=loaded, gen_batch_size=1).generate_until(requests, disable_tqdm=True)
        same = sum(a == b for a, b in zip(outputs["harness"], single))
        print(f"harness outputs equal to harness at one row at a time: {same}/{len(requests)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
