"""Adapters: what changes the model a runner sees (PEFT adapters) or the prompts it gets (RAG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.tasks import TaskHook


def task_hooks() -> tuple[TaskHook, ...]:
    """The hooks every task manager of harness is built with (harness.tasks.build_task_manager(hooks=...)):
    retrieval for tasks whose YAML declares metadata.harness_rag."""
    from harness.adapters.rag import RAG_HOOK

    return (RAG_HOOK,)
