"""Shared by the fine-tune tests: configs in TerraTorch's layout and Lightning-style checkpoints on disk."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

NECKS = [
    {"name": "SelectIndices", "indices": [2, 5, 8, 11]},
    {"name": "ReshapeTokensToImage", "remove_cls_token": False},
    {"name": "LearnedInterpolateToPyramidal"},
]
MEANS = {"S2L1C": [2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.560, 3306.481,
                   1473.847, 506.070, 2472.825, 1838.929], "S1GRD": [-12.599, -20.293]}
STDS = {"S2L1C": [1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732, 1727.26,
                  1024.687, 442.165, 1331.411, 1160.419], "S1GRD": [5.195, 5.890]}
TASK_CLASSES = {"segmentation": "SemanticSegmentationTask", "regression": "PixelwiseRegressionTask",
                "classification": "ClassificationTask"}


def config_dict(model_args: dict, *, task: str = "segmentation", class_names=None, means=None, stds=None) -> dict:
    init = {"model_factory": "EncoderDecoderFactory", "model_args": model_args, "loss": "ce", "ignore_index": -1}
    if class_names:
        init["class_names"] = list(class_names)
    return {
        "trainer": {"max_epochs": 1},
        "data": {"class_path": "terratorch.datamodules.GenericMultiModalDataModule",
                 "init_args": {"modalities": list(model_args["backbone_modalities"]), "means": means or MEANS,
                               "stds": stds or STDS}},
        "model": {"class_path": f"terratorch.tasks.{TASK_CLASSES[task]}", "init_args": init},
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_checkpoint(path: Path, state: dict[str, torch.Tensor], *, extra: dict | None = None) -> Path:
    """Lightning's layout: the task's state_dict with the network under ``model.``, plus training entries."""
    task_state = {f"model.{k}": v for k, v in state.items()}
    task_state["criterion.weight"] = torch.ones(2)  # a loss buffer of the task, not part of the network
    torch.save({"epoch": 1, "global_step": 10, "state_dict": task_state, **(extra or {})}, path)
    return path


@torch.no_grad()
def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial norm statistics and affine terms in the neck, decoder and head (fresh ones are 0/1), so that
    parity covers how they are used at inference."""
    g = torch.Generator().manual_seed(seed)
    for name, module in model.named_modules():
        if name.startswith("encoder"):
            continue
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=g))
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=g))
            module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
