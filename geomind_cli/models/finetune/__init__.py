"""Run TerraTorch fine-tunes of TerraMind without TerraTorch: config -> network -> checkpoint weights.

    model, cfg = load_finetuned("config.yaml", "best.ckpt", tim=["LULC"])
    logits = model({"S2L1C": s2, "S1GRD": s1})   # standardized with cfg.inputs' means/stds

With ``config=None`` the settings come from the checkpoint's own records (see :mod:`.hparams`).
"""

from __future__ import annotations

import os

from torch import nn

from geomind_cli.models.finetune.checkpoint import load_network, network_state, read_checkpoint
from geomind_cli.models.finetune.config import FinetuneConfig, InputSpec, NeckSpec, parse_config
from geomind_cli.models.finetune.hparams import config_from_checkpoint
from geomind_cli.models.finetune.peft import merge_peft
from geomind_cli.models.finetune.model import PixelWiseModel, ScalarOutputModel, build_finetuned


def finetune_settings(config: str | os.PathLike | None, checkpoint: str | os.PathLike, *,
                      tim: list[str] | None = None, ckpt: dict | None = None) -> FinetuneConfig:
    """The fine-tune's settings: from the YAML ``config``, or (None) from the ``checkpoint``'s hyper_parameters.

    ``tim``: TiM modalities to set (config without them) or check (config with them); an error for a backbone
    fine-tuned without TiM. ``ckpt``: the checkpoint already read, if it is.
    """
    if config is not None:
        return parse_config(config).with_tim(tim)
    if ckpt is None:
        ckpt = read_checkpoint(checkpoint)
    return config_from_checkpoint(ckpt, source=f"--checkpoint {checkpoint}").with_tim(tim)


def load_finetuned(config: str | os.PathLike | None, checkpoint: str | os.PathLike, *,
                   tim: list[str] | None = None) -> tuple[nn.Module, FinetuneConfig]:
    """Build the network of a TerraTorch fine-tune and load the Lightning ``checkpoint`` strictly (eval mode).

    ``config``: the YAML used for ``terratorch fit``, or None to read the settings from the checkpoint.
    ``tim``: as in :func:`finetune_settings`.
    """
    ckpt = None if config is not None else read_checkpoint(checkpoint)  # a bad config fails first
    cfg = finetune_settings(config, checkpoint, tim=tim, ckpt=ckpt)
    ckpt = ckpt if ckpt is not None else read_checkpoint(checkpoint)
    model = build_finetuned(cfg)
    source = f"--checkpoint {checkpoint}"
    state = network_state(ckpt, source=source)
    if cfg.peft is not None:  # LoRA: merged once here, so the run costs what the plain model costs
        state = merge_peft(state, cfg.peft, source=source)
    load_network(model, state, source=source)
    return model.eval(), cfg


__all__ = ["FinetuneConfig", "InputSpec", "NeckSpec", "PixelWiseModel", "ScalarOutputModel", "build_finetuned",
           "config_from_checkpoint", "finetune_settings", "load_finetuned", "parse_config"]
