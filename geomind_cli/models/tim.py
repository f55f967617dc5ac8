"""Thinking-in-Modalities (TiM): the backbone first generates extra modalities' tokens, then encodes inputs + those.

The generator is a frozen TerraMind encoder-decoder (``sampler.model.*``) that shares its encoder embeddings with
the backbone, as in the reference (terramind-spec 5). Where we intentionally differ from the reference:

- ``merge_method="dict"`` keeps the TiM modalities in the output (the reference drops them, spec 5.2);
- ``tim_decoding_steps > 1`` works (real multi-step ROAR; the reference crashes);
- ``tim_temps`` / ``tim_decoding_steps`` may be lists, one value per TiM modality;
- randomness comes only from ``generator`` / ``token_uniforms`` / ``token_keys`` (the reference reseeds the global
  RNG);
- tokenizers are built only for tokenized *inputs* (generated TiM tokens never need one);
- ``missing_mod_token`` is initialised; the caller's dict is never modified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from geomind_cli.errors import ConfigError
from geomind_cli.models.backbone import TerraMindViT, _Input
from geomind_cli.models.encdec import TargetSpec, TerraMindEncDec, TokenSampler
from geomind_cli.models.layers import TransformerConfig
from geomind_cli.facts.modalities import input_key, target_key
from geomind_cli.models.sampling import Generators


def per_modality(value, count: int, what: str) -> list:
    """A scalar repeated ``count`` times, or a list of exactly ``count`` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ConfigError(f"{what} has {len(value)} values for {count} modalities; give one value per modality")
        return list(value)
    return [value] * count


def target_specs(keys: Sequence[str], names: Sequence[str], *, temps, top_k, top_p, decoding_steps,
                 option_prefix: str = "") -> list[TargetSpec]:
    """One sampling spec per generated modality; ``temps`` and ``decoding_steps`` may be one value or one per
    modality (errors name the options as ``{option_prefix}temps`` / ``{option_prefix}decoding_steps``)."""
    temps = per_modality(temps, len(keys), f"{option_prefix}temps")
    steps = per_modality(decoding_steps, len(keys), f"{option_prefix}decoding_steps")
    return [TargetSpec(key, name, temperature=float(t), top_k=top_k, top_p=float(top_p), steps=int(s))
            for key, name, t, s in zip(keys, names, temps, steps)]


class TerraMindTiM(TerraMindViT):
    """TerraMind backbone with TiM. Forward as the backbone, plus the keyword-only randomness hooks."""

    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        modalities: Sequence[str] | None = None,
        tim_modalities: Sequence[str] | None = None,
        tim_temps: float | Sequence[float] = 1.0,
        tim_top_p: float = 0.8,
        tim_top_k: int | float = 0,
        tim_decoding_steps: int | Sequence[int] = 1,
        merge_method: str | None = "mean",
        img_size: int = 224,
        pretrained_tokenizers: bool = False,
    ):
        tim_names = list(tim_modalities or ["LULC"])
        tim_keys = [target_key(name) for name in tim_names]
        clash = [n for n, k in zip(tim_names, tim_keys) if n in (modalities or []) and input_key(n) != k]
        if clash:  # e.g. raw S1GRD in, S1GRD tokens generated: both would be named S1GRD (the reference refuses too)
            raise ConfigError(f"{', '.join(clash)} is both a raw input and a TiM modality; drop it from one of them")
        super().__init__(
            cfg, modalities=modalities, merge_method=merge_method, img_size=img_size, extra_keys=tim_keys,
            pretrained_tokenizers=pretrained_tokenizers,
        )
        self.tim_modalities = tim_names
        self.tim_targets = target_specs(tim_keys, tim_names, temps=tim_temps, top_k=tim_top_k, top_p=tim_top_p,
                                        decoding_steps=tim_decoding_steps, option_prefix="tim_")
        model = TerraMindEncDec(
            cfg, encoder_keys=list(self.encoder_embeddings), decoder_keys=list(dict.fromkeys(tim_keys)),
            image_size=img_size, encoder_embeddings=self.encoder_embeddings,
        )
        # The generator is frozen; since it shares the embedding modules, those are frozen too (as the reference).
        self.sampler = TokenSampler(model).requires_grad_(False)

    def forward(
        self,
        d: Mapping[str, torch.Tensor] | torch.Tensor,
        *,
        generator: Generators = None,
        token_uniforms: Mapping[str, torch.Tensor] | None = None,
        token_keys: Mapping[str, torch.Tensor] | None = None,
    ) -> list:
        """As ``TerraMindViT.forward``; the TiM modalities' tokens are generated first and encoded after the inputs.

        generator: a torch.Generator, or one per sample (then a sample's result does not depend on its batch).
        token_uniforms: {TiM modality name: uniforms [B, h*w]} replacing random draws (inverse-CDF sampling).
        token_keys: {TiM modality name: int64 keys [B, h*w]} (Gumbel-max sampling); one of the two per modality.
        Greedy at tim_temps=0, which needs none of them.
        """
        inputs = self._tokenize(self._resolve_inputs(d))
        have = {item.key for item in inputs}
        targets = [t for t in self.tim_targets if t.key not in have]
        if targets:
            grid = inputs[-1].grid
            with torch.no_grad():
                generated = self.sampler.generate(
                    [(item.key, item.value) for item in inputs], targets, grid,
                    generator=generator, token_uniforms=token_uniforms, token_keys=token_keys,
                )
            inputs = inputs + [_Input(t.name, t.key, generated[t.name]) for t in targets]
        return self._encode(inputs)
