"""WikiText-2 perplexity with harness vs lm-eval 0.4.13 `--model hf`, side by side in one process.

harness runs its own `wikitext` task through the engine (`harness run` without the CLI); lm-eval
runs the wikitext YAML from its own package with `HFLM` on the same weights (the safetensors harness
converted from the bundled GGUF) and the same max length (the model's, 8192 for SmolLM2). Both read
the documents from the same mirror (../shared/data: pages of the reconstructed raw test file).
Prints word_perplexity, byte_perplexity and bits_per_byte for both, their relative difference
(the bar: word_perplexity within 0.1 %), and wall times. Each model is loaded outside the clocks.

Memory: a rolling window of max length L scores L positions, so a batch of B windows holds
B x L x vocab fp32 logits (8192 x 49152 x 4 B = 1.6 GB a window, twice with log-softmax): keep
the batch sizes small on a CPU.

    python benchmarks/wikitext_vs_lmeval.py --limit 8     # first 8 of 62 pages (~39k tokens)
    python benchmarks/wikitext_vs_lmeval.py               # the full test split (~292k tokens)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import lm_eval

METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")
LM_EVAL_WIKITEXT = Path(lm_eval.__file__).parent / "tasks" / "wikitext"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--limit", type=int, default=None, help="first N pages (default: all 62)")
    ap.add_argument("--batch-size", type=int, default=1, help="harness runner batch size")
    ap.add_argument("--ref-batch-size", type=int, default=1, help="lm-eval HFLM batch size")
    args = ap.parse_args()
    if not (Path(args.data_dir) / "wikitext").is_dir():
        print(f"skipped: no WikiText mirror under {args.data_dir} (expected wikitext/)")
        return 0
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)

    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.engine import run_evaluation
    from harness.mirror import resolve_data_dir
    from harness.models.catalog import load_model
    from harness.models.hf import HarnessLM
    from harness.spec import RunSpec
    from harness.tasks import MirrorTaskFactory

    loaded = load_model(args.model)  # converts the GGUF once, before any clock starts
    max_length = HarnessLM(loaded=loaded).max_length  # what the engine's runner will use
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ref_lm = HFLM(
        pretrained=loaded.identity["weights"],
        device=device,
        dtype=loaded.identity["dtype"],
        batch_size=args.ref_batch_size,
        max_length=max_length,
    )
    ref_tm = TaskManager(include_path=[LM_EVAL_WIKITEXT], include_defaults=False)
    ref_tm._factory = MirrorTaskFactory(data_dir=resolve_data_dir(args.data_dir))
    spec = RunSpec(
        model=args.model, tasks=("wikitext",), limit=args.limit, batch_size=args.batch_size, data_dir=args.data_dir
    )

    t0 = time.perf_counter()
    ours = run_evaluation(spec, loaded=loaded, request_cache=None)  # computed, not read from the cache
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = lm_eval.simple_evaluate(
        model=ref_lm, tasks=["wikitext"], task_manager=ref_tm, limit=args.limit, bootstrap_iters=0
    )
    t_ref = time.perf_counter() - t0

    n_docs = ours.results["n-samples"]["wikitext"]["effective"]
    tokens = ours.env["runner"]["tokens_computed"]
    print(
        f"\nWikiText-2 (wikitext-2-raw-v1 test, {n_docs} of 62 pages), {args.model} "
        f"({loaded.identity['dtype']}, {device}, {torch.get_num_threads()} threads), max length {max_length}, "
        f"batch size harness {args.batch_size} / lm-eval {args.ref_batch_size}"
    )
    head = f"{'metric':<18}{'lm-eval hf':>14}{'harness':>14}{'rel. diff':>12}"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for metric in METRICS:
        r, o = ref["results"]["wikitext"][f"{metric},none"], ours.results["results"]["wikitext"][f"{metric},none"]
        rel = abs(o - r) / abs(r)
        worst = max(worst, rel)
        print(f"{metric:<18}{r:>14.6f}{o:>14.6f}{rel:>12.2e}")
    print("-" * len(head))
    print(f"largest relative difference {worst:.2e} ({'within' if worst <= 1e-3 else 'OUTSIDE'} the 0.1 % bar)")
    print(f"\nwall seconds: lm-eval hf {t_ref:.1f}, harness {t_ours:.1f}, ratio harness/lm-eval {t_ours / t_ref:.3f}")
    print(
        f"harness computed {tokens:,} tokens in {ours.env['runner']['forward_passes']:,} forward passes "
        f"({tokens / t_ours:,.0f} tokens/s over the whole run)"
    )
    return 0 if worst <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
