"""bf16 fidelity: harness vs lm-eval 0.4.13's HFLM, both in bfloat16 on the CPU, and lm-eval vs itself.

`--dtype bfloat16` is the default on CUDA. In bf16 every difference in how a number is computed
(packing, a shared preamble prefilled once and attended in two parts, continuous batching, padding,
batch shapes) can round differently, so "agrees with lm-eval" is measured against a yardstick:
how well lm-eval agrees with itself at two batch sizes (--batch-sizes, default 1 and 8).

The model is loaded once through harness (bf16), and lm-eval's HFLM loads the same weights in
bf16 once per batch size. Requests are built as mmlu_vs_lmeval.py / generation_vs_lmeval.py build
them (lm-eval's own task objects) and sent to each runner's loglikelihood / generate_until:

  MMLU 0-shot (--shots N: N-shot), the five subjects of mmlu_vs_lmeval.py: per question the
      argmax log-likelihood (acc's prediction) of every pair, max and mean |Δ log-likelihood|, acc of each runner;
  BBH few-shot boolean_expressions + navigate, greedy: identical outputs of every pair.

With --float32, both once more in float32 (lm-eval at --float32-batch-size): harness vs lm-eval in
float32 for contrast, and every bf16 run against lm-eval's float32 answers (how far bf16 moves each).

    python benchmarks/bf16_fidelity.py --mmlu-limit 40 --bbh-limit 10        # a quick slice
    python benchmarks/bf16_fidelity.py --batch-sizes 1,8,32 --float32         # 817 questions, 2 x 50
    python benchmarks/bf16_fidelity.py --shots 5 --subjects abstract_algebra,anatomy,marketing
        --mmlu-limit 60 --skip-bbh --float32         # (one line) 5-shot: preambles >= 128 tokens, cascade
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path

from generation_vs_lmeval import PRESETS, build_requests
from mmlu_vs_lmeval import FIVE


def argmax_by_question(requests: list, lls: list[float]) -> dict[tuple, int]:
    """(task, doc_id) -> the index of its highest log-likelihood choice (the first of equal ones)."""
    best: dict[tuple, tuple[float, int]] = {}
    for req, ll in zip(requests, lls):
        key, choice = (req.task_name, req.doc_id), req.idx
        if key not in best or ll > best[key][0]:
            best[key] = (ll, choice)
    return {key: choice for key, (_, choice) in best.items()}


def ties(requests: list, lls: list[float]) -> int:
    """Questions whose two highest log-likelihoods are exactly equal (bf16 rounding makes these)."""
    by: dict[tuple, list[float]] = {}
    for req, ll in zip(requests, lls):
        by.setdefault((req.task_name, req.doc_id), []).append(ll)
    return sum(len(v) > 1 and sorted(v)[-1] == sorted(v)[-2] for v in by.values())


def mmlu_table(requests: list, results: dict[str, list[float]], pairs: list[tuple[str, str]]) -> None:
    preds = {label: argmax_by_question(requests, lls) for label, lls in results.items()}
    gold = {(r.task_name, r.doc_id): r.doc["answer"] for r in requests}
    n = len(gold)
    print(f"{'pair':<44}{'same argmax':>14}{'max |Δll|':>11}{'mean |Δll|':>12}")
    for a, b in pairs:
        same = sum(preds[a][k] == preds[b][k] for k in gold)
        deltas = [abs(x - y) for x, y in zip(results[a], results[b])]
        print(f"{a + ' vs ' + b:<44}{f'{same}/{n}':>14}{max(deltas):>11.4f}{sum(deltas) / len(deltas):>12.4f}")
    for label in dict.fromkeys(x for pair in pairs for x in pair):
        acc = sum(preds[label][k] == gold[k] for k in gold) / n
        print(f"  {label:<30} acc {100 * acc:6.2f}   questions with a tie at the top: {ties(requests, results[label])}")


def bbh_table(outputs: dict[str, list[str]], pairs: list[tuple[str, str]]) -> None:
    for a, b in pairs:
        same = sum(x == y for x, y in zip(outputs[a], outputs[b]))
        print(f"  identical outputs, {a} vs {b}: {same}/{len(outputs[a])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--subjects", default=FIVE)
    ap.add_argument("--shots", type=int, default=0, help="MMLU's few-shot examples (5: a cached preamble, cascade)")
    ap.add_argument("--mmlu-limit", type=int, default=None, help="questions per subject (default: all)")
    ap.add_argument("--bbh-limit", type=int, default=PRESETS["bbh"][1], help="documents per BBH task")
    ap.add_argument("--batch-sizes", default="1,8", help="lm-eval's two batch sizes (the yardstick)")
    ap.add_argument("--skip-mmlu", action="store_true")
    ap.add_argument("--skip-bbh", action="store_true")
    ap.add_argument(
        "--float32", action="store_true", help="also both in float32: the contrast, and each bf16 run vs it"
    )
    ap.add_argument("--float32-batch-size", type=int, default=8, help="lm-eval's batch size in float32")
    ap.add_argument("--dump", default=None, help="write every runner's log-likelihoods and outputs to this JSON file")
    args = ap.parse_args()
    data = Path(args.data_dir)
    if not (data / "mmlu/data/test").is_dir() or not (data / "bbh/bbh").is_dir():
        print(f"skipped: no MMLU and BBH mirror under {args.data_dir} (expected mmlu/data/test, bbh/bbh)")
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
    subjects = ",".join(f"mmlu_{s}" for s in args.subjects.split(","))
    mmlu = [] if args.skip_mmlu else build_requests(tm, subjects, args.mmlu_limit, None, args.shots)
    bbh = [] if args.skip_bbh else build_requests(tm, PRESETS["bbh"][0], args.bbh_limit, None)
    sizes = [int(b) for b in args.batch_sizes.split(",")]

    def runners(dtype: str, batch_sizes: list[int]) -> dict:
        loaded = load_model(args.model, dtype=dtype)
        out = {f"harness {dtype}": HarnessLM(loaded=loaded)}
        for b in batch_sizes:
            out[f"lm-eval {dtype} b{b}"] = HFLM(
                pretrained=loaded.identity["weights"], device="cpu", dtype=dtype, batch_size=b
            )
        return out

    def measure(lms: dict, reqs: list, method: str) -> dict[str, list]:
        results = {}
        for label, lm in lms.items():
            t0 = time.perf_counter()
            results[label] = getattr(lm, method)(reqs, disable_tqdm=True)
            print(f"  {method} {label}: {time.perf_counter() - t0:.1f} s", flush=True)
        return results

    head = f"{args.model} on cpu, {torch.get_num_threads()} thread(s)"
    lls: dict[str, list[float]] = {}
    outs: dict[str, list[str]] = {}
    # bf16 first, its tables printed before float32 starts (a long invocation cut short keeps them)
    for dtype, batch_sizes in (
        ("bfloat16", sizes),
        *((("float32", [args.float32_batch_size]),) if args.float32 else ()),
    ):
        lms = runners(dtype, batch_sizes)
        if mmlu:
            lls.update({k: [ll for ll, _ in v] for k, v in measure(lms, mmlu, "loglikelihood").items()})
        if bbh:
            outs.update(measure(lms, bbh, "generate_until"))
        del lms
        bf16 = [label for label in (lls or outs) if "bfloat16" in label]
        f32 = [label for label in (lls or outs) if "float32" in label]
        # float32: harness vs lm-eval, and each bf16 run against lm-eval's float32 answers
        pairs = [tuple(f32)] + [(b, f32[-1]) for b in bf16] if f32 else list(itertools.combinations(bf16, 2))
        if mmlu:
            questions = len({(r.task_name, r.doc_id) for r in mmlu})
            print(f"\nMMLU {args.shots}-shot, {args.subjects}, {questions} questions ({len(mmlu)} requests); {head}")
            mmlu_table(mmlu, lls, pairs)
        if bbh:
            print(f"\nBBH few-shot, {PRESETS['bbh'][0]}, {args.bbh_limit} docs each, greedy; {head}")
            bbh_table(outs, pairs)
        if args.dump:
            Path(args.dump).write_text(json.dumps({"loglikelihood": lls, "generate_until": outs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
