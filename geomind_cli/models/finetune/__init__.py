"""Run TerraTorch fine-tunes of TerraMind without TerraTorch: config -> network -> checkpoint weights.

    model, cfg = load_finetuned("config.yaml", "best.ckpt", tim=["LULC"])
    logits = model({"S2L1C": s2, "S1GRD": s1})   # standardized with cfg.inputs' means/stds
"""

from __future__ import annotations

import os

from torch import nn

from geomind_cli.models.finetune.checkpoint import load_network, network_state, read_checkpoint
from geomind_cli.models.finetune.config import FinetuneConfig, InputSpec, NeckSpec, parse_config
from geomind_cli.models.finetune.model import PixelWiseModel, ScalarOutputModel, build_finetuned


def load_finetuned(config: str | os.PathLike, checkpoint: str | os.PathLike, *,
                   tim: list[str] | None = None) -> tuple[nn.Module, FinetuneConfig]:
    """Build the network of a TerraTorch ``config`` and load the Lightning ``checkpoint`` strictly (eval mode).

    ``tim``: TiM modalities to set (config without them) or check (config with them); an error for a backbone
    fine-tuned without TiM.
    """
    cfg = parse_config(config).with_tim(tim)
    ckpt = read_checkpoint(checkpoint)
    model = build_finetuned(cfg)
    load_network(model, network_state(ckpt, source=f"--checkpoint {checkpoint}"), source=f"--checkpoint {checkpoint}")
    return model.eval(), cfg


__all__ = ["FinetuneConfig", "InputSpec", "NeckSpec", "PixelWiseModel", "ScalarOutputModel", "build_finetuned",
           "load_finetuned", "parse_config"]
