"""Run by crfm-helm's own interpreter (HARNESS_HELM_PYTHON), never by harness's: applies HELM's
perturbations to texts, read as JSON from stdin, and writes the perturbed texts as JSON.

Input: {"specs": {name: [class path under helm.benchmark.augmentations, args]}, "texts": [...],
"seed": int | null, "ids": [...] (optional)}. Each text becomes an Instance with id "id<i>" (or
its entry in "ids") and no references (so the
generator is not drawn on for references first), passed to HELM's `Perturbation.apply`.
"""

import importlib
import json
import sys

from helm.benchmark.scenarios.scenario import Input, Instance


def main() -> None:
    request = json.load(sys.stdin)
    ids = request.get("ids") or [f"id{i}" for i in range(len(request["texts"]))]
    out = {}
    for name, (path, args) in request["specs"].items():
        module, cls = path.rsplit(".", 1)
        perturbation = getattr(importlib.import_module("helm.benchmark.augmentations." + module), cls)(**args)
        out[name] = [
            perturbation.apply(Instance(Input(text=text), references=[], id=iid), seed=request["seed"]).input.text
            for iid, text in zip(ids, request["texts"])
        ]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
