"""MMLU with harness vs lm-eval 0.4.13 `--model hf`, side by side in one process.

Both read the same task YAMLs (tasks/mmlu) and the same mirror data; lm-eval gets the same weights
(the safetensors harness converted from the bundled GGUF). Each model is loaded once, outside the
clocks; each timed repeat runs task building and scoring. Repeats alternate (harness, lm-eval,
harness, ...) so that the machine's drift over the invocation falls on both alike. Prints per-subject
acc and acc_norm for both, the predicted-answer agreement, wall times (min/median/max over --repeats)
and their ratio, and harness's scoring throughput against the model's raw forward throughput
(--ceiling): measured just before and just after each harness repeat, each repeat's share taken
against the mean of its two, since the ceiling itself drifts 10-15 % over a half-hour invocation.

    python benchmarks/mmlu_vs_lmeval.py --shots 0                       # 5 subjects, 817 questions
    python benchmarks/mmlu_vs_lmeval.py --shots 5 --subjects abstract_algebra,anatomy,marketing
    python benchmarks/mmlu_vs_lmeval.py --variant continuation --repeats 3 --ceiling
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

FIVE = "abstract_algebra,anatomy,college_biology,high_school_us_history,marketing"


def predictions(samples: list[dict]) -> dict[int, tuple[int, int]]:
    """doc_id -> (argmax log-likelihood, argmax log-likelihood per character of the continuation)."""
    out = {}
    for s in samples:
        lls = np.array([r[0] for r in s["filtered_resps"]])
        lens = np.array([len(a[1]) for a in s["arguments"]], dtype=float)
        out[s["doc_id"]] = (int(lls.argmax()), int((lls / lens).argmax()))
    return out


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def spread(times: list[float]) -> str:
    return f"{min(times):7.1f} {statistics.median(times):7.1f} {max(times):7.1f}"


def forward_ceiling(model, lengths=(128, 512), batch_sizes=(1, 4, 8, 16), seconds=3.0) -> tuple[float, str]:
    """Best sustained tokens/s of a plain forward pass (full logits, as lm-eval runs it) on random
    tokens, over shapes and over both attention functions (transformers' sdpa, harness's blocked
    one): per shape, one warm-up pass, then passes for at least `seconds`, like a scoring run
    (a single timed pass would catch the machine at its best moment and flatter the ceiling)."""
    import torch

    from harness.models import attention

    best, where = 0.0, ""
    vocab = model.config.vocab_size
    original = model.config._attn_implementation
    with torch.no_grad():
        for implementation in dict.fromkeys((original, "sdpa", attention.register())):
            model.set_attn_implementation(implementation)
            for length in lengths:
                for bs in batch_sizes:
                    ids = torch.randint(100, vocab - 1, (bs, length))
                    model(ids)  # warm-up
                    passes, t0 = 0, time.perf_counter()
                    while (elapsed := time.perf_counter() - t0) < seconds or passes < 2:
                        model(ids)
                        passes += 1
                    rate = passes * bs * length / elapsed
                    if rate > best:
                        best, where = rate, f"batch {bs} x {length} tokens, {implementation}"
    model.set_attn_implementation(original)
    return best, where


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--variant", choices=["default", "continuation"], default="default")
    ap.add_argument("--subjects", default=FIVE)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ceiling", action="store_true", help="also measure the raw forward throughput")
    args = ap.parse_args()
    if not (Path(args.data_dir) / "mmlu/data/test").is_dir():
        print(f"skipped: no MMLU mirror under {args.data_dir} (expected mmlu/data/test)")
        return 0
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM

    from harness.engine import run_evaluation
    from harness.mirror import resolve_data_dir
    from harness.models.catalog import load_model
    from harness.spec import RunSpec
    from harness.tasks import build_task_manager

    suffix = "_continuation" if args.variant == "continuation" else ""
    tasks = [f"mmlu_{s}{suffix}" for s in args.subjects.split(",")]
    loaded = load_model(args.model)  # converts the GGUF once, before any clock starts
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ref_lm = HFLM(
        pretrained=loaded.identity["weights"], device=device, dtype=loaded.identity["dtype"], batch_size=args.batch_size
    )
    spec = RunSpec(
        model=args.model,
        tasks=tuple(tasks),
        num_fewshot=args.shots,
        limit=args.limit,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
    )

    t_ours, t_ref, rates, around = [], [], [], []  # around: per harness repeat, the ceilings (before, after)
    ceiling = forward_ceiling(loaded.model) if args.ceiling else None
    for _ in range(args.repeats):
        # no request cache: every repeat computes everything
        ours, seconds = timed(lambda: run_evaluation(spec, loaded=loaded, request_cache=None))
        t_ours.append(seconds)
        stats = ours.env["runner"]
        rates.append(stats["tokens_computed"] / stats["loglikelihood_seconds"])
        if ceiling is not None:
            around.append((ceiling, forward_ceiling(loaded.model)))
        ref, seconds = timed(
            lambda: lm_eval.simple_evaluate(
                model=ref_lm,
                tasks=tasks,
                task_manager=build_task_manager(data_dir=resolve_data_dir(args.data_dir)),
                num_fewshot=args.shots,
                limit=args.limit,
                log_samples=True,
                bootstrap_iters=1000,
            )
        )
        t_ref.append(seconds)
        if ceiling is not None and len(t_ref) < args.repeats:
            ceiling = forward_ceiling(loaded.model)

    print(
        f"\nMMLU ({args.variant}) {args.shots}-shot, {args.model} ({loaded.identity['dtype']}, {device}, "
        f"{torch.get_num_threads()} threads), batch size {args.batch_size}"
    )
    head = (
        f"{'subject':<26}{'n':>5}  {'acc lm-eval':>11}{'acc ours':>10}{'Δ':>7}  "
        f"{'norm lm-eval':>12}{'norm ours':>10}{'Δ':>7}  {'same pred':>9}"
    )
    print(head)
    print("-" * len(head))
    worst_delta, total, agree = 0.0, 0, 0
    for task in tasks:
        r, o = ref["results"][task], ours.results["results"][task]
        pr, po = predictions(ref["samples"][task]), predictions(ours.samples[task])
        same = sum(pr[d] == po[d] for d in pr)
        total += len(pr)
        agree += same
        d_acc = 100 * (o["acc,none"] - r["acc,none"])
        d_norm = 100 * (o["acc_norm,none"] - r["acc_norm,none"])
        worst_delta = max(worst_delta, abs(d_acc), abs(d_norm))
        print(
            f"{task[5:].removesuffix(suffix):<26}{len(pr):>5}  {100 * r['acc,none']:>11.2f}{100 * o['acc,none']:>10.2f}"
            f"{d_acc:>+7.2f}  {100 * r['acc_norm,none']:>12.2f}{100 * o['acc_norm,none']:>10.2f}{d_norm:>+7.2f}  "
            f"{100 * same / len(pr):>8.1f}%"
        )
    print("-" * len(head))
    print(
        f"same predicted answer (acc and acc_norm) on {agree}/{total} = {100 * agree / total:.2f}% of questions; "
        f"largest |Δ| {worst_delta:.2f} points"
    )
    print(f"\nwall seconds over {args.repeats} run(s)   min  median     max")
    print(f"  lm-eval hf                {spread(t_ref)}")
    print(f"  harness                   {spread(t_ours)}")
    print(f"  ratio harness/lm-eval (median) {statistics.median(t_ours) / statistics.median(t_ref):.3f}")
    print(
        f"harness computed {stats['tokens_computed']:,} tokens (not counting padding) per run in "
        f"{stats['forward_passes']:,} forward passes; tokens/s while scoring {spread(rates)}"
    )
    if around:
        ceilings = [c for pair in around for c in pair]
        shares = [rate / ((before[0] + after[0]) / 2) for rate, (before, after) in zip(rates, around)]
        where = sorted({w for _, w in ceilings})
        print(
            f"raw forward ceiling tokens/s            {spread([c for c, _ in ceilings])} "
            f"({len(ceilings)} measurements, best shape: {', '.join(where)})"
        )
        print(
            f"harness scoring throughput, % of the ceiling around each run "
            f"{spread([100 * x for x in shares])}  ({', '.join(f'{100 * x:.0f}' for x in shares)})"
        )
        top = max(c for c, _ in ceilings)
        print(
            f"  the strictest reading, against the highest ceiling of the invocation ({top:,.0f}): "
            f"{spread([100 * r / top for r in rates])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
