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
from geomind_cli.facts.layouts import BandLayout
from geomind_cli.models.finetune.peft import LoraSettings, lora_settings

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
    """One model input: its name, the bands the model was trained on (in order), their statistics.

    ``modality``: a pre-trained modality's canonical name (``S2L2A``; also for names that reuse its patch embedding
    by prefix, such as ``S2L1C_L8``), or the name of a new modality. ``new``: a modality TerraMind was not
    pre-trained on (``{NAME: channels}``, or ``image`` for ``backbone_modalities: []``), with a fresh patch
    embedding keyed by its name.
    """

    modality: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    new: bool = False

    @property
    def layout(self) -> BandLayout:
        """The bands the input file must hold, for the engine to find."""
        return BandLayout(self.modality, self.bands, None if self.new else self.modality)

    @property
    def backbone_entry(self) -> str | dict[str, int]:
        """This input as an entry of the backbone's ``modalities`` list."""
        return {self.modality: len(self.bands)} if self.new else self.modality


@dataclass(frozen=True)
class FinetuneConfig:
    """The network of a TerraTorch fine-tune and how to feed it."""

    task: str  # segmentation, regression or classification
    size: str  # tiny, small, base, large
    tim: bool
    inputs: tuple[InputSpec, ...]
    tim_modalities: tuple[str, ...] = ()
    backbone_options: dict = field(default_factory=dict)  # merge_method, img_size, tim_* ...
    necks: tuple[NeckSpec, ...] = ()
    decoder: str = "FCNDecoder"
    decoder_options: dict = field(default_factory=dict)
    head_options: dict = field(default_factory=dict)
    num_classes: int | None = None
    num_outputs: int | None = None
    class_names: tuple[str, ...] | None = None
    rescale: bool = True
    peft: LoraSettings | None = None  # a LoRA fine-tune: adapters merged into the backbone at load time

    @property
    def backbone(self) -> str:
        return f"terramind_v1_{self.size}{'_tim' if self.tim else ''}"

    @property
    def modalities(self) -> list[str]:
        return [spec.modality for spec in self.inputs]

    @property
    def layouts(self) -> dict[str, BandLayout]:
        """The bands each input file must hold, by input name."""
        return {spec.modality: spec.layout for spec in self.inputs}

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
    args = dict(init["model_args"])
    peft_config = args.pop("peft_config", None)  # the factory wraps the backbone with it (init.peft_config does not)
    peft = lora_settings(peft_config, source=source) if peft_config is not None else None
    for part in ("backbone", "decoder", "head"):  # explicit {part}_kwargs dicts mean the same as prefixed keys
        nested = args.pop(f"{part}_kwargs", None) or {}
        if not isinstance(nested, dict):
            raise ConfigError(f"{source}: model_args.{part}_kwargs must be a mapping")
        args.update({f"{part}_{k}": v for k, v in nested.items()})
    size, tim = _backbone(args.pop("backbone", None), source)
    backbone = _split_prefix(args, "backbone_")
    modalities = backbone.pop("modalities", None)
    in_chans = backbone.pop("in_chans", 3)
    if not modalities:  # TerraTorch: no modalities means one new modality "image" of in_chans channels
        modalities = [{"image": in_chans}]
    if isinstance(modalities, (str, dict)):
        modalities = [modalities]
    patch_size = backbone.pop("patch_size", None)
    if patch_size not in (None, 16, [16, 16], (16, 16)):
        raise ConfigError(f"{source}: backbone_patch_size {patch_size} is not supported; TerraMind's patch "
                          "embeddings take 16 x 16 px patches")
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
    if bands is not None and not isinstance(bands, dict):
        raise ConfigError(f"{source}: backbone_bands must map each modality to its band names")
    new = [str(name) for m in modalities if isinstance(m, dict) for name in m]
    if tim and new:
        raise ConfigError(f"{source}: new modalities ({', '.join(new)}) cannot be used with a TiM backbone: TiM "
                          "generates from pre-trained modalities only (TerraTorch refuses them too)")
    inputs = _inputs(modalities, bands or {}, data, source, advice)
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
        backbone_options=backbone, necks=necks, decoder=decoder,
        decoder_options=decoder_options, head_options=head_options, num_classes=num_classes,
        num_outputs=num_outputs, class_names=class_names, rescale=rescale, peft=peft,
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


def _per_input(value, names: tuple[str, ...], canonical: str | None, count: int):
    """Statistics or bands of one input, given per modality (a dict keyed by the configured name, or by any alias
    of the same pre-trained modality) or, for a single-input data module, as one list."""
    if isinstance(value, dict):
        for name in names:
            if name in value:
                return value[name]
        if canonical is not None:
            for key, item in value.items():
                try:
                    if _canonical(key, "") == canonical:
                        return item
                except ConfigError:
                    continue
        return None
    return value if count == 1 and value is not None else None


def _entries(modalities, source: str) -> list[tuple[str, str, int | None]]:
    """(configured name, input name, channels of a new modality or None) per backbone_modalities entry."""
    entries = []
    for entry in modalities:
        if isinstance(entry, dict):
            for name, channels in entry.items():
                if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                    raise ConfigError(f"{source}: new modality {name} needs its channel count ({{{name}: N}}), got "
                                      f"{channels!r}")
                entries.append((str(name), str(name), channels))
        elif isinstance(entry, str):
            entries.append((entry, _canonical(entry, source), None))
        else:
            raise ConfigError(f"{source}: backbone_modalities entry {entry!r} is neither a modality name nor "
                              "{NAME: channels}")
    seen: dict[str, str] = {}
    for configured, name, _ in entries:
        if name in seen:
            raise ConfigError(f"{source}: backbone_modalities {seen[name]} and {configured} both use the {name} "
                              "patch embedding; give each input once")
        seen[name] = configured
    return entries


def _inputs(modalities, bands: dict, data: dict, source: str, advice: str | None) -> tuple[InputSpec, ...]:
    from geomind_cli.facts.modalities import MODALITIES

    entries = _entries(modalities, source)
    count = len(entries)
    dm = _get(data, "data", "init_args", default={}) or {}
    if dm.get("constant_scale", 1.0) not in (1, 1.0, None):
        raise ConfigError(f"{source}: data.init_args.constant_scale is not supported; geomind standardizes raw values")
    unknown = [k for k in bands if k not in {c for c, _, _ in entries} | {n for _, n, _ in entries}]
    if unknown:  # TerraTorch looks band lists up by the exact backbone_modalities names
        raise ConfigError(f"{source}: backbone_bands names {', '.join(map(str, unknown))}, which is not in "
                          "backbone_modalities; key it by the modality's name there")
    specs = []
    for configured, name, channels in entries:
        names = (configured, name)
        canonical = None if channels is not None else name
        if channels is None and MODALITIES[name].raw_key is None:
            raise ConfigError(f"{source}: {name} as a backbone input is not supported by geomind (TerraMind tokenizes "
                              f"it first); give it as a new modality {{{name}: 1}} to train a patch embedding")
        chosen = _per_input(bands, names, None, count) if bands else None
        chosen = chosen or _per_input(dm.get("output_bands"), names, canonical, count)
        if channels is not None:
            chosen = chosen or ([name] if channels == 1 else [f"{name}_{i + 1}" for i in range(channels)])
            if len(chosen) != channels:
                raise ConfigError(f"{source}: new modality {name} has {channels} channels but {len(chosen)} band "
                                  "names; give one name per channel")
        chosen = tuple(str(b) for b in (chosen or MODALITIES[name].bands))
        mean = _per_input(dm.get("means"), names, canonical, count)
        std = _per_input(dm.get("stds"), names, canonical, count)
        if mean is None or std is None:
            raise ConfigError(f"{source}: data.init_args.means/stds give no statistics for {configured}; "
                              f"{advice or 'add the values the model was trained with'}")
        if len(mean) != len(chosen) or len(std) != len(chosen):
            raise ConfigError(f"{source}: means/stds of {configured} have {len(mean)}/{len(std)} values for "
                              f"{len(chosen)} bands; give one per band")
        specs.append(InputSpec(name, chosen, tuple(float(v) for v in mean), tuple(float(v) for v in std),
                               new=channels is not None))
    return tuple(specs)


def _neck(entry, source: str) -> NeckSpec:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"{source}: each model_args.necks entry needs a name")
    return NeckSpec(str(entry["name"]), {k: v for k, v in entry.items() if k != "name"})
