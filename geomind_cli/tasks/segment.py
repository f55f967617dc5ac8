"""Whole-scene prediction with a TerraTorch fine-tune of TerraMind: segmentation maps and pixel-wise regression.

The network is rebuilt from the fine-tuning config and its Lightning checkpoint (geomind_cli.models.finetune), with
no TerraTorch at run time. Inputs are standardized with the config's own means/stds (what the model was trained
on), for the bands it was trained on. Class probabilities (softmax) go to the engine, which blends them across tile
overlaps before the argmax, so the map has no tile seams. TiM backbones sample their intermediate tokens from the
world noise field (geomind_cli.noise): overlapping tiles draw the same token at the same place, and a run is
reproducible with ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geomind_cli.engine import OutputSpec, TileBatch
from geomind_cli.errors import InputError, ModalityError
from geomind_cli.models.finetune.config import FinetuneConfig
from geomind_cli.noise import tile_token_keys
from geomind_cli.tasks.base import Task, cached_model, to_numpy, to_tensors
from geomind_cli.tasks.options import InputOptions
from geomind_cli.tasks.run import check_outputs
from geomind_cli.tasks.runtime import Runtime

# Colours for class maps: a qualitative palette (class 0 first), repeated for many classes.
PALETTE = (
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
    (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
    (219, 219, 141),
)


@dataclass(frozen=True)
class FinetuneHandle:
    """A fine-tuned model named by its files, built at most once per process (as tasks.base.ModelHandle).

    Picklable, so a task holding it can travel to Dask workers; each worker loads the checkpoint on first use.
    ``config`` None: the settings are read from the checkpoint's hyper_parameters.
    """

    config: str | None
    checkpoint: str
    runtime: Runtime
    tim: tuple[str, ...] = ()

    def key(self) -> str:
        return repr((self.config, self.checkpoint, self.runtime, self.tim))

    def settings(self) -> FinetuneConfig:
        """Read once per process: a batch builds one task per scene, and without a config this reads the checkpoint."""
        cfg = _SETTINGS.get(self.key())
        if cfg is None:
            from geomind_cli.models.finetune import finetune_settings

            cfg = _SETTINGS[self.key()] = finetune_settings(self.config, self.checkpoint, tim=list(self.tim))
        return cfg

    def __call__(self) -> torch.nn.Module:
        def build_now():
            from geomind_cli.models.finetune import load_finetuned

            model, _ = load_finetuned(self.config, self.checkpoint, tim=list(self.tim))
            return self.runtime.prepare(model)  # compiles the backbone's blocks when asked, like every model

        return cached_model(f"finetune:{self.key()}", build_now)


_SETTINGS: dict[str, FinetuneConfig] = {}


def finetune_handle(config: str | Path | None, checkpoint: str | Path, runtime: Runtime, tim=()) -> FinetuneHandle:
    """Handle with absolute paths, so that workers started elsewhere (another folder) find the same files."""
    return FinetuneHandle(None if config is None else str(Path(config).absolute()), str(Path(checkpoint).absolute()),
                          runtime, tuple(tim))


@dataclass(frozen=True)
class SegmentOptions:
    tim: tuple[str, ...] = ()
    probabilities: bool = False
    confidence: bool = False
    seed: int = 0


def check_inputs(cfg: FinetuneConfig, available: list[str]) -> None:
    """Every modality the model was fine-tuned on must be in the scene."""
    missing = [m for m in cfg.modalities if m not in available]
    if missing:
        raise ModalityError(f"the model needs {', '.join(cfg.modalities)} but the scene has no {', '.join(missing)}; "
                            f"add it as FILE:{missing[0]}")


def finetune_scene(sources: list[str], from_modalities: list[str] | None, config: str | Path | None,
                   checkpoint: str | Path, runtime: Runtime, tim=(), *, inputs: InputOptions = InputOptions()):
    """Open a scene for a fine-tune: each input file must hold the bands the model was trained on (see
    :mod:`geomind_cli.tasks.finetune_inputs`); ``inputs`` says how they are read and which area to keep."""
    from geomind_cli.tasks.finetune_inputs import open_finetune_inputs

    cfg = finetune_handle(config, checkpoint, runtime, tim).settings()
    return open_finetune_inputs(sources, cfg.layouts, from_modalities, read=inputs.read(), area=inputs.area())


def model_inputs(cfg: FinetuneConfig, arrays: dict[str, np.ndarray], runtime: Runtime) -> dict[str, torch.Tensor]:
    """Scene tiles (physical units) -> the model's bands, standardized with the config's statistics:
    {modality: [B, C, T, T]} on the runtime's device. A scene opened with the config's layouts holds exactly the
    model's bands; one holding all the bands of a pre-trained modality gets the model's picked out."""
    from geomind_cli.facts.modalities import MODALITIES

    picked = {}
    for spec in cfg.inputs:
        array = arrays[spec.modality]
        if not spec.new and array.shape[1] != len(spec.bands):
            bands = MODALITIES[spec.modality].bands
            if array.shape[1] != len(bands) or not set(spec.bands) <= set(bands):
                raise InputError(f"{spec.modality} has {array.shape[1]} bands; the model takes "
                                 f"{', '.join(spec.bands)}")
            array = array[:, [bands.index(b) for b in spec.bands]]
        picked[spec.modality] = array
    tensors = to_tensors(picked, runtime)
    out = {}
    for spec in cfg.inputs:
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=runtime.device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32, device=runtime.device).view(1, -1, 1, 1)
        out[spec.modality] = (tensors[spec.modality].float() - mean) / std
    return out


def run_finetuned(handle: FinetuneHandle, cfg: FinetuneConfig, batch: TileBatch, seed: int,
                  runtime: Runtime) -> torch.Tensor:
    """The fine-tuned network on a batch of scene tiles, float32 outputs: [B, K, T, T] per pixel, [B, K] per tile."""
    model = handle()
    x = model_inputs(cfg, batch.arrays, runtime)
    size = next(iter(x.values())).shape[-1]
    kwargs = tim_kwargs(cfg, model, batch, size, seed, runtime.device)
    with torch.inference_mode(), runtime.autocast():
        return model(x, **kwargs).float()


def tim_kwargs(cfg: FinetuneConfig, model: torch.nn.Module, batch: TileBatch, size: int, seed: int,
               device: torch.device) -> dict:
    """World token keys for TiM token sampling (Gumbel-max; none when the backbone has no TiM or samples greedily)."""
    names = list(getattr(model.encoder, "tim_modalities", []))
    temps = cfg.backbone_options.get("tim_temps", 1.0)
    if not names or all(float(t) == 0.0 for t in (temps if isinstance(temps, (list, tuple)) else [temps])):
        return {}
    origins = list(zip(batch.rows.tolist(), batch.cols.tolist()))
    return {"token_keys": {
        name: torch.from_numpy(tile_token_keys(seed, f"tim/{name}", origins, size)).to(device) for name in names
    }}


def class_palette(count: int) -> dict[int, tuple[int, int, int]]:
    return {k: PALETTE[k % len(PALETTE)] for k in range(count)}


def class_dtype(count: int) -> str:
    return "uint8" if count <= 255 else "uint16"  # the dtype maximum is kept for nodata


def class_names(cfg: FinetuneConfig) -> list[str]:
    return list(cfg.class_names or [f"class_{k}" for k in range(cfg.num_classes)])


def output_specs(cfg: FinetuneConfig, out_path: Path, options: SegmentOptions) -> list[OutputSpec]:
    if cfg.task == "regression":
        if options.probabilities or options.confidence:
            raise InputError("--probabilities/--confidence apply to class maps; this checkpoint is a pixel-wise "
                             "regression")
        count = cfg.num_outputs or 1
        bands = ["prediction"] if count == 1 else [f"prediction_{i}" for i in range(count)]
        return [OutputSpec(name="prediction", path=out_path, kind="continuous", bands=bands, dtype="float32",
                           nodata=math.nan)]
    names = class_names(cfg)
    return [OutputSpec(name="classes", path=out_path, kind="classes", bands=["class"], dtype=class_dtype(len(names)),
                       class_names=names, colormap=class_palette(len(names)), probabilities=options.probabilities,
                       confidence=options.confidence)]


def segment_task(inputs: list[str], config: str | Path | None, checkpoint: str | Path, options: SegmentOptions,
                 runtime: Runtime, out_path: Path, *, overwrite: bool = False) -> Task:
    """Tile function: scene tiles -> class probabilities [B, K, T, T] (segmentation) or values [B, C, T, T].

    ``config`` None: settings from the checkpoint. ``overwrite=True`` only creates the output folders: batch and
    resume runs pass it and leave the check of each output to :func:`geomind_cli.tasks.run.pending_outputs`.
    """
    handle = finetune_handle(config, checkpoint, runtime, options.tim)
    cfg = handle.settings()
    if cfg.task == "classification":
        raise InputError("this checkpoint is a ClassificationTask (one label per image); use `geomind classify`")
    check_inputs(cfg, inputs)
    outputs = output_specs(cfg, Path(out_path), options)
    check_outputs(outputs, overwrite=overwrite)
    handle()  # build now: a bad checkpoint fails before any tile is read
    name = outputs[0].name

    def tile_fn(batch: TileBatch) -> dict[str, np.ndarray]:
        y = run_finetuned(handle, cfg, batch, options.seed, runtime)
        return {name: to_numpy(torch.softmax(y, dim=1) if cfg.task == "segmentation" else y)}

    return Task(outputs=outputs, tile_fn=tile_fn,
                description=f"{cfg.task} with {cfg.backbone} on {', '.join(cfg.modalities)}",
                made_by={"command": "segment", "inputs": list(inputs), "config": config, "checkpoint": checkpoint,
                         "options": options, "runtime": runtime})
