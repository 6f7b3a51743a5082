"""Bootstrap standard errors: harness.scorers (vectorised, seeded) vs lm-eval 0.4.13's `bootstrap_stderr`.

Same items, same number of resamples. BLEU: lm-eval's `bleu` aggregation over the SAMSum test references
(819) against perturbed copies of them (words dropped, swapped, lower-cased, cut); MCC: lm-eval's
`matthews_corrcoef` over the CoLA dev labels (1,043) against predictions with 30% of labels redrawn at
random. Prints seconds and stderr for both and their ratios.

    python benchmarks/bootstrap_vs_lmeval.py --iters 1000
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import perturb  # noqa: E402  the test suite's near-miss outputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--iters", type=int, default=1000, help="resamples, for both implementations")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument(
        "--single-process", action="store_true", help="lm-eval without its multiprocessing pool (DISABLE_MULTIPROC=1)"
    )
    args = ap.parse_args()
    data = Path(args.data_dir)
    if not (data / "samsum" / "test.jsonl").is_file() or not (data / "glue" / "CoLA" / "dev.tsv").is_file():
        print(f"skipped: SAMSum test or CoLA dev not found under {data}")
        return 0
    if args.single_process:
        os.environ["DISABLE_MULTIPROC"] = "1"

    import lm_eval.api.metrics as lm_metrics
    from harness.scorers.results import estimate_score

    rng = random.Random(0)
    refs = [json.loads(line)["response"] for line in open(data / "samsum" / "test.jsonl", encoding="utf-8")]
    bleu_items = [[r, perturb(r, rng)] for r in refs]
    with open(data / "glue" / "CoLA" / "dev.tsv", encoding="utf-8") as f:
        golds = [int(row[1]) for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    mcc_items = [(g, rng.choice((0, 1)) if rng.random() < 0.3 else g) for g in golds]

    print(
        f"resamples: {args.iters} each; lm-eval {'single process' if args.single_process else 'multiprocessing pool'}"
        f" ({os.cpu_count()} CPUs)"
    )
    print(
        f"{'metric':<6} {'n':>5} {'value':>8} | {'lm-eval s':>9} {'ours s':>8} {'speed-up':>8} | "
        f"{'lm-eval se':>10} {'ours se':>9} {'se ratio':>8}"
    )
    for name, agg, items in (("bleu", lm_metrics.bleu, bleu_items), ("mcc", lm_metrics.matthews_corrcoef, mcc_items)):
        value = agg(items)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            theirs = lm_metrics.bootstrap_stderr(agg, items, iters=args.iters)
        t_theirs = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours, _, _ = estimate_score(name, agg, items, {}, seed=args.seed, resamples=args.iters)
        t_ours = time.perf_counter() - t0
        print(
            f"{name:<6} {len(items):>5} {value:>8.4f} | {t_theirs:>9.2f} {t_ours:>8.3f} {t_theirs / t_ours:>7.0f}x | "
            f"{theirs:>10.5f} {ours.stderr:>9.5f} {ours.stderr / theirs:>8.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
