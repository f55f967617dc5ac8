"""TerraMind's encoder-decoder and the token generation loop shared by TiM and any-to-any generation.

Layout (terramind-spec 3.2): ``TerraMindEncDec`` has exactly the keys of the official un-prefixed checkpoint for the
modalities it is built with; ``TokenSampler`` holds it as ``.model`` so wrappers expose ``sampler.model.*`` keys as the
reference does.

Generation is ROAR (random-order decoding, spec 6.1) with classifier-free guidance 1.0. For each target modality,
in order, the encoder sees every visible token (inputs, earlier targets, and the already decoded part of the current
target), the decoder queries the positions of this step with ``mask_token + pos + mod`` embeddings, and the tokens
are drawn by ``sampling.sample_tokens``. With one decoding step all positions are predicted in one pass, which is
what the reference computes. Unlike the reference, more than one step works (spec 9.9), and with several steps the
decoded part of the target conditions the next step.

Per target, the random draws come from the caller's ``token_keys`` (int64 [B, N]: Gumbel-max sampling, and a
decoding order that is a function of the keys, so of place), or the caller's ``token_uniforms`` (inverse CDF), or
else the ``generator`` (inverse CDF, and a generator-drawn decoding order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from geomind_cli.models.embeddings import decoder_embedding, encoder_embedding
from geomind_cli.models.layers import Block, DecoderBlock, LayerNorm, TransformerConfig
from geomind_cli.models.sampling import (
    Generators, draw_uniforms, is_greedy, key_order, linear_schedule, sample_tokens,
)


class TerraMindEncDec(nn.Module):
    """Encoder, decoder and embeddings of TerraMind for the given encoder and decoder keys.

    ``encoder_embeddings`` may be passed in to share the very same modules with a wrapper (TiM). Decoder ``mod_emb``
    parameters are the encoder's for modalities present on both sides, as in the checkpoint.
    """

    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        encoder_keys: Sequence[str],
        decoder_keys: Sequence[str],
        image_size: int = 224,
        encoder_embeddings: nn.ModuleDict | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        if encoder_embeddings is None:
            encoder_embeddings = nn.ModuleDict(
                {k: encoder_embedding(k, cfg.dim, image_size=image_size) for k in encoder_keys}
            )
        self.encoder_embeddings = encoder_embeddings
        self.decoder_embeddings = nn.ModuleDict(
            {k: decoder_embedding(k, cfg.dim, image_size=image_size) for k in decoder_keys}
        )
        for key, emb in self.decoder_embeddings.items():
            if key in self.encoder_embeddings:
                emb.mod_emb = self.encoder_embeddings[key].mod_emb
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.encoder_depth))
        self.encoder_norm = LayerNorm(cfg.dim, cfg.norm_eps)
        self.decoder_proj_context = nn.Linear(cfg.dim, cfg.dim)  # the only TerraMind linear that always has a bias
        self.decoder = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.decoder_depth))
        self.decoder_norm = LayerNorm(cfg.dim, cfg.norm_eps)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        nn.init.normal_(self.mask_token, std=0.02)

    def predict(self, x: torch.Tensor, emb: torch.Tensor, key: str, query_emb: torch.Tensor) -> torch.Tensor:
        """Logits of one target.

        x, emb: visible encoder tokens and their position+modality embeddings [B,N,D]; query_emb: position+modality
        embeddings of the queried target positions [B or 1, M, D]. Returns logits [B,M,vocab].
        """
        h = x + emb
        for block in self.encoder:
            h = block(h)
        h = self.encoder_norm(h)
        context = self.decoder_proj_context(h) + emb
        y = (self.mask_token + query_emb).expand(x.shape[0], -1, -1)
        for block in self.decoder:
            y = block(y, context)
        return self.decoder_embeddings[key](self.decoder_norm(y))


@dataclass(frozen=True)
class TargetSpec:
    """One modality to generate: internal token key, user-facing name and its sampling settings."""

    key: str
    name: str
    temperature: float = 1.0
    top_k: int | float = 0
    top_p: float = 0.8
    steps: int = 1


@dataclass
class _Visible:
    x: torch.Tensor  # [B,N,D]
    emb: torch.Tensor  # [B,N,D] or [1,N,D]


class TokenSampler(nn.Module):
    """Runs chained ROAR generation with ``self.model`` (state keys ``sampler.model.*``)."""

    def __init__(self, model: TerraMindEncDec):
        super().__init__()
        self.model = model

    def _embed(self, key: str, value: torch.Tensor) -> _Visible:
        x, emb = self.model.encoder_embeddings[key](value)
        return _Visible(x, emb)

    def generate(
        self,
        inputs: Sequence[tuple[str, torch.Tensor]],
        targets: Sequence[TargetSpec],
        grid: tuple[int, int],
        *,
        generator: Generators = None,
        token_uniforms: Mapping[str, torch.Tensor] | None = None,
        token_keys: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generate each target in order, each conditioned on the inputs and the targets before it.

        inputs: (encoder key, raw image [B,C,H,W] or token ids [B,h,w]) in encoder order. grid: (rows, cols) of the
        target token grids. token_uniforms: per target *name*, uniforms [B, rows*cols] replacing random draws
        (inverse CDF). token_keys: per target name, int64 keys [B, rows*cols] (Gumbel-max, key-ordered decoding);
        a name may be in one of the two, not both. Returns {target name: LongTensor [B,rows,cols]}.
        """
        token_uniforms, token_keys = token_uniforms or {}, token_keys or {}
        both = sorted(set(token_uniforms) & set(token_keys))
        if both:
            raise ValueError(f"{', '.join(both)} given both token_uniforms and token_keys; pass one of them")
        visible = [self._embed(key, value) for key, value in inputs]
        batch, device = visible[0].x.shape[0], visible[0].x.device
        out: dict[str, torch.Tensor] = {}
        for target in targets:
            draws = _draws(target, batch, grid[0] * grid[1], device, generator, token_uniforms, token_keys)
            tokens = self._generate_one(visible, target, grid, batch, device, draws)
            out[target.name] = tokens.reshape(batch, *grid)
            if target.key in self.model.encoder_embeddings:  # chained: later targets see this one
                visible.append(self._embed(target.key, out[target.name]))
        return out

    def _generate_one(self, visible, target, grid, batch, device, draws: _Draws) -> torch.Tensor:
        n = grid[0] * grid[1]
        schedule = linear_schedule(target.steps, n)
        order = draws.order if len(schedule) > 1 else None
        query_emb = self.model.decoder_embeddings[target.key].embedding(grid)  # [1,N,D]
        tokens = torch.zeros(batch, n, dtype=torch.long, device=device)
        start = 0
        for count in schedule:
            parts = list(visible)
            if order is None:
                queries, step = query_emb, draws
            else:
                pos = order[:, start:start + count]
                queries = _take(query_emb.expand(batch, -1, -1), pos)
                step = draws.at(pos)
                if start and target.key in self.model.encoder_embeddings:
                    done = order[:, :start]
                    x, emb = self.model.encoder_embeddings[target.key](tokens.reshape(batch, *grid))
                    parts.append(_Visible(_take(x, done), _take(emb.expand(batch, -1, -1), done)))
            x = torch.cat([p.x for p in parts], dim=1)
            emb = torch.cat([p.emb.expand(batch, -1, -1) for p in parts], dim=1)
            logits = self.model.predict(x, emb, target.key, queries)
            ids = sample_tokens(
                logits, temperature=target.temperature, top_k=target.top_k, top_p=target.top_p,
                uniforms=step.uniforms, keys=step.keys,
            )
            tokens = ids if order is None else tokens.scatter(1, pos, ids)
            start += count
        return tokens


@dataclass(frozen=True)
class _Draws:
    """The randomness of one target: uniforms or keys [B, N] (None when greedy) and a decoding order [B, N]."""

    uniforms: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    order: torch.Tensor | None = None

    def at(self, pos: torch.Tensor) -> _Draws:
        """The draws of positions ``pos`` [B, M]."""
        uniforms = None if self.uniforms is None else torch.gather(self.uniforms, 1, pos)
        keys = None if self.keys is None else torch.gather(self.keys, 1, pos)
        return _Draws(uniforms, keys)


def _draws(target: TargetSpec, batch: int, n: int, device, generator, token_uniforms, token_keys) -> _Draws:
    """Per target: the caller's keys (order from the keys: a function of place), or the caller's uniforms, or the
    generator's uniforms (order from the generator in both cases). Greedy needs no draws, only an order."""
    keys, uniforms = token_keys.get(target.name), token_uniforms.get(target.name)
    for what, given in (("token_keys", keys), ("token_uniforms", uniforms)):
        if given is not None and tuple(given.shape) != (batch, n):
            raise ValueError(f"{what}[{target.name!r}] must be [{batch}, {n}], got {tuple(given.shape)}")
    if keys is not None:
        if keys.dtype != torch.int64:
            raise ValueError(f"token_keys[{target.name!r}] must be int64, got {keys.dtype}")
        keys = keys.to(device)
        return _Draws(keys=None if is_greedy(target.temperature) else keys, order=key_order(keys))
    if is_greedy(target.temperature):
        uniforms = None
    elif uniforms is None:
        uniforms = draw_uniforms((batch, n), generator, device)
    several = len(linear_schedule(target.steps, n)) > 1
    order = draw_uniforms((batch, n), generator, device).argsort(dim=1) if several else None
    return _Draws(uniforms=uniforms, order=order)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B,N,D] at positions index [B,M] -> [B,M,D]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
