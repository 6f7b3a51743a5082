#!/usr/bin/env bash
# crfm-helm 0.5.16, the oracle of tests/test_perturb_helm.py, in a venv of its own (.ci/venvs/helm):
# its pins (torch, spacy, transformers<6 ...) conflict with ours, and its perturbation modules need
# only the few libraries below, so it is installed --no-deps with those (versions within its pins).
# Prints the venv's python for HARNESS_HELM_PYTHON; on failure, a warning (those tests then skip).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.ci/venvs/helm
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import helm.benchmark.augmentations.mild_mix_perturbation" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --no-deps crfm-helm==0.5.16 >&2
  "$venv/bin/pip" install -q "cattrs~=22.2" "colorlog~=6.9" "dacite~=1.6" "Mako~=1.2" "numpy>=1.26,<3" \
    "pyhocon~=0.3.59" "retrying~=1.3" "tqdm~=4.64" "zstandard~=0.18.0" "sqlitedict>=2.1,<3" filelock pyyaml requests >&2
  "$venv/bin/python" -c "import helm.benchmark.augmentations.mild_mix_perturbation, helm.benchmark.augmentations.dialect_perturbation, helm.benchmark.augmentations.person_name_perturbation, helm.benchmark.augmentations.gender_perturbation"
fi
echo "$PWD/$venv/bin/python"
