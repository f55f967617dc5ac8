"""Any-to-any generation: input modalities -> tokens of each output modality (chained, in order) -> images/logits.

State keys as the reference (terramind-spec 3.4): ``sampler.model.*`` (encoder embeddings for the inputs and every
output but the last, decoder embeddings for all outputs) and ``tokenizer.<tok key>.*`` for tokenized inputs and all
outputs. Where we intentionally differ from the reference:

- ``decoding_steps > 1`` works (real multi-step ROAR; the last output then also gets an encoder embedding so its
  decoded part conditions later steps); ``temps`` / ``decoding_steps`` may be lists, one value per output;
- token grids follow the input's (rows, cols), so non-square inputs work (the reference swaps H and W);
- randomness only from ``generator`` / ``token_uniforms`` / ``token_keys`` / ``diffusion_noise``; no global
  reseeding (``token_keys`` select Gumbel-max sampling, see geomind_cli.models.sampling);
- the caller's dict is never modified; LULC class indices are never standardized.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from geomind_cli.errors import ConfigError
from geomind_cli.models.backbone import _Input, build_tokenizers, resolve_modalities
from geomind_cli.models.encdec import TerraMindEncDec, TokenSampler
from geomind_cli.models.layers import TransformerConfig
from geomind_cli.facts.modalities import get_modality, input_key, target_key
from geomind_cli.models import normalize
from geomind_cli.models.sampling import Generators
from geomind_cli.models.tim import target_specs


class TerraMindGeneration(nn.Module):
    """Generate ``output_modalities`` from ``modalities``. ``model(inputs) -> {output name: tensor}``.

    Outputs: LULC as 10 class logits [B,10,H,W]; the others [B,C,H,W], in physical units with ``standardize=True``,
    else standardized (diffusion outputs are clamped to [-1, 1] there, as the reference).
    """

    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        modalities: Sequence[str] | None = None,
        output_modalities: Sequence[str] | None = None,
        temps: float | Sequence[float] = 1.0,
        top_p: float = 0.8,
        top_k: int | float = 0,
        decoding_steps: int | Sequence[int] = 1,
        timesteps: int = 50,
        standardize: bool = False,
        img_size: int = 224,
        pretrained_tokenizers: bool = False,
    ):
        super().__init__()
        if not output_modalities:
            raise ConfigError("no output modalities given; pass output_modalities=[...], e.g. ['S1GRD', 'LULC']")
        if isinstance(output_modalities, str):
            output_modalities = [output_modalities]
        self.mod_name_mapping = resolve_modalities(modalities)
        self.modalities = list(self.mod_name_mapping)
        self.output_modalities = list(output_modalities)
        out_keys = [target_key(name) for name in self.output_modalities]
        if len(set(out_keys)) != len(out_keys):
            raise ConfigError(f"output_modalities {self.output_modalities} name the same modality twice")
        for name, key in zip(self.output_modalities, out_keys):
            if key in self.mod_name_mapping.values():
                raise ConfigError(f"{name} is both an input and an output; generate it from other inputs instead")
        self.targets = target_specs(out_keys, self.output_modalities, temps=temps, top_k=top_k, top_p=top_p,
                                    decoding_steps=decoding_steps)
        self.timesteps = timesteps
        self.standardize = standardize
        # Earlier outputs condition later ones, so they need encoder embeddings; the last one only when it is
        # decoded in several steps (its decoded part then conditions its own later steps).
        cond = out_keys[:-1] + (out_keys[-1:] if self.targets[-1].steps > 1 else [])
        in_keys = list(self.mod_name_mapping.values())
        model = TerraMindEncDec(
            cfg, encoder_keys=list(dict.fromkeys(in_keys + cond)), decoder_keys=out_keys, image_size=img_size
        )
        self.sampler = TokenSampler(model)
        self.tokenizer = build_tokenizers(in_keys + out_keys, pretrained=pretrained_tokenizers)

    def _inputs(self, d: Mapping[str, torch.Tensor] | torch.Tensor, standardize: bool) -> list[_Input]:
        if isinstance(d, torch.Tensor):
            d = {self.modalities[0]: d}
        inputs = []
        for name, value in d.items():
            key = self.mod_name_mapping.get(name) or input_key(name)
            if key not in self.mod_name_mapping.values():
                raise ConfigError(f"{name} is not an input of this model; it takes {', '.join(self.modalities)}")
            modality = get_modality(key)
            if standardize and not modality.categorical:
                value = normalize.standardize(key, value)
            inputs.append(_Input(name, key, value))
        return inputs

    def generate_tokens(
        self,
        inputs: Mapping[str, torch.Tensor] | torch.Tensor,
        *,
        generator: Generators = None,
        token_uniforms: Mapping[str, torch.Tensor] | None = None,
        token_keys: Mapping[str, torch.Tensor] | None = None,
        standardize: bool | None = None,
        input_tokens: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Token ids of every output: {output name: LongTensor [B,h,w]}, h, w = input size / 16.

        inputs: as ``forward``. input_tokens: {name: token ids [B,h,w]} for tokenized inputs (LULC/NDVI) that are
        already tokenized; they skip the tokenizer. token_uniforms: {output name: uniforms [B, h*w]} (inverse-CDF
        draws); token_keys: {output name: int64 keys [B, h*w]} (Gumbel-max draws); at most one of them per output.
        """
        standardize = self.standardize if standardize is None else standardize
        items = [] if inputs is None or (isinstance(inputs, Mapping) and not inputs) else self._inputs(inputs, standardize)
        with torch.no_grad():
            items = [
                _Input(i.name, i.key, self.tokenizer[i.key].encode(i.value)) if i.key in self.tokenizer else i
                for i in items
            ]
            for name, ids in (input_tokens or {}).items():
                items.append(_Input(name, self.mod_name_mapping.get(name) or input_key(name), ids))
            if not items:
                raise ConfigError(f"no inputs given; this model takes {', '.join(self.modalities)}")
            return self.sampler.generate(
                [(i.key, i.value) for i in items], self.targets, items[-1].grid,
                generator=generator, token_uniforms=token_uniforms, token_keys=token_keys,
            )

    def decode(
        self,
        tokens: Mapping[str, torch.Tensor],
        *,
        timesteps: int | None = None,
        generator: Generators = None,
        diffusion_noise: Mapping[str, torch.Tensor] | None = None,
        standardize: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Token ids {output name: [B,h,w]} -> {output name: [B,C,16h,16w]} through each output's tokenizer.

        diffusion_noise: {name: x_T [B,C,16h,16w]} starting latents (exactly reproducible decodes). A sequence of
        generators draws each sample's x_T from its own generator.
        """
        standardize = self.standardize if standardize is None else standardize
        timesteps = timesteps or self.timesteps
        keys = {t.name: t.key for t in self.targets}
        out = {}
        with torch.no_grad():
            for name, ids in tokens.items():
                key = keys.get(name) or target_key(name)
                noise = (diffusion_noise or {}).get(name)
                gen = generator
                per_sample = generator is not None and not isinstance(generator, torch.Generator)
                if noise is None and per_sample and not get_modality(key).categorical:
                    channels = get_modality(key).num_channels
                    h, w = ids.shape[-2] * 16, ids.shape[-1] * 16
                    noise = torch.stack(
                        [torch.randn(channels, h, w, generator=g, device=g.device) for g in generator]
                    ).to(ids.device)
                    gen = None
                value = self.tokenizer[key].decode_tokens(ids, timesteps=timesteps, noise=noise, generator=gen)
                if standardize and not get_modality(key).categorical:
                    value = normalize.destandardize(key, value)
                out[name] = value
        return out

    def forward(
        self,
        d: Mapping[str, torch.Tensor] | torch.Tensor,
        *,
        generator: Generators = None,
        token_uniforms: Mapping[str, torch.Tensor] | None = None,
        token_keys: Mapping[str, torch.Tensor] | None = None,
        diffusion_noise: Mapping[str, torch.Tensor] | None = None,
        timesteps: int | None = None,
        standardize: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """d: {input name: tensor} (physical units with standardize=True, else standardized) -> {output name: tensor}.

        The same generator (or per-sample generators) drives token sampling and then diffusion noise.
        """
        tokens = self.generate_tokens(
            d, generator=generator, token_uniforms=token_uniforms, token_keys=token_keys, standardize=standardize
        )
        return self.decode(
            tokens, timesteps=timesteps, generator=generator, diffusion_noise=diffusion_noise, standardize=standardize
        )
