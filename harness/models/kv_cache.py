"""KV-cache views: a prefix's cache extended by more tokens, viewed by a batch's rows without copies,
or held once and attended by all rows at once (cascade attention, see attention.py)."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch

from harness.models.attention import NAME as ATTENTION_NAME
from harness.models.attention import shared_prefix_view
from harness.models.prefix_plan import CachedPrefix
from harness.models.runner import WorkStats

# A batch's rows attend a cached prefix at least this long in one call, the prefix held once (see
# attention.py: cascade attention); shorter prefixes are expanded to every row (0-shot MMLU's
# ~20-token descriptions stay there, and so do their batches).
CASCADE_MIN_PREFIX = 128


def cache_argument(model: Any) -> str:
    """The name the model's forward takes (and returns) its KV cache by: `cache` in recent
    transformers, which warn on every call that passes the older `past_key_values`."""
    forward = type(getattr(model, "_orig_mod", model)).forward
    try:
        parameters = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def fresh_view(cache: Any, rows: int, views: bool = True) -> Any:
    """A prefix KV cache for `rows` rows that the forward pass may extend, leaving `cache` as it was.

    A DynamicCache's layers grow by torch.cat, which builds new tensors, so the copy's layers may
    hold views of the parent's: keys/values expanded to `rows` rows (no copy; the first cat
    materialises them once). deepcopy + batch_repeat_interleave copied the prefix twice per batch.
    Other cache classes (static caches write in place), and `views=False`, get that deep copy.
    """
    if (
        not views
        or type(cache).__name__ != "DynamicCache"
        or any(type(layer).__name__ not in ("DynamicLayer", "DynamicSlidingWindowLayer") for layer in cache.layers)
    ):
        cache = copy.deepcopy(cache)
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return cache
    view = copy.copy(cache)
    view.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in view.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel() and layer.keys.shape[0] != rows:
            layer.keys = layer.keys.expand(rows, *layer.keys.shape[1:])
            layer.values = layer.values.expand(rows, *layer.values.shape[1:])
    return view


class KVCaches:
    """How this model takes, returns and extends KV caches."""

    def __init__(self, model: Any, work: WorkStats) -> None:
        self.model, self.work = model, work
        self.argument = cache_argument(model)  # decided once

    def passing(self, cache: Any) -> dict[str, Any]:
        """The keyword that hands the forward pass (or generate) `cache`."""
        return {self.argument: cache}

    def returned(self, output: Any) -> Any:
        """The KV cache a forward pass returned."""
        return getattr(output, self.argument)

    @torch.no_grad()
    def extend(self, cache: Any, tokens: tuple) -> Any:
        """KV cache of the parent prefix plus `tokens` (batch of one; the parent is left as it was)."""
        cache = fresh_view(cache, 1) if cache is not None else None
        ids = torch.tensor([tokens], device=self.model.device)
        self.work.forward_pass(ids.numel())
        return self.returned(self.model(ids, **self.passing(cache), use_cache=True, logits_to_keep=1))

    def for_rows(self, cache: Any, rows: int) -> tuple[Any, dict[str, Any]]:
        """(the cache a forward pass of `rows` rows after the cached prefix takes, extra model keywords):
        a long prefix held once with the `shared_prefix` keyword (see attention.py), else a view per row."""
        shared = (
            shared_prefix_view(cache)
            if cache.get_seq_length() >= CASCADE_MIN_PREFIX and self.model.config._attn_implementation == ATTENTION_NAME
            else None
        )
        if shared is not None:
            return shared[0], {"shared_prefix": shared[1]}
        return fresh_view(cache, rows), {}


class PrefixCaches:
    """The KV caches of a scoring plan's cached prefixes, each computed when a batch first needs it
    (under data parallel, by the processes that run such a batch) and kept while its groups run."""

    def __init__(self, kv: KVCaches) -> None:
        self.kv = kv
        self._kept: dict[CachedPrefix, Any] = {}

    def get(self, prefix: CachedPrefix | None) -> Any:
        if prefix is None:
            return None
        if prefix not in self._kept:
            self._kept[prefix] = self.kv.extend(self.get(prefix.parent), prefix.tokens)
        return self._kept[prefix]

    def keep_only(self, prefix: CachedPrefix | None) -> None:
        """Drop the caches of prefixes other than `prefix` and its ancestors: the plan runs depth
        first, so no later group needs them."""
        chain = prefix.chain() if prefix is not None else []
        self._kept = {p: cache for p, cache in self._kept.items() if any(p is q for q in chain)}
