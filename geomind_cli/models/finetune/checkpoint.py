"""Lightning checkpoints of TerraTorch fine-tunes: read the network's weights and load them strictly.

A ``terratorch fit`` checkpoint holds the task's ``state_dict``; the network is under ``model.``. Other entries
belong to the training task, not the network (e.g. ``criterion.weight`` from class weights), and are not read, as
they would not be by TerraTorch's own prediction. Two groups of network entries are skipped on purpose, because
TerraTorch's inference never uses them either:

- ``aux_heads.*``: auxiliary decoders that only feed training losses;
- ``encoder.tokenizer.<TiM target>.*``: TerraTorch's TiM builds a tokenizer for each TiM modality, but generated
  TiM tokens are embedded directly and never decoded or encoded (our TiM does not build it; nothing is downloaded).

Everything else must match exactly: a missing, unexpected or wrongly shaped key is a WeightsMismatchError naming it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from geomind_cli.errors import WeightsError, WeightsNotFoundError
from geomind_cli.models import weights as _weights

PREFIX = "model."
TRUST_ENV = "GEOMIND_TRUST_CHECKPOINT"  # =1: allow full unpickling of a checkpoint the user trusts


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint object (a dict). Read with ``weights_only`` unless GEOMIND_TRUST_CHECKPOINT=1."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"--checkpoint {path}: no such file; give the .ckpt written by `terratorch fit`")
    trusted = os.environ.get(TRUST_ENV) == "1"
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trusted, mmap=True)
    except pickle.UnpicklingError:
        if trusted:
            raise WeightsError(f"--checkpoint {path} cannot be read; is it a PyTorch/Lightning checkpoint?") from None
        raise WeightsError(f"--checkpoint {path} holds Python objects besides tensors, which are not loaded by "
                           f"default; if you trust the file, set {TRUST_ENV}=1 and run again") from None
    except Exception:
        raise WeightsError(f"--checkpoint {path} cannot be read; is it a PyTorch/Lightning checkpoint?") from None
    if not isinstance(data, Mapping):
        raise WeightsError(f"--checkpoint {path} does not hold a state dict")
    return dict(data)


def network_state(checkpoint: Mapping, *, source: str) -> dict[str, torch.Tensor]:
    """``model.*`` entries of a Lightning ``state_dict``, without the prefix."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source} has no state_dict")
    out = {k[len(PREFIX):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(PREFIX)}
    if not out:
        raise WeightsError(f"{source} has no model.* weights; give a checkpoint written by `terratorch fit` "
                           "(Lightning, with the TerraTorch task's state_dict)")
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{source}: entries {', '.join(bad[:3])} are not tensors")
    return out


def skipped(key: str, model: nn.Module) -> bool:
    """Network entries TerraTorch's inference never uses (see the module docstring)."""
    if key.startswith("aux_heads."):
        return True
    tokenizers = getattr(model.encoder, "tokenizer", {})
    for name in getattr(model.encoder, "tim_modalities", ()):
        from geomind_cli.facts.modalities import target_key

        target = target_key(name)
        if key.startswith(f"encoder.tokenizer.{target}.") and target not in tokenizers:
            return True
    return False


def load_network(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> nn.Module:
    """Strictly load ``state`` (prefix already stripped) into ``model``; WeightsMismatchError names the keys."""
    kept = {k: v for k, v in state.items() if not skipped(k, model)}
    _weights.check_state_dict(model, kept, source=source)
    model.load_state_dict(kept, strict=True)
    return model
