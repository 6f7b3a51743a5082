"""The house's rules (docs/architecture.md), read from the code's own imports: no room imports a
layer above it, tasks.py does not reach into the adapters, lm-eval's private API stays in one
module, and no room outgrows 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "harness"
ABOVE_THE_RUNNERS = (
    "harness.engine",
    "harness.store",
    "harness.reports",
    "harness.api",
    "harness.commands",
    "harness.cli",
)
# lm-eval beyond its public face (simple_evaluate, lm_eval.api, lm_eval.tasks.TaskManager)
LM_EVAL_PRIVATE = ("lm_eval.models", "lm_eval.utils", "lm_eval.evaluator", "lm_eval.__main__", "lm_eval.tasks._")


def rooms() -> list[Path]:
    return sorted(HARNESS.rglob("*.py"))


def name_of(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every module a file imports (at the top, in functions, under TYPE_CHECKING), with the names it takes."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p if p.endswith("_") else p + ".") for p in prefixes)


def test_the_rules_see_the_whole_house():
    names = {name_of(p) for p in rooms()}
    assert {"harness.engine", "harness.store", "harness.models.hf", "harness.tasks", "harness.lm_eval_compat"} <= names
    assert any(module == "harness.models.hf" for module, _ in imports(HARNESS / "engine.py"))


@pytest.mark.parametrize("package", ["scorers", "mirror", "models"])
def test_scorers_mirror_and_runners_import_nothing_above_them(package):
    offenders = [
        (name_of(p), module)
        for p in (HARNESS / package).rglob("*.py")
        for module, _ in imports(p)
        if under(module, ABOVE_THE_RUNNERS)
    ]
    assert offenders == []


def test_the_perturbations_import_nothing_above_them_and_not_crfm_helm():
    """harness.perturb is HELM's code ported, not imported: crfm-helm is only the tests' oracle."""
    offenders = [
        (name_of(p), module)
        for p in rooms()
        for module, _ in imports(p)
        if under(module, ("helm",)) or (p.is_relative_to(HARNESS / "perturb") and under(module, ABOVE_THE_RUNNERS))
    ]
    assert offenders == []


def test_nothing_imports_the_cli_but_its_entry_point():
    offenders = [
        (name_of(p), module)
        for p in rooms()
        if p != HARNESS / "__main__.py"
        for module, names in imports(p)
        if under(module, ("harness.cli",)) or (module == "harness" and "cli" in names)
    ]
    assert offenders == []


def test_tasks_get_their_hooks_handed_in_not_imported_from_the_adapters():
    offenders = [
        module
        for module, names in imports(HARNESS / "tasks.py")
        if under(module, ("harness.adapters",)) or (module == "harness" and "adapters" in names)
    ]
    assert offenders == []


def test_lm_evals_private_api_is_imported_in_one_module():
    offenders = []
    for path in rooms():
        if path.name == "lm_eval_compat.py":
            continue
        for module, names in imports(path):
            if under(module, LM_EVAL_PRIVATE) or (
                module.startswith("lm_eval") and any(n.startswith("_") for n in names)
            ):
                offenders.append((name_of(path), module))
    assert offenders == []


def test_no_room_is_over_400_lines():
    sizes = {name_of(p): len(p.read_text(encoding="utf-8").splitlines()) for p in rooms()}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
    assert sizes["harness.models.hf"] <= 450


def test_the_contamination_room_is_imported_from_applications_and_commands_only():
    allowed = ("harness.contamination", "harness.finetune", "harness.commands", "harness.reports")
    offenders = [
        (name_of(p), module)
        for p in rooms()
        if not under(name_of(p), allowed)
        for module, _ in imports(p)
        if under(module, ("harness.contamination",))
    ]
    assert offenders == []
