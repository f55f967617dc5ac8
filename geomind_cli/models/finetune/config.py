"""A TerraTorch fine-tuning config (``terratorch fit -c config.yaml``) read into what inference needs.

Only the parts that define the network and its inputs are read: ``model.init_args`` (task class, ``model_factory``,
``model_args``, ``class_names``) and the data module's ``means``/``stds`` and band selection. Training-only settings
(loss, optimizer, augmentations, paths) are ignored. Anything that would change the network but is not supported is
a :class:`ConfigError` that names the setting, never a silently different model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from geomind_cli.errors import ConfigError, ModalityError

TASKS = {  # TerraTorch task class -> what the network predicts
    "SemanticSegmentationTask": "segmentation",
    "PixelwiseRegressionTask": "regression",
    "ClassificationTask": "classification",
}
SIZES = ("tiny", "small", "base", "large")
# Backbone options (after the ``backbone_`` prefix) that our TerraMind builders take as they are.
_BACKBONE_PASSTHROUGH = ("merge_method", "img_size", "tim_temps", "tim_top_p", "tim_top_k", "tim_decoding_steps")
# Backbone options that only matter for training or loading pre-trained weights (the checkpoint holds the weights).
_BACKBONE_IGNORED = ("pretrained", "ckpt_path", "tim_chained_generations")


@dataclass(frozen=True)
class NeckSpec:
    """One entry of ``model_args.necks``: a neck class name and its options."""

    name: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InputSpec:
    """One input modality: canonical name, the bands the model was trained on (in order), their statistics."""

    modality: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class FinetuneConfig:
    """The network of a TerraTorch fine-tune and how to feed it."""

    task: str  # segmentation, regression or classification
    size: str  # tiny, small, base, large
    tim: bool
    inputs: tuple[InputSpec, ...]
    tim_modalities: tuple[str, ...] = ()
    backbone_options: dict = field(default_factory=dict)  # merge_method, img_size, tim_* ...
    band_subset: bool = False  # backbone_bands: patch embeddings built for a subset of the pre-training bands
    necks: tuple[NeckSpec, ...] = ()
    decoder: str = "FCNDecoder"
    decoder_options: dict = field(default_factory=dict)
    head_options: dict = field(default_factory=dict)
    num_classes: int | None = None
    num_outputs: int | None = None
    class_names: tuple[str, ...] | None = None
    rescale: bool = True

    @property
    def backbone(self) -> str:
        return f"terramind_v1_{self.size}{'_tim' if self.tim else ''}"

    @property
    def modalities(self) -> list[str]:
        return [spec.modality for spec in self.inputs]

    def with_tim(self, tim: list[str] | None) -> FinetuneConfig:
        """Apply ``--tim``: set the TiM modalities of a TiM backbone that does not list them, or check them."""
        if not tim:
            return self
        from geomind_cli.facts.modalities import get_modality

        names = tuple(get_modality(t).name for t in tim)
        if not self.tim:
            raise ConfigError(f"--tim {' '.join(names)} asks for Thinking-in-Modalities but the checkpoint was "
                              f"fine-tuned without it (backbone {self.backbone}); drop --tim")
        if self.tim_modalities and set(names) != set(self.tim_modalities):
            raise ConfigError(f"--tim {' '.join(names)} differs from the TiM modalities the checkpoint was fine-tuned "
                              f"with ({' '.join(self.tim_modalities)}); drop --tim or give those")
        return replace(self, tim_modalities=self.tim_modalities or names)


def _get(mapping, *path, default=None):
    for key in path:
        if not isinstance(mapping, dict) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping


def _split_prefix(args: dict, prefix: str) -> dict:
    return {k[len(prefix):]: args.pop(k) for k in list(args) if k.startswith(prefix)}


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file; give the YAML used for `terratorch fit`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config {path} is not valid YAML{where}; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} is not a TerraTorch config (no `model:` section)")
    return data


def parse_config(path: str | Path) -> FinetuneConfig:
    """Read a TerraTorch YAML config; raises ConfigError naming the first unsupported setting."""
    return config_from_dict(load_yaml(path), source=str(path))


def config_from_dict(data: dict, *, source: str = "config", advice: str | None = None) -> FinetuneConfig:
    """``advice``: what to tell the user when statistics are missing (default: add them to the config)."""
    model = data.get("model")
    init = _get(model, "init_args")
    if not isinstance(init, dict) or not isinstance(init.get("model_args"), dict):
        raise ConfigError(f"{source} has no model.init_args.model_args; give the config used for `terratorch fit`")
    task_class = str(model.get("class_path", "SemanticSegmentationTask")).rsplit(".", 1)[-1]
    if task_class not in TASKS:
        raise ConfigError(f"{source}: task {task_class} is not supported; geomind runs "
                          f"{', '.join(TASKS)}")
    factory = str(init.get("model_factory", "EncoderDecoderFactory")).rsplit(".", 1)[-1]
    if factory != "EncoderDecoderFactory":
        raise ConfigError(f"{source}: model_factory {factory} is not supported; only EncoderDecoderFactory is")
    if init.get("peft_config") or _get(init, "model_args", "peft_config"):
        raise ConfigError(f"{source}: PEFT (peft_config) checkpoints are not supported; merge the adapters first")
    args = dict(init["model_args"])
    for part in ("backbone", "decoder", "head"):  # explicit {part}_kwargs dicts mean the same as prefixed keys
        nested = args.pop(f"{part}_kwargs", None) or {}
        if not isinstance(nested, dict):
            raise ConfigError(f"{source}: model_args.{part}_kwargs must be a mapping")
        args.update({f"{part}_{k}": v for k, v in nested.items()})
    size, tim = _backbone(args.pop("backbone", None), source)
    backbone = _split_prefix(args, "backbone_")
    modalities = backbone.pop("modalities", None)
    if not modalities:
        raise ConfigError(f"{source}: model_args.backbone_modalities is missing; list the input modalities")
    tim_modalities = backbone.pop("tim_modalities", None)
    bands = backbone.pop("bands", None)
    for key in _BACKBONE_IGNORED:
        backbone.pop(key, None)
    unsupported = sorted(set(backbone) - set(_BACKBONE_PASSTHROUGH))
    if unsupported:
        raise ConfigError(f"{source}: backbone option(s) {', '.join('backbone_' + k for k in unsupported)} are not "
                          "supported by geomind segment")
    if tim_modalities and not tim:
        raise ConfigError(f"{source}: backbone_tim_modalities is set but the backbone {args.get('backbone', '')} "
                          "has no TiM; use a *_tim backbone")
    if bands and tim:
        raise ConfigError(f"{source}: backbone_bands cannot be used with a TiM backbone (TerraTorch refuses it too)")
    inputs = _inputs(modalities, bands, data, source, advice)
    necks = tuple(_neck(n, source) for n in (args.pop("necks", None) or []))
    decoder = args.pop("decoder", "FCNDecoder")
    if not isinstance(decoder, str):
        raise ConfigError(f"{source}: model_args.decoder must be a decoder name")
    decoder_options = _split_prefix(args, "decoder_")
    head_options = _split_prefix(args, "head_")
    num_classes = args.pop("num_classes", None)
    num_outputs = args.pop("num_outputs", None)
    rescale = bool(args.pop("rescale", True))
    if args.pop("image_size_out", None) is not None:
        raise ConfigError(f"{source}: model_args.image_size_out is not supported; geomind predicts every tile pixel")
    if args:
        raise ConfigError(f"{source}: model_args {', '.join(sorted(args))} are not supported by geomind")
    task = TASKS[task_class]
    if task in ("segmentation", "classification") and not num_classes:
        raise ConfigError(f"{source}: model_args.num_classes is missing for a {task} task")
    class_names = init.get("class_names")
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) != num_classes:
            raise ConfigError(f"{source}: class_names has {len(class_names)} names for num_classes={num_classes}")
    if task == "regression" and num_classes:
        raise ConfigError(f"{source}: a PixelwiseRegressionTask takes num_outputs, not num_classes")
    return FinetuneConfig(
        task=task, size=size, tim=tim, inputs=inputs,
        tim_modalities=tuple(_canonical(m, source) for m in tim_modalities or ()),
        backbone_options=backbone, band_subset=bands is not None, necks=necks, decoder=decoder,
        decoder_options=decoder_options, head_options=head_options, num_classes=num_classes,
        num_outputs=num_outputs, class_names=class_names, rescale=rescale,
    )


def _backbone(name, source: str) -> tuple[str, bool]:
    if not isinstance(name, str):
        raise ConfigError(f"{source}: model_args.backbone is missing; geomind runs terramind_v1_* backbones")
    stem = name.removeprefix("terratorch_")
    tim = stem.endswith("_tim")
    stem = stem.removesuffix("_tim")
    size = stem.removeprefix("terramind_v1_")
    if not stem.startswith("terramind_v1_") or size not in SIZES:
        raise ConfigError(f"{source}: backbone {name} is not supported; use terramind_v1_{{{','.join(SIZES)}}} "
                          "with or without _tim")
    return size, tim


def _canonical(name, source: str) -> str:
    from geomind_cli.facts.modalities import get_modality

    if not isinstance(name, str):
        raise ConfigError(f"{source}: modality {name!r} is not a name; new modalities are not supported")
    try:
        return get_modality(name).name
    except ModalityError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _per_modality(value, modality: str, count: int):
    """Statistics or bands given per modality (dict) or, for a single-modality data module, as one list."""
    if isinstance(value, dict):
        for key, item in value.items():
            try:
                if _canonical(key, "") == modality:
                    return item
            except ConfigError:
                continue
        return None
    return value if count == 1 else None


def _inputs(modalities, bands, data: dict, source: str, advice: str | None) -> tuple[InputSpec, ...]:
    from geomind_cli.facts.modalities import MODALITIES

    names = [_canonical(m, source) for m in modalities]
    dm = _get(data, "data", "init_args", default={}) or {}
    if dm.get("constant_scale", 1.0) not in (1, 1.0, None):
        raise ConfigError(f"{source}: data.init_args.constant_scale is not supported; geomind standardizes raw values")
    specs = []
    for name in names:
        modality = MODALITIES[name]
        if modality.raw_key is None:
            raise ConfigError(f"{source}: {name} as a backbone input is not supported by geomind segment")
        chosen = (_per_modality(bands, name, len(names)) if bands else None) or \
            _per_modality(dm.get("output_bands"), name, len(names)) or list(modality.bands)
        chosen = tuple(str(b) for b in chosen)
        unknown = [b for b in chosen if b not in modality.bands]
        if unknown:
            raise ConfigError(f"{source}: band(s) {', '.join(unknown)} of {name} are unknown; use "
                              f"{', '.join(modality.bands)}")
        mean = _per_modality(dm.get("means"), name, len(names))
        std = _per_modality(dm.get("stds"), name, len(names))
        if mean is None or std is None:
            raise ConfigError(f"{source}: data.init_args.means/stds give no statistics for {name}; "
                              f"{advice or 'add the values the model was trained with'}")
        if len(mean) != len(chosen) or len(std) != len(chosen):
            raise ConfigError(f"{source}: means/stds of {name} have {len(mean)}/{len(std)} values for "
                              f"{len(chosen)} bands; give one per band")
        specs.append(InputSpec(name, chosen, tuple(float(v) for v in mean), tuple(float(v) for v in std)))
    return tuple(specs)


def _neck(entry, source: str) -> NeckSpec:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"{source}: each model_args.necks entry needs a name")
    return NeckSpec(str(entry["name"]), {k: v for k, v in entry.items() if k != "name"})
