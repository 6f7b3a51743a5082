"""Adapters: what changes the model a runner sees (PEFT adapters) or the prompts it gets (RAG)."""
