"""Shared by the fine-tune tests: configs in TerraTorch's layout and Lightning-style checkpoints on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
import yaml

from cli_in_process import run_geomind

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


def _init_defaults(task_class: str) -> dict:
    """The task's ``__init__`` arguments and their defaults, read from terratorch's source (importing
    terratorch.tasks needs lightning and torchgeo, which the test environment does not have)."""
    import ast
    from importlib.metadata import distribution

    files = {"SemanticSegmentationTask": "segmentation_tasks.py", "ClassificationTask": "classification_tasks.py",
             "PixelwiseRegressionTask": "regression_tasks.py"}
    source = Path(distribution("terratorch").locate_file(f"terratorch/tasks/{files[task_class]}")).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == task_class:
            init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
            names = [a.arg for a in init.args.args[1:]]
            defaults = [ast.literal_eval(d) for d in init.args.defaults]
            return dict(zip(names[len(names) - len(defaults):], defaults))
    raise LookupError(task_class)


def recorded_hparams(config: dict, *, cli: bool, data: bool) -> dict:
    """What Lightning stores for a TerraTorch task built from ``config`` (our YAML layout): the checkpoint entries
    ``hyper_parameters`` (and ``datamodule_hyper_parameters`` if ``data``).

    ``cli``: built by ``terratorch fit`` (LightningCLI): the config's model section as dumped by jsonargparse (every
    init argument, defaults included) plus ``_class_path`` and ``_instantiator``. Otherwise built in Python: torchgeo's
    BaseTask ``save_hyperparameters()`` gathers the arguments of every ``__init__`` up the chain, so TerraTorchTask's
    ``task`` is recorded next to the task's own arguments.
    """
    class_path = config["model"]["class_path"]
    task_class = class_path.rsplit(".", 1)[-1]
    args = {**_init_defaults(task_class), **config["model"]["init_args"]}
    kinds = {name: kind for kind, name in TASK_CLASSES.items()}
    if cli:
        hparams = {"_class_path": class_path, **args, "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    else:
        hparams = {"task": kinds[task_class], "tiled_inference_on_testing": False,
                   "tiled_inference_on_validation": False, "path_to_record_metrics": None, **args}
    out = {"hparams_name": "kwargs", "hyper_parameters": hparams}
    if data:
        section = config["data"]
        out["datamodule_hparams_name"] = "kwargs"
        out["datamodule_hyper_parameters"] = ({"_class_path": section["class_path"], **section["init_args"]}
                                              if cli else dict(section["init_args"]))
    return out


def run_main(capsys, monkeypatch, *args) -> tuple[int, str]:
    """``geomind ARGS`` in this process: (exit code, stderr)."""
    code, _, err = run_geomind(monkeypatch, capsys, *args)
    return code, err


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), {"crs": src.crs, "transform": src.transform, "shape": (src.height, src.width),
                            "dtype": src.dtypes[0], "nodata": src.nodata, "tags": src.tags(),
                            "colormap": src.colormap(1) if src.dtypes[0] == "uint8" else None,
                            "descriptions": src.descriptions}


def write_like(path: Path, data: np.ndarray, like: Path, descriptions=None) -> Path:
    """A GeoTIFF of ``data`` [C, H, W] on the grid of ``like`` (its top-left H x W window), no nodata."""
    with rasterio.open(like) as src:
        profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=src.crs, transform=src.transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, text)
    return path
