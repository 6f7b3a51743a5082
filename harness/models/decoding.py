"""Decoding: batches of prompts generated after their shared preamble, by our own decode loop (rows
leave as they finish) or, for settings it does not reproduce, by transformers' `model.generate`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from harness.lm_eval_compat import postprocess_generated_text, stop_sequences_criteria
from harness.models.generation import GenerationSettings
from harness.models.kv_cache import KVCaches, fresh_view
from harness.models.prefix_plan import common_prefix_len
from harness.models.runner import WorkStats
from harness.request_cache import ResultSink

# Generation prefills a batch's shared preamble once when it is at least this long.
MIN_GEN_PREFIX = 16
# generation_config fields that make model.generate add logits processors Decoder.decode does not run
_GENERATE_ONLY_SETTINGS = (
    "repetition_penalty",
    "encoder_repetition_penalty",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "min_length",
    "min_new_tokens",
    "sequence_bias",
    "exponential_decay_length_penalty",
    "renormalize_logits",
    "guidance_scale",
    "watermarking_config",
)


def eos_token_ids(model: Any) -> set[int]:
    """The token ids that end a generation: the model's generation_config eos_token_id (one or a list)."""
    config = getattr(model, "generation_config", None)
    eos = config.eos_token_id if config is not None else None
    return set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])


class Decoder:
    """Token generation on one model: batch layout, the decode loop, the model.generate fallback."""

    def __init__(self, model: Any, tokenizer: Any, kv: KVCaches, work: WorkStats) -> None:
        self.model, self.tokenizer, self.kv, self.work = model, tokenizer, kv, work

    def own_decoder_applies(self, settings: GenerationSettings) -> bool:
        """decode reproduces model.generate for our settings (greedy, or seeded sampling, with penalties)
        unless a setting or the model's generation_config asks for a logits processor it does not run."""
        if settings.extra:  # num_beams, repetition_penalty, min_new_tokens: transformers' generate
            return False
        config = getattr(self.model, "generation_config", None)
        return config is None or not any(
            getattr(config, key, None) not in (None, 1.0, 0, False, []) for key in _GENERATE_ONLY_SETTINGS
        )

    def pad_between(self, prefix: tuple, suffixes: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        """[prefix | pads | suffix] per row with its attention mask: the shared prefix keeps the same
        positions in every row (so its KV cache serves all), and each suffix ends where generation begins."""
        width = len(prefix) + max(len(s) for s in suffixes)
        ids = torch.full((len(suffixes), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(suffixes), width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            ids[row, : len(prefix)] = torch.tensor(prefix, dtype=torch.long)
            mask[row, : len(prefix)] = 1
            ids[row, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
            mask[row, width - len(suffix) :] = 1
        return ids, mask

    @torch.no_grad()
    def decode(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        cache: Any,
        cached: int,
        processors: Any,
        until: list[str],
        max_new: int,
    ) -> list[list[int]]:
        """model.generate's decoding loop, less the rows that are done: each step runs only the rows
        still generating; a row leaves the batch (and its KV cache) at its EOS token or when its text
        holds a stop string, so a finished sequence stops costing. Positions, masks and the argmax over
        processed float32 logits are generate's; `cached` leading columns of `ids` are in `cache`.
        """
        device = self.model.device
        eos_ids = eos_token_ids(self.model)
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        step_ids, step_pos = ids[:, cached:], positions[:, cached:]  # the prompt (counted by the caller)
        live = list(range(ids.shape[0]))  # original row of each row still in the batch
        generated: list[list[int]] = [[] for _ in live]
        for step in range(max_new):
            out = self.model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                **self.kv.passing(cache),
                use_cache=True,
                logits_to_keep=1,
            )
            cache = self.kv.returned(out)
            scores = processors(ids, out.logits[:, -1].to(dtype=torch.float32))
            next_tokens = torch.argmax(scores, dim=-1)
            ids = torch.cat([ids, next_tokens[:, None]], dim=-1)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            keep = []
            for r, token in enumerate(next_tokens.tolist()):
                tokens = generated[live[r]]
                tokens.append(token)
                text = self.tokenizer.decode(tokens, skip_special_tokens=False)
                if token not in eos_ids and not any(stop in text for stop in until):
                    keep.append(r)
            if not keep or step == max_new - 1:
                break
            if len(keep) < len(live):
                index = torch.tensor(keep, device=device)
                ids, mask, next_tokens = ids[index], mask[index], next_tokens[index]
                step_pos = step_pos[index]
                cache.batch_select_indices(index)
                for processor in processors:
                    if hasattr(processor, "select"):
                        processor.select(keep)
                live = [live[r] for r in keep]
            step_ids, step_pos = next_tokens[:, None], step_pos[:, -1:] + 1
            self.work.forward_pass(step_ids.numel())
            self.work.decoding_step(step_ids.shape[0])
        return generated

    @torch.no_grad()
    def generate(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        cache: Any,
        processors: Any,
        until: list[str],
        settings: GenerationSettings,
    ) -> list[list[int]]:
        """transformers' model.generate on the batch (lm-eval's stop criteria): each row's new tokens."""
        width, device = ids.shape[1], self.model.device
        out = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            **self.kv.passing(cache),
            max_length=width + settings.max_gen_toks,
            stopping_criteria=stop_sequences_criteria(self.tokenizer, until, width, ids.shape[0]),
            pad_token_id=self.tokenizer.pad_token_id,
            use_cache=True,
            # sampling too runs as argmax: the seeded noise processor makes it a draw
            do_sample=False,
            logits_processor=processors,
            **settings.extra,
        )
        return [out[row, width:].tolist() for row in range(ids.shape[0])]


class GenerationJob:
    """One group of generation requests (one settings object) in batches (see batching.Batcher):
    rows are distinct prompts under greedy decoding, single requests under sampling; a row's
    output goes to every request in rows[row]. A batch's shared preamble is prefilled once and its
    KV cache reused while the next batches share it."""

    def __init__(
        self,
        decoder: Decoder,
        settings: GenerationSettings,
        encoded: dict[int, tuple],
        row_seed: dict[int, int | None],
        rows: dict[int, list[int]],
        instances: list,
        cache_hook: Any,
        results: dict[int, str],
        sink: ResultSink,
        pbar: Any,
        preamble_of: Callable[[int], Any] = lambda i: None,
    ) -> None:
        # preamble_of(i): which prompts share request i's preamble (its task; continuous batching)
        self.preamble_of = preamble_of
        self.decoder, self.settings, self.encoded, self.row_seed, self.rows = decoder, settings, encoded, row_seed, rows
        self.instances, self.cache_hook, self.results, self.sink, self.pbar = instances, cache_hook, results, sink, pbar
        self.until = list(settings.until)
        self.prefix_cache: tuple[tuple, Any] = ((), None)  # the last preamble prefilled, and its KV cache
        # lexicographic order puts prompts that share a preamble (few-shot exemplars) together
        self.order = sorted(rows, key=lambda i: encoded[i])

    def shape(self, batch: list[int]) -> tuple[int, int, int]:
        return max(len(self.encoded[i]) for i in batch) + self.settings.max_gen_toks, 0, 1

    def requests(self, batch: list[int]) -> int:
        return sum(len(self.rows[i]) for i in batch)

    def run(self, batch: list[int]) -> None:
        decoder, settings = self.decoder, self.settings
        prompts = [self.encoded[i] for i in batch]
        shared = min(len(p) for p in prompts) - 1  # every prompt keeps a token of its own
        for p in prompts[1:]:
            shared = min(shared, common_prefix_len(prompts[0], p))
        own = decoder.own_decoder_applies(settings)
        if shared >= MIN_GEN_PREFIX:
            prefix = prompts[0][:shared]
            if self.prefix_cache[0] != prefix:
                self.prefix_cache = (prefix, decoder.kv.extend(None, prefix))
            # transformers' generate (the fallback) gets a real copy: it may write caches in place
            cache = fresh_view(self.prefix_cache[1], len(batch), views=own)
        else:
            prefix, cache = (), None
        ids, mask = decoder.pad_between(prefix, [p[len(prefix) :] for p in prompts])
        width = ids.shape[1]
        decoder.work.forward_pass(int(mask[:, len(prefix) :].sum()))
        seeds = [self.row_seed[i] for i in batch] if settings.do_sample else None
        processors = settings.logits_processors(width, seeds)  # type: ignore[arg-type]
        if own:
            generated = decoder.decode(ids, mask, cache, len(prefix), processors, self.until, settings.max_gen_toks)
        else:
            generated = decoder.generate(ids, mask, cache, processors, self.until, settings)
        for i, tokens in zip(batch, generated):
            # each request a row answers got these tokens (under data parallel: this process's batches only)
            decoder.work.requests_read(0, len(tokens) * len(self.rows[i]))
            self.finish(i, tokens)

    def finish(self, i: int, tokens: list[int]) -> None:
        text = postprocess_generated_text(
            self.decoder.tokenizer.decode(tokens, skip_special_tokens=True), self.until, None
        )
        for j in self.rows[i]:
            self.results[j] = text
            self.cache_hook.add_partial("generate_until", self.instances[j].args, text)
            self.sink.add(j, text)
        self.pbar.update(len(self.rows[i]))
