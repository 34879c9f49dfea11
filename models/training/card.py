"""Model cards: what a checkpoint was trained on, how well it did, where it falls short.

The trainer stores a card (a JSON mapping) in the checkpoint's provenance
under ``model_card`` and writes it as Markdown beside the checkpoint
(``<out>.card.md``); :func:`render` turns any checkpoint's card into that
Markdown, so ``docs/`` can hold the shipped models' cards verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LIMITS = (
    "Trained on POP909: Chinese pop songs as three-track MIDI arrangements rendered with General "
    "MIDI soundfonts, not produced recordings with vocals, drums and mixing; expect lower "
    "accuracy on real recordings and on genres whose structure is not verse/chorus.",
    "The highlight is a fixed-length window; a chorus shorter than the window caps its precision.",
    "Provisional highlights while streaming use a bounded context (see models/scorer.py) and "
    "can differ from the final one.",
)


def make_card(*, name: str, model: Mapping[str, Any], labels: list[str], data: Mapping[str, Any],
              metrics: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The card of a training run (JSON-able)."""
    supervision = ("song-level labels and per-chunk chorus positions (chorus_weight "
                   f"{config.get('chorus_weight')})" if config.get("chorus_weight")
                   else "song-level labels only (the papers' weak supervision)")
    start = None
    if config.get("cnn_from") or config.get("init_checkpoint"):
        start = (f"CNN from {config['cnn_from']}" if config.get("cnn_from")
                 else f"every weight from {config['init_checkpoint']}")
        start += ", CNN frozen" if config.get("freeze_cnn") else ""
    crops = (f"{config['prefix_crop']:.0%} cut to a random prefix of at least "
             f"{config.get('prefix_min_chunks')} chunks (prefix_crop: provisional contexts show "
             "a track that has not ended)" if config.get("prefix_crop") else None)
    return {
        "name": name,
        "architecture": {k: model.get(k) for k in ("arch", "n_chroma", "track_norm",
                                                   "chorus_logits", "lstm_hidden", "fine_slots",
                                                   "phrase_links", "lstm2_hidden")
                         if model.get(k) not in (None, 0, False)},
        "starts_from": start,
        "supervision": supervision,
        "training_crops": crops,
        "labels": list(labels),
        "data": {k: data.get(k) for k in ("manifest", "extra_manifests", "n_train", "n_val",
                                          "n_train_annotated", "n_val_annotated", "split_rule")},
        "validation": {k: metrics.get(k) for k in ("best_epoch", "val_auc", "val_chorus",
                                                   "val_chorus_per_render") if k in metrics},
        "limits": list(LIMITS),
    }


def render(card: Mapping[str, Any]) -> str:
    """The card as Markdown."""
    lines = [f"# Model card: {card['name']}", ""]
    arch = card.get("architecture", {})
    lines += ["## Model", "", f"- architecture: {arch}"]
    if card.get("starts_from"):
        lines.append(f"- starts from: {card['starts_from']}")
    if card.get("training_crops"):
        lines.append(f"- training songs: {card['training_crops']}")
    lines += [f"- supervision: {card['supervision']}",
              f"- song-level labels: {', '.join(card.get('labels', []))}", ""]
    data = card.get("data", {})
    lines += ["## Training data", ""]
    lines += [f"- {k}: {v}" for k, v in data.items() if v not in (None, [], "")]
    lines += ["", "## Validation (the split used to choose; test figures in docs/evaluation.md)", ""]
    val = card.get("validation", {})
    if "val_chorus" in val:
        c = val["val_chorus"]
        lines.append(f"- chorusness window, all renders: c50 {_f(c.get('c50'))}, precision "
                     f"{_f(c.get('precision'))}, curve AUC {_f(c.get('auc'))} "
                     f"({int(c.get('songs') or 0)} songs)")
        for render_name, c in (val.get("val_chorus_per_render") or {}).items():
            lines.append(f"  - {render_name}: c50 {_f(c.get('c50'))}, precision "
                         f"{_f(c.get('precision'))}")
    if val.get("val_auc") is not None:
        lines.append(f"- song-level label ROC AUC: {_f(val['val_auc'])}")
    lines.append(f"- best epoch: {val.get('best_epoch')}")
    lines += ["", "## Limits", ""] + [f"- {x}" for x in card.get("limits", [])]
    return "\n".join(lines) + "\n"


def _f(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"
