"""TerraMind's encoder as a backbone: per-layer token features for any mix of input modalities (terramind-spec 4).

Inputs are standardized with the pre-training statistics by the caller (``modalities.statistics``). LULC and NDVI are
always given as images and tokenized by their tokenizers first, as in the reference. Differences from the reference:
the caller's input dict is never modified, ``missing_mod_token`` (``merge_method="concat"``) is initialised
(normal, std 0.02) instead of left uninitialised, and tokenized inputs may have non-square grids.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from geomind_cli.errors import ConfigError, InputError, ModalityError
from geomind_cli.models.embeddings import PATCH_SIZE, ImageEncoderEmbedding, encoder_embedding
from geomind_cli.models.layers import Block, LayerNorm, TransformerConfig
from geomind_cli.facts.modalities import get_modality, input_key

MERGE_METHODS = ("mean", "max", "concat", "dict", None)


@dataclass
class _Input:
    """One input as the encoder sees it: user name, internal key and the tensor (image, or token ids [B,h,w])."""

    name: str
    key: str
    value: torch.Tensor

    @property
    def grid(self) -> tuple[int, int]:
        if self.value.ndim == 3 and not self.value.dtype.is_floating_point:
            return self.value.shape[1], self.value.shape[2]
        return self.value.shape[-2] // PATCH_SIZE, self.value.shape[-1] // PATCH_SIZE


def build_tokenizers(keys: Sequence[str], *, pretrained: bool) -> nn.ModuleDict:
    """Tokenizers for the token keys among ``keys``, keyed by that key (state keys ``tokenizer.<key>.*``)."""
    wanted = [k for k in dict.fromkeys(keys) if k.startswith("tok_")]
    if not wanted:
        return nn.ModuleDict()
    from geomind_cli.models.tokenizers import build_tokenizer

    return nn.ModuleDict({k: build_tokenizer(get_modality(k).tokenizer.name, pretrained=pretrained) for k in wanted})


def resolve_modalities(modalities: Sequence[str | Mapping[str, int]] | None, *,
                       new_ok: bool = False) -> dict[str, str]:
    """User names -> encoder keys, in order; raises ConfigError for empty, unknown or duplicated modalities.

    ``new_ok``: ``{name: channels}`` entries define new raw modalities (a fresh patch embedding keyed by ``name``,
    as TerraTorch's backbones take them); see :func:`new_modalities`.
    """
    if not modalities:
        raise ConfigError("no input modalities given; pass modalities=[...], e.g. ['S2L2A', 'S1GRD']")
    if isinstance(modalities, (str, Mapping)):
        modalities = [modalities]
    mapping: dict[str, str] = {}
    for entry in modalities:
        if isinstance(entry, Mapping) and new_ok:
            pairs = [(name, name) for name in entry]
        elif isinstance(entry, str):
            pairs = [(entry, input_key(entry))]
        else:
            raise ConfigError(f"modality {entry!r} is not a name; new modalities ({{name: channels}}) are only "
                              "supported by the backbone (not TiM or generation)")
        for name, key in pairs:
            if key in mapping.values():
                raise ConfigError(f"modality {name!r} duplicates another input ({key})")
            mapping[name] = key
    return mapping


def new_modalities(modalities: Sequence[str | Mapping[str, int]] | None) -> dict[str, int]:
    """The ``{name: channels}`` entries of a modality list (new raw modalities), merged."""
    if isinstance(modalities, Mapping):
        modalities = [modalities]
    out: dict[str, int] = {}
    for entry in modalities or ():
        if isinstance(entry, Mapping):
            for name, channels in entry.items():
                if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                    raise ConfigError(f"new modality {name!r} needs a channel count ({{{name}: channels}}), got "
                                      f"{channels!r}")
                out[str(name)] = channels
    return out


class TerraMindViT(nn.Module):
    """TerraMind encoder. ``forward`` returns one feature tensor (or dict) per encoder layer.

    Only the last layer is layer-normed (``encoder_norm``), as in the reference. State keys: ``encoder_embeddings.*``,
    ``encoder.*``, ``encoder_norm.*``, ``tokenizer.<tok key>.*`` and ``missing_mod_token`` (concat only).
    """

    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        modalities: Sequence[str] | None = None,
        merge_method: str | None = "mean",
        img_size: int = 224,
        extra_keys: Sequence[str] = (),
        pretrained_tokenizers: bool = False,
    ):
        super().__init__()
        if merge_method not in MERGE_METHODS:
            raise ConfigError(f"merge_method {merge_method!r} is unknown; choose mean, max, concat, dict or None")
        self.cfg = cfg
        self.merge_method = merge_method
        self.img_size = img_size
        self.mod_name_mapping = resolve_modalities(modalities, new_ok=True)
        self.modalities = list(self.mod_name_mapping)
        keys = list(dict.fromkeys([*self.mod_name_mapping.values(), *extra_keys]))
        fresh = new_modalities(modalities)  # new raw modalities: a patch embedding keyed by their own name
        self.encoder_embeddings = nn.ModuleDict({
            k: ImageEncoderEmbedding(fresh[k], cfg.dim, image_size=img_size) if k in fresh
            else encoder_embedding(k, cfg.dim, image_size=img_size) for k in keys})
        self.image_modalities = list(keys)  # every v1 modality is an image (coords are not supported)
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.encoder_depth))
        self.encoder_norm = LayerNorm(cfg.dim, cfg.norm_eps)
        if merge_method == "concat":
            self.missing_mod_token = nn.Parameter(torch.empty(cfg.dim).normal_(std=0.02))
        width = cfg.dim * len(self.image_modalities) if merge_method == "concat" else cfg.dim
        self.out_channels = [width] * cfg.encoder_depth
        self.tokenizer = build_tokenizers(list(self.mod_name_mapping.values()), pretrained=pretrained_tokenizers)

    # -- inputs -------------------------------------------------------------------------------------------------
    def _resolve_inputs(self, d: Mapping[str, torch.Tensor] | torch.Tensor) -> list[_Input]:
        """Map the caller's names to keys (exact names first, then aliases); unknown names are ignored with a
        warning as in the reference. The caller's dict is not modified."""
        if isinstance(d, torch.Tensor):
            d = {self.modalities[0]: d}
        by_key = {key: name for name, key in self.mod_name_mapping.items()}
        inputs = []
        for name, value in d.items():
            key = self.mod_name_mapping.get(name)
            if key is None:
                try:
                    key = input_key(name)
                except ModalityError:
                    key = None
                if key not in by_key:
                    warnings.warn(f"unknown input modality {name!r} is ignored", stacklevel=3)
                    continue
            inputs.append(_Input(name, key, value))
        if not inputs:
            raise InputError(f"no usable input; this model takes {', '.join(self.modalities)}")
        return inputs

    @torch.no_grad()
    def _tokenize(self, inputs: list[_Input]) -> list[_Input]:
        """Replace LULC/NDVI images by their token ids [B,h,w] (new list, new objects)."""
        out = []
        for item in inputs:
            value = item.value
            if item.key in self.tokenizer:
                value = self.tokenizer[item.key].encode(value)
            out.append(_Input(item.name, item.key, value))
        return out

    # -- encoder ------------------------------------------------------------------------------------------------
    def _encode(self, inputs: list[_Input]) -> list:
        """Embed, run the encoder blocks, merge. Returns a list over layers."""
        parts = [self.encoder_embeddings[item.key](item.value) for item in inputs]
        x = torch.cat([tokens + emb for tokens, emb in parts], dim=1)
        sizes = [tokens.shape[1] for tokens, _ in parts]
        outs = []
        for block in self.encoder:
            x = block(x)
            outs.append(x)
        outs[-1] = self.encoder_norm(x)
        return [self._merge(layer, sizes, [item.name for item in inputs]) for layer in outs]

    def _merge(self, x: torch.Tensor, sizes: list[int], names: list[str]):
        if self.merge_method is None:
            return x
        chunks = torch.split(x, sizes, dim=1)
        if self.merge_method == "dict":
            return dict(zip(names, chunks))
        if len(set(sizes)) > 1:
            raise InputError(f"merge_method {self.merge_method!r} needs equal token grids for all inputs, got {sizes}")
        stacked = torch.stack(chunks, dim=1)  # [B,M,N,D]
        if self.merge_method == "mean":
            return stacked.mean(dim=1)
        if self.merge_method == "max":
            return stacked.max(dim=1).values
        missing = len(self.image_modalities) - len(chunks)
        if missing > 0:  # concat keeps a fixed width: absent modalities are filled with the learned token
            b, _, n, d = stacked.shape
            filler = self.missing_mod_token.to(stacked.dtype).expand(b, missing, n, d)
            stacked = torch.cat([stacked, filler], dim=1)
        return torch.cat(stacked.unbind(dim=1), dim=-1)

    def forward(self, d: Mapping[str, torch.Tensor] | torch.Tensor) -> list:
        """d: {modality: tensor} (raw images [B,C,H,W] standardized, H and W multiples of 16; LULC as class
        indices [B,H,W] or one-hot [B,10,H,W]; NDVI [B,1,H,W]) or one tensor for the first modality.

        Returns a list with one entry per encoder layer: [B,N,D] for mean/max, [B,N,D*M] for concat (M = number of
        modalities the model was built for), {name: [B,N_mod,D]} for dict, [B,sum N,D] for None.
        """
        return self._encode(self._tokenize(self._resolve_inputs(d)))

