"""A fine-tune's settings read from its Lightning checkpoint, for runs without ``--config``.

Lightning writes the task's recorded init arguments to ``hyper_parameters``. TerraTorch tasks record nothing
themselves: torchgeo's BaseTask calls ``save_hyperparameters`` (ignoring only ``weights``), which gathers the
arguments of the whole ``__init__`` chain, so the record holds ``model_args``, ``model_factory``, ``class_names``,
... and ``task`` (``segmentation``, ``regression``, ``classification``) from TerraTorchTask. A model built by
``terratorch fit`` (a LightningCLI) records the config's ``model`` section instead: its init_args, plus
``_class_path`` (``terratorch.tasks.SemanticSegmentationTask``) and ``_instantiator``.

The data module's means/stds live in ``datamodule_hyper_parameters`` only when the data module recorded its own
arguments; TerraTorch's data modules do not. Without them the inputs cannot be standardized as in training, so the
run asks for ``--config`` rather than guessing statistics (which would silently give a different model).
"""

from __future__ import annotations

from collections.abc import Mapping

from geomind_cli.errors import ConfigError
from geomind_cli.models.finetune.config import TASKS, FinetuneConfig, config_from_dict

HPARAMS = "hyper_parameters"
DATA_HPARAMS = "datamodule_hyper_parameters"
# TerraTorchTask's ``task`` argument -> the task class, for records made outside LightningCLI.
_TASK_CLASSES = {kind: name for name, kind in TASKS.items()}
# Task arguments that define the network or name its classes (what a YAML config's model.init_args gives us).
_MODEL_KEYS = ("model_factory", "model_args", "class_names", "peft_config")


def config_dict_from_checkpoint(checkpoint: Mapping, *, source: str) -> dict:
    """The checkpoint's records rearranged as a TerraTorch YAML config: {"model": {...}, "data": {...}}."""
    hparams = checkpoint.get(HPARAMS)
    if not isinstance(hparams, Mapping) or not isinstance(hparams.get("model_args"), Mapping):
        raise ConfigError(f"{source} records no model_args in its hyper_parameters, so the network is unknown; "
                          "pass --config with the YAML used for `terratorch fit`")
    if hparams.get("model") is not None and not hparams.get("model_factory"):
        raise ConfigError(f"{source} was trained with a custom model object, which geomind cannot rebuild; "
                          "pass --config describing it with model_args")
    init = {key: hparams[key] for key in _MODEL_KEYS if hparams.get(key) is not None}
    data = checkpoint.get(DATA_HPARAMS)
    data = dict(data) if isinstance(data, Mapping) else {}
    return {"model": {"class_path": _task_class(hparams, source), "init_args": init}, "data": {"init_args": data}}


def _task_class(hparams: Mapping, source: str) -> str:
    if isinstance(hparams.get("_class_path"), str):
        return hparams["_class_path"]
    kind = hparams.get("task")
    if kind in _TASK_CLASSES:
        return _TASK_CLASSES[kind]
    raise ConfigError(f"{source} does not record which TerraTorch task it was trained with (task {kind!r}); "
                      "pass --config with the YAML used for `terratorch fit`")


def config_from_checkpoint(checkpoint: Mapping, *, source: str) -> FinetuneConfig:
    """The FinetuneConfig of a checkpoint's ``hyper_parameters`` (and data module records, for the statistics)."""
    data = config_dict_from_checkpoint(checkpoint, source=source)
    stats = data["data"]["init_args"]
    if stats.get("means") is None or stats.get("stds") is None:
        raise ConfigError(f"{source} records the network but not the means/stds its inputs were standardized with "
                          "in training; pass --config with the YAML used for `terratorch fit`")
    return config_from_dict(data, source=source,
                            advice="pass --config with the YAML used for `terratorch fit`, which has them")
