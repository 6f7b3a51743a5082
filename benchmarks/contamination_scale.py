"""Scale of `harness contamination`: MMLU test (14,042), BBH, GLUE, SuperGLUE, SAMSum, SQuAD and GSM8K
evaluation documents against 100 MB of text, hashed 13-grams, one process.

The text: WikiText-2 (both files of the mirror, their lines shuffled again per copy) for part, and
the Python and text files of the installed packages for the rest, written once into --workdir.
SuperGLUE's task YAMLs are not on this branch: its validation rows are read from the mirror's
JSONL files directly (all string fields as the input, the label as the label) unless --no-super-glue.

    python benchmarks/contamination_scale.py --data-dir ../shared/data --workdir /tmp/contamination-scale
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import sysconfig
import time
from pathlib import Path

from harness.contamination.check import run_check
from harness.contamination.docs import EvalDoc, doc_hash
from harness.contamination.report import report_markdown

TASKS = "mmlu,bbh_zeroshot,glue,samsum,squad,gsm8k"


def build_corpus(data_dir: Path, folder: Path, megabytes: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "DONE"
    if done.is_file() and json.loads(done.read_text())["megabytes"] == megabytes:
        return sorted(p for p in folder.iterdir() if p.suffix == ".txt")
    target = megabytes * 2**20
    lines: list[str] = []
    for name in ("wikitext-2/wiki.test.tokens", "wikitext-2-raw-reconstructed/wiki.test.raw"):
        lines += (data_dir / "wikitext" / name).read_text(encoding="utf-8").splitlines()
    rng, size = random.Random(0), 0
    with open(folder / "wikitext.txt", "w", encoding="utf-8") as f:
        while size < target * 0.4:
            rng.shuffle(lines)
            text = "\n".join(lines) + "\n"
            f.write(text)
            size += len(text.encode("utf-8"))
    site = Path(sysconfig.get_paths()["purelib"])
    with open(folder / "packages.txt", "w", encoding="utf-8") as f:
        for path in sorted(site.rglob("*")):
            if size >= target:
                break
            if path.suffix in (".py", ".txt", ".md", ".rst") and path.is_file():
                try:
                    text = path.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                f.write(text + "\n")
                size += len(text.encode("utf-8")) + 1
    done.write_text(json.dumps({"megabytes": megabytes}))
    return sorted(p for p in folder.iterdir() if p.suffix == ".txt")


def super_glue_docs(data_dir: Path) -> list[EvalDoc]:
    docs = []
    for file in sorted((data_dir / "super_glue").glob("*/val.jsonl")):
        name = f"super_glue_{file.parent.name.lower()}"
        with open(file, encoding="utf-8") as f:
            for i, line in enumerate(f):
                row = json.loads(line)
                text = "\n".join(str(v) for k, v in row.items() if isinstance(v, str) and k != "label")
                if not text and isinstance(row.get("passage"), dict):  # MultiRC, ReCoRD: nested passages
                    text = json.dumps(row["passage"], ensure_ascii=False)
                docs.append(EvalDoc(name, i, doc_hash(row), text, " " + str(row.get("label", ""))))
    return docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/contamination-scale"))
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--no-super-glue", action="store_true")
    args = parser.parse_args()

    corpus = build_corpus(args.data_dir, args.workdir / "corpus", args.megabytes)
    started = time.perf_counter()
    extra = [] if args.no_super_glue else super_glue_docs(args.data_dir)
    report = run_check(
        [str(p) for p in corpus],
        [t for t in args.tasks.split(",") if t],
        data_dir=str(args.data_dir),
        extra_docs=extra,
    )
    wall = time.perf_counter() - started
    print(report_markdown(report))
    print(f"wall seconds (all, tasks built inside the clock): {wall:.1f}")
    print(json.dumps(report.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
