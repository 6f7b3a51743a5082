"""What a whole leaderboard suite costs: every family on SmolLM2-135M, harness and lm-eval side by side.

Families (the leaderboard's): MMLU 57 subjects 0-shot, BBH cot_fewshot (max_gen_toks 256 for both,
as issue 26's bar), GLUE, SuperGLUE (the members the mirror holds), SAMSum, DialogSum, SQuAD,
GSM8K CoT, WikiText. `--limit` documents per task (MMLU: per subject; default 6) keeps the whole
invocation under an hour here (benchmarks/RESULTS.md has the measured runs); SQuAD takes
--squad-limit (one task: the issue's 500), WikiText --wikitext-limit pages (a page is one or more
8,192-token windows, whose attention is quadratic in the window).

Per family: documents, tokens computed (forward-pass tokens that are not padding), tokens generated,
harness wall time, and lm-eval `--model hf`'s wall time on the same slice. lm-eval runs on a
sub-slice of --lm-eval-share of each family's documents (1: the whole slice) and its time, less
its task building (timed alone), is scaled up by documents; the table says which. WikiText always
runs whole (its pages' lengths vary widely). Nothing is read from the request cache.

    python benchmarks/suite.py                                   # under an hour here
    python benchmarks/suite.py --limit 5 --squad-limit 50 --lm-eval-share 0.4 --families mmlu,gsm8k_cot
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

# family -> (tasks, limit override or None, generation max_gen_toks given to both or None)
FAMILIES = {
    "mmlu": ("mmlu", None, None),
    "bbh_cot_fewshot": ("bbh_cot_fewshot", None, 256),
    "glue": ("glue", None, None),
    "super_glue": ("super_glue", None, None),
    "samsum": ("samsum", None, None),
    "dialogsum": ("dialogsum", None, None),
    "squad": ("squad", "squad", None),
    "gsm8k_cot": ("gsm8k_cot", None, None),
    "wikitext": ("wikitext", "wikitext", None),
}


def harness_family(model: str, tasks: str, limit: int, data_dir: str, max_gen: int | None) -> dict:
    from harness.engine import run_evaluation
    from harness.spec import RunSpec

    gen = {"max_gen_toks": max_gen} if max_gen else None
    spec = RunSpec(
        model=model,
        tasks=(tasks,),
        num_fewshot=0 if tasks == "mmlu" else None,
        limit=limit,
        data_dir=data_dir,
        bootstrap_iters=0,
        gen_kwargs=gen,
    )
    t0 = time.perf_counter()
    finished = run_evaluation(spec, request_cache=None)
    seconds = time.perf_counter() - t0
    work = finished.env["runner"]
    docs = sum(len({s["doc_id"] for s in samples}) for samples in finished.samples.values())
    return {
        "docs": docs,
        "computed": work["tokens_computed"],
        "generated": work["generated_tokens"],
        "seconds": seconds,
        "tasks": sorted(finished.samples),  # the members the mirror holds (the others were skipped)
    }


def lm_eval_family(
    weights: str, tasks: list[str], limit: int, data_dir: str, max_gen: int | None, batch: int
) -> tuple[float, float]:
    """(lm-eval's wall time on the slice, of which building its tasks: the part that does not grow
    with the documents, timed alone just before in the same warm state)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from harness.mirror import resolve_data_dir
    from harness.tasks import build_task_manager

    lm = HFLM(pretrained=weights, device="cpu", dtype="float32", batch_size=batch)
    t0 = time.perf_counter()
    build_task_manager(data_dir=resolve_data_dir(data_dir)).load(tasks)
    building = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=build_task_manager(data_dir=resolve_data_dir(data_dir)),
        num_fewshot=0 if all(t.startswith("mmlu_") for t in tasks) else None,
        limit=limit,
        gen_kwargs={"max_gen_toks": max_gen} if max_gen else None,
        bootstrap_iters=0,
    )
    return time.perf_counter() - t0, building


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--limit", type=int, default=6, help="documents per task (MMLU: per subject)")
    ap.add_argument("--squad-limit", type=int, default=500)
    ap.add_argument("--wikitext-limit", type=int, default=3, help="WikiText pages")
    ap.add_argument("--lm-eval-share", type=float, default=0.25, help="share of each slice lm-eval runs (0: none)")
    ap.add_argument("--lm-eval-batch-size", type=int, default=32)
    args = ap.parse_args()
    if not (Path(args.data_dir) / "mmlu").is_dir():
        print(f"skipped: no mirror under {args.data_dir}")
        return 0
    logging.basicConfig(level=logging.ERROR)
    for name in ("lm_eval", "transformers", "datasets", "harness"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from harness.models.catalog import resolve_weights

    started = time.perf_counter()
    weights = str(resolve_weights(args.model)[0])
    rows = []
    for family in args.families.split(","):
        tasks, limit_name, max_gen = FAMILIES[family]
        limit = {"squad": args.squad_limit, "wikitext": args.wikitext_limit}.get(limit_name, args.limit)
        ours = harness_family(args.model, tasks, limit, args.data_dir, max_gen)
        ref = how = None
        if args.lm_eval_share > 0:
            # WikiText's pages differ in length by tens of times: a share of them says little of the rest
            sub = limit if family == "wikitext" else max(1, math.ceil(limit * args.lm_eval_share))
            ref, building = lm_eval_family(weights, ours["tasks"], sub, args.data_dir, max_gen, args.lm_eval_batch_size)
            how = (
                "measured"
                if sub == limit
                else f"{sub}/{limit} docs a task, scaled (not its {building:.0f} s building tasks)"
            )
            # building the tasks costs the same for a sub-slice as for the slice: only the rest scales
            ref = building + (ref - building) * limit / sub
        rows.append((family, ours, ref, how))
        print(f"  {family}: harness {ours['seconds']:.1f} s" + (f", lm-eval {ref:.1f} s ({how})" if ref else ""))
    print(
        f"\n{args.model}, --limit {args.limit} (SQuAD {args.squad_limit}, WikiText {args.wikitext_limit}),"
        f" lm-eval batch {args.lm_eval_batch_size}"
    )
    head = f"{'family':<18}{'docs':>7}{'computed':>11}{'generated':>10}{'harness s':>11}{'lm-eval s':>11}{'ratio':>7}  lm-eval"
    print(head)
    total_ours = total_ref = 0.0
    for family, ours, ref, how in rows:
        total_ours += ours["seconds"]
        total_ref += ref or 0.0
        ratio = f"{ours['seconds'] / ref:7.2f}" if ref else f"{'':>7}"
        print(
            f"{family:<18}{ours['docs']:7d}{ours['computed']:11d}{ours['generated']:10d}{ours['seconds']:11.1f}"
            f"{(ref or 0):11.1f}{ratio}  {how or 'not run'}"
        )
    ratio = f"{total_ours / total_ref:7.2f}" if total_ref else ""
    print(f"{'total':<18}{'':7}{'':11}{'':10}{total_ours:11.1f}{total_ref:11.1f}{ratio}")
    print(
        f"the invocation took {(time.perf_counter() - started) / 60:.1f} minutes (lm-eval's sub-slices, loads included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
