"""The adapter card of a fine-tuning run for people: OUT/README.md and OUT/loss.svg (card.json, written by
train.py, holds the same for programs)."""

from __future__ import annotations

from typing import Any


def loss_svg(history: list, width: int = 480, height: int = 200) -> str:
    """The training loss per step as a small self-contained SVG polyline."""
    pad = 30
    if not history:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"></svg>\n'
    steps = [s for s, _ in history]
    losses = [v for _, v in history]
    lo, hi = min(losses), max(losses)
    span_x = max(steps[-1] - steps[0], 1)
    span_y = (hi - lo) or 1.0
    points = " ".join(
        f"{pad + (s - steps[0]) / span_x * (width - 2 * pad):.1f},"
        f"{height - pad - (v - lo) / span_y * (height - 2 * pad):.1f}"
        for s, v in history
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>\n'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>\n'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>\n'
        f'<text x="{pad}" y="{pad - 8}">loss {hi:.3f}</text>\n'
        f'<text x="{pad}" y="{height - 8}">step {steps[0]}: min {lo:.3f}</text>\n'
        f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">step {steps[-1]}</text>\n'
        f"</svg>\n"
    )


def card_markdown(card: dict[str, Any]) -> str:
    """OUT/README.md: the adapter card for people (card.json holds the same for programs)."""
    base, data, hp = card["base_model"], card["data"], card["hyperparameters"]
    source = data.get("path") or f"task {data.get('task')} split {data.get('split')}"

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    lines = [
        f"# {card['peft_type']} adapter for {base.get('name')}",
        "",
        f"- base model: `{base.get('name')}` sha256 `{base.get('sha256')}`",
        f"- data: {source}, sha256 `{data.get('sha256')}`; {data['train']} train / {data['holdout']} held out",
        f"- steps: {card['steps']} ({card['steps_per_epoch']} per epoch); trainable parameters "
        f"{card['trainable_parameters']:,}",
        f"- held-out loss: {fmt(card['holdout_loss_before'])} before, {fmt(card['holdout_loss'])} after",
        *([contamination_line(card["contamination"])] if card.get("contamination") else []),
        f"- wall time: {card['wall_seconds']} s; libraries: "
        + ", ".join(f"{k} {v}" for k, v in card["libraries"].items()),
        "",
        "## Hyperparameters",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in hp.items()],
        "",
        "## Training loss",
        "",
        "![training loss](loss.svg)",
        "",
        "step: loss " + ", ".join(f"{s}: {v:.4f}" for s, v in card["loss_curve"]),
        "",
        "Evaluate: `harness run --adapter THIS_FOLDER --model " + str(base.get("name")) + " --tasks ...`",
        "",
    ]
    return "\n".join(lines)


def contamination_line(overlap: dict[str, Any]) -> str:
    """The card's line on the training pairs' overlap with the task's evaluation split."""
    counts = overlap.get("counts", {})
    return (
        f"- overlap with the evaluated split ({overlap.get('task')} {overlap.get('split')}, "
        f"{overlap.get('method')}): {overlap.get('flagged')} of {overlap.get('documents')} documents "
        f"({counts.get('input', 0)} input, {counts.get('input-and-label', 0)} input-and-label, "
        f"{counts.get('label', 0)} label only); longest span {overlap.get('longest')} words"
    )
