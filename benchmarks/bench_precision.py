"""Mixed-precision accuracy: bf16 (and fp16 on CUDA) autocast against float32, same weights, seed and world noise.

    python benchmarks/bench_precision.py --weights random --model tiny          # CPU, a few minutes on 2 cores
    python benchmarks/bench_precision.py --model base --device cuda             # official weights (HF cache)

Checks (the targets of issue 6), on real samples (samples/terramind, samples/sen1floods11), tile by tile through
the engine's own tile reader, over valid pixels:

- ``generate_lulc``: LULC argmax agreement of the generated class map (target >= 99%);
- ``generate_s1grd``: mean absolute difference of the generated S1GRD in dB (target <= 0.5 dB), ``--timesteps`` steps;
- ``tokenize``: token-id agreement of the S2L2A, DEM and S1GRD tokenizers (target >= 99%).

Generation is stochastic (temperature 1, top-p 0.8 as the CLI's defaults); the token draws and the diffusion
starting noise come from the world noise field (geomind_cli.noise) exactly as ``geomind generate`` draws them
(Gumbel keys by default, ``--token-sampling cdf`` for uniforms and inverse CDF), so
float32 and the low precision see the same randomness. To show where an error enters, the generation rows also give
the agreement of the sampled tokens and the decoder-only figure (float32 tokens decoded under autocast).

The model is held in float32 and only the forward runs under ``torch.autocast``, as the CLI does. On CUDA the
float32 baseline runs without TF32. ``--weights random`` places random official-layout checkpoints in a temporary
offline Hugging Face cache (the loading path of the official weights); figures from random weights only bound the
numerics and say nothing about trained-model behaviour. Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_common import log, machine, random_weights_cache, versions  # noqa: E402

SAMPLES = ROOT / "samples"
TERRAMIND = SAMPLES / "terramind" / "282D_485L_3_3"
FLOODS = SAMPLES / "sen1floods11" / "Spain_7370579"
# (check, input file) pairs; generate reads the optical input, tokenize each modality's own file.
GENERATE_INPUTS = (f"{TERRAMIND}_S2L2A.tif", f"{FLOODS}_S2Hand.tif")
TOKENIZE_INPUTS = (f"{TERRAMIND}_S2L2A.tif", f"{TERRAMIND}_DEM.tif", f"{FLOODS}_S1Hand.tif")
TARGETS = {"lulc_argmax_agreement": 0.99, "s1_mad_db": 0.5, "token_agreement": 0.99}
TOKENIZED = ("S2L2A", "S1GRD", "LULC", "DEM")
PATCH = 16


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="TerraMind size for generation (default tiny)")
    parser.add_argument("--weights", choices=("official", "random"), default="official",
                        help="official (Hugging Face cache) or random official-layout weights in a temporary cache")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="autocast dtypes to compare with float32 (default bf16, and fp16 on CUDA)")
    parser.add_argument("--checks", nargs="+", default=["generate_lulc", "generate_s1grd", "tokenize"],
                        choices=["generate_lulc", "generate_s1grd", "tokenize"])
    parser.add_argument("--timesteps", type=int, default=10, help="diffusion steps for S1GRD (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token-sampling", choices=("gumbel", "cdf"), default="gumbel",
                        help="token draws as `geomind generate` makes them (default gumbel keys; cdf: uniforms)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="224 px samples only (skip the 512 px Sen1Floods11 chip)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


# ---------------------------------------------------------------- weights


def random_hub(size: str | None, seed: int, tokenizers=TOKENIZED):
    """Random official-layout weights (TerraMind ``size``, None: not needed, and these modalities' tokenizers) in a
    temporary offline Hugging Face cache."""
    return random_weights_cache(size, [name for name in TOKENIZED if name in tokenizers], seed=seed)


# ---------------------------------------------------------------- tiles


def tile_batches(path: str, batch_size: int):
    """The engine's own tile batches (224 px, overlap 64) of one sample file: (modality, TileBatch) pairs."""
    from geomind_cli.engine.batches import produce
    from geomind_cli.engine.tiling import plan_tiles
    from geomind_cli.tasks.inputs import open_inputs

    scene = open_inputs([path])
    (modality,) = scene.band_counts
    plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=224, overlap=64)
    for item in produce(scene, plan, batch_size=batch_size, skip_nodata=True, valid_rule="all", pin=False):
        if item.batch is not None:
            yield modality, item.batch


def patch_valid(valid: np.ndarray) -> np.ndarray:
    """[B, T, T] pixel mask -> [B, T/16, T/16]: patches whose pixels are all valid."""
    b, t, _ = valid.shape
    return valid.reshape(b, t // PATCH, PATCH, t // PATCH, PATCH).all(axis=(2, 4))


@dataclass
class Tally:
    """Running agreement / absolute-difference sums over valid elements."""

    agree: int = 0
    total: int = 0
    abs_sum: float = 0.0
    abs_max: float = 0.0

    def equal(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> None:
        self.agree += int((a == b)[mask].sum())
        self.total += int(mask.sum())

    def absdiff(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> None:
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))[mask]
        self.abs_sum += float(d.sum())
        self.abs_max = max(self.abs_max, float(d.max(initial=0.0)))
        self.total += int(d.size)

    @property
    def agreement(self) -> float:
        return round(self.agree / max(self.total, 1), 5)

    @property
    def mad(self) -> float:
        return round(self.abs_sum / max(self.total, 1), 4)


@dataclass
class Row:
    check: str
    sample: str
    precision: str
    metric: str
    value: float
    target: float
    passed: bool
    tiles: int
    details: dict = field(default_factory=dict)


# ---------------------------------------------------------------- checks


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _generate_model(size: str, modality: str, target: str, timesteps: int, device: torch.device):
    from geomind_cli.models import build_model

    model = build_model(f"terramind_v1_{size}_generate", pretrained=True, modalities=[modality],
                        output_modalities=[target], temps=1.0, top_p=0.8, top_k=0, decoding_steps=1,
                        timesteps=timesteps, standardize=True)
    return model.to(device).eval()


def check_generate(target: str, path: str, args, device, precisions) -> list[Row]:
    """Generate ``target`` from the optical sample at ``path``; float32 vs each precision, tile by tile."""
    from geomind_cli.facts.modalities import MODALITIES
    from geomind_cli.noise import tile_gaussian, tile_token_keys, tile_token_uniforms

    categorical = MODALITIES[target].categorical
    model = None
    tallies = {p: {"tokens": Tally(), "end_to_end": Tally(), "decoder_only": Tally()} for p in precisions}
    tiles, max_probs = 0, []
    for modality, batch in tile_batches(path, args.batch_size):
        if model is None:
            model = _generate_model(args.model, modality, target, args.timesteps, device)
        size = batch.arrays[modality].shape[-1]
        origins = list(zip(batch.rows.tolist(), batch.cols.tolist()))
        # The same streams as tasks/generate.py with noise="world".
        draw = tile_token_keys if args.token_sampling == "gumbel" else tile_token_uniforms
        draws = {target: torch.from_numpy(draw(args.seed, f"tokens/{target}", origins, size)).to(device)}
        draws_kwarg = {"token_keys" if args.token_sampling == "gumbel" else "token_uniforms": draws}
        noise = {}
        if not categorical:
            noise[target] = torch.from_numpy(tile_gaussian(args.seed, f"diffusion/{target}", origins, size,
                                                           MODALITIES[target].num_channels)).to(device)
        x = {modality: torch.from_numpy(np.ascontiguousarray(batch.arrays[modality])).to(device)}

        def run(dtype, tokens=None):
            with torch.inference_mode(), _autocast(device, dtype):
                if tokens is None:
                    tokens = model.generate_tokens(x, **draws_kwarg)
                out = model.decode(tokens, diffusion_noise=noise)[target].float()
            value = out.argmax(dim=1) if categorical else out
            return tokens, value.cpu().numpy()

        with _fp32_reference(device), _token_peaks() as peaks:
            ref_tokens, ref = run(torch.float32)
        max_probs += peaks
        pmask = patch_valid(batch.valid)
        pix = batch.valid if categorical else np.broadcast_to(batch.valid[:, None], ref.shape)
        for name, dtype in precisions.items():
            tokens, low = run(dtype)
            _, low_dec = run(dtype, tokens=ref_tokens)
            t = tallies[name]
            t["tokens"].equal(tokens[target].cpu().numpy(), ref_tokens[target].cpu().numpy(), pmask)
            if categorical:
                t["end_to_end"].equal(low, ref, pix)
                t["decoder_only"].equal(low_dec, ref, pix)
            else:
                t["end_to_end"].absdiff(low, ref, pix)
                t["decoder_only"].absdiff(low_dec, ref, pix)
        tiles += len(batch)
        log(f"  {target} {Path(path).name}: {tiles} tiles")
    rows = []
    for name, t in tallies.items():
        details = {"sampled_token_agreement": t["tokens"].agreement,
                   "mean_max_token_prob": round(float(np.mean(max_probs)), 5) if max_probs else None}
        if categorical:
            value, target_value, metric = t["end_to_end"].agreement, TARGETS["lulc_argmax_agreement"], "argmax agreement"
            details["decoder_only_argmax_agreement"] = t["decoder_only"].agreement
            passed = value >= target_value
        else:
            value, target_value, metric = t["end_to_end"].mad, TARGETS["s1_mad_db"], "MAD dB"
            details.update(max_abs_db=round(t["end_to_end"].abs_max, 3),
                           decoder_only_mad_db=t["decoder_only"].mad,
                           decoder_only_max_abs_db=round(t["decoder_only"].abs_max, 3), timesteps=args.timesteps)
            passed = value <= target_value
        rows.append(Row(f"generate_{target.lower()}", Path(path).name, name, metric, value, target_value, passed,
                        tiles, details))
    return rows


@contextlib.contextmanager
def _token_peaks():
    """Record the mean largest token probability of each sampling call (float32 run): how peaked the token
    distributions are, which decides how often a tiny logit change moves a sampled token (flat with random weights)."""
    from geomind_cli.models import encdec

    peaks: list[float] = []
    original = getattr(encdec, "sample_tokens", None)
    if original is None:  # the generation code moved: no diagnostic, same results
        yield peaks
        return

    def recording(logits, **kwargs):
        peaks.append(float(torch.softmax(logits.float(), dim=-1).amax(dim=-1).mean()))
        return original(logits, **kwargs)

    encdec.sample_tokens = recording
    try:
        yield peaks
    finally:
        encdec.sample_tokens = original


def check_tokenize(path: str, args, device, precisions) -> list[Row]:
    """Token ids of the sample under float32 vs each precision: as the CLI runs them (the tokenizer encoder stays
    float32, see ``Tokenizer.autocast_encoder``), and, as a diagnostic, with the encoder under autocast too."""
    from geomind_cli.models import build_model
    from geomind_cli.facts.modalities import MODALITIES
    from geomind_cli.models.normalize import standardize

    tokenizer = None
    tallies = {p: {"cli": Tally(), "autocast_encoder": Tally()} for p in precisions}
    margins = {p: 0.0 for p in precisions}
    tiles = 0
    for modality, batch in tile_batches(path, args.batch_size):
        if tokenizer is None:
            tokenizer = build_model(MODALITIES[modality].tokenizer.name, pretrained=True).to(device).eval()
            levels = torch.tensor(tokenizer.fsq.levels, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        x = standardize(modality, torch.from_numpy(np.ascontiguousarray(batch.arrays[modality])).to(device))
        with torch.inference_mode(), _fp32_reference(device):
            ref_latent = tokenizer.encode_latent(x)
            ref = tokenizer.fsq(ref_latent)[1].cpu().numpy()
        pmask = patch_valid(batch.valid)
        for name, dtype in precisions.items():
            for mode in ("cli", "autocast_encoder"):
                tokenizer.autocast_encoder = mode == "autocast_encoder"
                try:
                    with torch.inference_mode(), _autocast(device, dtype):
                        latent = tokenizer.encode_latent(x)
                        ids = tokenizer.fsq(latent)[1].cpu().numpy()
                finally:
                    tokenizer.autocast_encoder = False
                tallies[name][mode].equal(ids, ref, pmask)
            # How far the autocast latent moved, in FSQ level steps (a flip needs a crossing of a half step).
            scaled = lambda z: torch.sigmoid(z.float()) * (levels - 1)  # noqa: E731
            margins[name] = max(margins[name], float((scaled(latent) - scaled(ref_latent)).abs().max()))
        tiles += len(batch)
    return [Row("tokenize", f"{Path(path).name} ({modality})", name, "token agreement", t["cli"].agreement,
                TARGETS["token_agreement"], t["cli"].agreement >= TARGETS["token_agreement"], tiles,
                {"encoder_under_autocast_agreement": t["autocast_encoder"].agreement,
                 "encoder_under_autocast_max_latent_error_levels": round(margins[name], 4)})
            for name, t in tallies.items()]


@contextlib.contextmanager
def _fp32_reference(device: torch.device):
    """True float32 for the baseline: no TF32 matmuls/convolutions on CUDA."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------- main


def table(result: dict) -> str:
    head = ("check", "sample", "precision", "metric", "value", "target", "ok", "tiles", "diagnostics")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for row in result["results"]:
        value = f"{100 * row['value']:.2f}%" if "agreement" in row["metric"] else f"{row['value']:.4f}"
        target = (f">= {100 * row['target']:.0f}%" if "agreement" in row["metric"] else f"<= {row['target']}")
        diag = ", ".join(f"{k}={v}" for k, v in row["details"].items())
        lines.append(" | ".join(str(c) for c in (row["check"], row["sample"], row["precision"], row["metric"], value,
                                                 target, "yes" if row["passed"] else "NO", row["tiles"], diag)))
    return "\n".join(lines)


def resolve_precisions(names, device: torch.device) -> dict[str, torch.dtype]:
    names = names or (["bf16", "fp16"] if device.type == "cuda" else ["bf16"])
    table_ = {"bf16": torch.bfloat16, "fp16": torch.float16}
    unknown = [n for n in names if n not in table_]
    if unknown:
        raise SystemExit(f"unknown precision {unknown[0]!r}; use bf16 or fp16")
    if device.type == "cpu" and "fp16" in names:
        raise SystemExit("fp16 autocast is for CUDA; use bf16 on the CPU")
    return {n: table_[n] for n in names}


def main(argv=None) -> int:
    args = parse_args(argv)
    import logging

    from geomind_cli.tasks.runtime import configure_backend, resolve_device

    device = resolve_device(args.device)
    configure_backend(device)  # all cores on the CPU (TF32 is switched off again for the float32 baseline)
    precisions = resolve_precisions(args.precisions, device)
    geomind_log = logging.getLogger("geomind")
    level = geomind_log.level
    geomind_log.setLevel(logging.ERROR)
    started = time.perf_counter()
    rows: list[Row] = []
    generate_inputs = GENERATE_INPUTS[:1] if args.quick else GENERATE_INPUTS
    tokenize_inputs = TOKENIZE_INPUTS[:2] if args.quick else TOKENIZE_INPUTS
    weights = contextlib.nullcontext()
    if args.weights == "random":  # only the checkpoints these checks load (each tokenizer is ~0.5 GB on disk)
        needed = {"generate_lulc": {"LULC"}, "generate_s1grd": {"S1GRD"},
                  "tokenize": {"S2L2A", "DEM"} | (set() if args.quick else {"S1GRD"})}
        tokenizers = set().union(*(needed[c] for c in args.checks))
        generates = any(c.startswith("generate") for c in args.checks)
        weights = random_hub(args.model if generates else None, args.seed, tokenizers)
    try:
        with warnings.catch_warnings(), weights:
            warnings.simplefilter("ignore")
            for check in args.checks:
                if check == "tokenize":
                    for path in tokenize_inputs:
                        log(f"[tokenize] {Path(path).name}")
                        rows += check_tokenize(path, args, device, precisions)
                        log(json.dumps(asdict(rows[-1])))
                else:
                    target = "LULC" if check == "generate_lulc" else "S1GRD"
                    for path in generate_inputs:
                        log(f"[{check}] {Path(path).name}")
                        rows += check_generate(target, path, args, device, precisions)
                        log(json.dumps(asdict(rows[-1])))
    finally:
        geomind_log.setLevel(level)
    result = {
        "date": date.today().isoformat(),
        "command": " ".join(["python", "benchmarks/bench_precision.py", *args.argv]),
        "machine": machine(device),
        "versions": versions(),
        "settings": {"model": args.model, "weights": args.weights, "device": str(device),
                     "precisions": list(precisions), "timesteps": args.timesteps, "seed": args.seed,
                     "batch_size": args.batch_size, "tile_size": 224, "overlap": 64,
                     "sampling": f"temperature 1, top-p 0.8, world noise, {args.token_sampling} token draws"},
        "targets": TARGETS,
        "notes": ["per tile over valid pixels (patches for tokens); overlapping tiles count once each",
                  "the model stays float32, only the forward runs under torch.autocast (as the CLI)"]
        + (["RANDOM WEIGHTS: these figures bound the numerics only, not trained-model behaviour"]
           if args.weights == "random" else []),
        "results": [asdict(r) for r in rows],
        "all_passed": all(r.passed for r in rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = args.json or HERE / "results" / f"precision-{result['date']}-{args.model}-{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\n{result['command']}\n{result['machine']['cpu']} ({result['machine']['cores']} cores), GPU "
          f"{result['machine']['gpu']}, model {args.model}, {args.weights} weights, {result['date']}, "
          f"{result['seconds']} s; JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
