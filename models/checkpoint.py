"""Self-describing checkpoints: safetensors weights with a JSON header, no pickle.

One ``.safetensors`` file holds the model weights, the z-score statistics
(tensors ``norm.mean`` and ``norm.std``), the front end's filterbanks as librosa
built them when the checkpoint was saved (``frontend.mel``, ``frontend.chroma``;
optional: older files without them get librosa's at load, see
:func:`models.mel.adopt_filterbanks`) and, in the safetensors metadata
under ``hookstream``, a JSON document::

    {"format": 1, "name": ..., "model": {ModelConfig}, "mel": {MelConfig},
     "labels": [...], "provenance": {"trained": bool, "data": ..., "command": ...,
     "metrics": {...}, "created_at": ...}}

``hookstream detect`` reports ``name``; an untrained checkpoint's name starts
with ``untrained-`` and its provenance says ``"trained": false``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models import mel as mel_frontend
from models import nets
from models.config import MelConfig, from_dict, to_dict
from models.errors import CheckpointError, ConfigError

FORMAT = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "hookstream-chorus-pop909.safetensors"
# The papers' method: Huang 2017 trained on song-level labels only (configs/detect-huang-weak.yaml).
WEAK_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "hookstream-huang-pop909.safetensors"
# The default model's provisional head: the same chunk vectors, trained on tracks cut short
# (configs/train/chorus-pop909-provisional.yaml); models.detect.provisional_head picks it.
PROVISIONAL_CHECKPOINT = DEFAULT_CHECKPOINT.with_name("hookstream-chorus-pop909-provisional.safetensors")
_NORM_KEYS = ("norm.mean", "norm.std")
_BANK_PREFIX = "frontend."


@dataclass(frozen=True)
class Checkpoint:
    name: str
    model: nets.ModelConfig
    mel: MelConfig
    labels: tuple[str, ...]
    norm_mean: np.ndarray  # (n_mels,) float32
    norm_std: np.ndarray  # (n_mels,) float32
    state_dict: dict[str, torch.Tensor]
    provenance: dict = field(default_factory=dict)
    # The front end's filterbanks as stored in the file ({"mel": ..., "chroma": ...}, float32,
    # models.mel.filterbanks); empty for a file saved before they were stored.
    filterbanks: dict[str, np.ndarray] = field(default_factory=dict)

    def adopt_filterbanks(self) -> None:
        """Make the front end use this checkpoint's stored filterbanks (no librosa import)."""
        if self.filterbanks:
            mel_frontend.adopt_filterbanks(self.mel, self.filterbanks, self.model.n_chroma)

    @property
    def trained(self) -> bool:
        return bool(self.provenance.get("trained"))

    def build(self) -> nets.AttentionNet:
        """The model with these weights, in eval mode, on the CPU."""
        net = nets.build(self.model)
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {self.name}: weights do not fit its architecture "
                                  f"({str(exc).splitlines()[0]})") from None
        return net.eval()

    def describe(self) -> dict:
        return {"format": FORMAT, "name": self.name, "model": to_dict(self.model),
                "mel": to_dict(self.mel), "labels": list(self.labels),
                "provenance": self.provenance}


_VECTOR_FIELDS = ("arch", "conv_channels", "n_chroma", "fine_slots")  # what shapes a chunk vector


def chunk_vector_mismatch(a: Checkpoint, b: Checkpoint) -> str | None:
    """Why ``a`` and ``b`` would not make the same chunk vectors from the same audio, or None.

    Two checkpoints make the same chunk vectors when their front end (mel settings,
    filterbanks, z-score statistics), their CNN weights (``conv.*``, bitwise) and
    the fields that lay out a chunk vector agree: then one track state serves both.
    """
    if a.mel != b.mel:
        return "another mel front end"
    for key in _VECTOR_FIELDS:
        if getattr(a.model, key) != getattr(b.model, key):
            return f"another model.{key} ({getattr(b.model, key)!r} against {getattr(a.model, key)!r})"
    if not (np.array_equal(a.norm_mean, b.norm_mean) and np.array_equal(a.norm_std, b.norm_std)):
        return "other z-score statistics"
    conv_a = {k: v for k, v in a.state_dict.items() if k.startswith("conv.")}
    conv_b = {k: v for k, v in b.state_dict.items() if k.startswith("conv.")}
    if set(conv_a) != set(conv_b) or any(not torch.equal(conv_a[k], conv_b[k]) for k in conv_a):
        return "other CNN weights"
    if a.filterbanks and b.filterbanks and any(
            not np.array_equal(a.filterbanks[k], b.filterbanks.get(k)) for k in a.filterbanks):
        return "other front-end filterbanks"
    return None


def save(ckpt: Checkpoint, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    tensors["norm.mean"] = torch.from_numpy(np.asarray(ckpt.norm_mean, np.float32))
    tensors["norm.std"] = torch.from_numpy(np.asarray(ckpt.norm_std, np.float32))
    banks = ckpt.filterbanks or mel_frontend.filterbanks(ckpt.mel, ckpt.model.n_chroma)
    tensors.update({_BANK_PREFIX + k: torch.from_numpy(v) for k, v in banks.items()})
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={"hookstream": json.dumps(ckpt.describe())})
    tmp.replace(path)
    return path


def load(path: str | Path | None = None) -> Checkpoint:
    """Load a checkpoint; ``None`` loads the shipped default model."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        hint = " (the default model ships in models/assets/; is the package installed from a full clone?)" \
            if path == DEFAULT_CHECKPOINT else ""
        raise CheckpointError(f"{path}: checkpoint not found{hint}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if "hookstream" not in meta:
        raise CheckpointError(f"{path}: safetensors file without hookstream metadata")
    try:
        doc = json.loads(meta["hookstream"])
        if doc.get("format") != FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {doc.get('format')!r}, "
                                  f"this hookstream reads format {FORMAT}")
        model = nets.ModelConfig.from_json(doc["model"])
        mel = from_dict(MelConfig, doc["mel"], prefix="mel.")
        labels = tuple(doc["labels"])
    except (KeyError, json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: invalid hookstream metadata ({exc})") from None
    missing = [k for k in _NORM_KEYS if k not in tensors]
    if missing:
        raise CheckpointError(f"{path}: missing tensors {missing}")
    mean = tensors.pop("norm.mean").numpy()
    std = tensors.pop("norm.std").numpy()
    if len(labels) != model.n_labels:
        raise CheckpointError(f"{path}: {len(labels)} label names for {model.n_labels} outputs")
    banks = {k[len(_BANK_PREFIX):]: tensors.pop(k).numpy()
             for k in [k for k in tensors if k.startswith(_BANK_PREFIX)]}
    ckpt = Checkpoint(name=doc.get("name", path.stem), model=model, mel=mel, labels=labels,
                      norm_mean=mean, norm_std=std, state_dict=tensors,
                      provenance=doc.get("provenance", {}), filterbanks=banks)
    try:
        ckpt.adopt_filterbanks()
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return ckpt


def untrained(model: nets.ModelConfig, labels: tuple[str, ...], *, seed: int = 0,
              mel: MelConfig | None = None) -> Checkpoint:
    """A randomly initialised checkpoint, for tests and wiring only; says so in its name."""
    torch.manual_seed(seed)
    net = nets.build(model)
    mel = mel or MelConfig()
    return Checkpoint(
        name=f"untrained-{model.arch}-seed{seed}", model=model, mel=mel, labels=tuple(labels),
        norm_mean=np.zeros(mel.n_mels, np.float32), norm_std=np.ones(mel.n_mels, np.float32),
        state_dict=net.state_dict(),
        provenance={"trained": False, "note": "randomly initialised; not a trained model",
                    "created_at": now_iso()},
    )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
