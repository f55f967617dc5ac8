"""Finding, reading and strictly loading checkpoint files.

Official files are resolved through ``huggingface_hub`` so the normal cache, ``HF_HOME`` and ``HF_HUB_OFFLINE=1``
behave as users expect. Nothing here ever falls back to random weights: a file that cannot be found or does not
match the model is an error that says which repository, file or keys are at fault.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from geomind_cli.errors import WeightsError, WeightsMismatchError, WeightsNotFoundError

_MAX_LISTED_KEYS = 8


def hub_file(repo_id: str, filename: str, *, download: bool = True) -> Path:
    """Local path of ``filename`` from the Hugging Face repository ``repo_id``, downloading it if allowed.

    Raises WeightsNotFoundError with the repository, the file and the ways to put it in place.
    """
    _quiet_hub()
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return Path(cached)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    host = _unreachable_hub() if download and not offline else None
    if host:
        # Without this check huggingface_hub retries five times (about 25 s) before giving up.
        reason = f"this machine is offline (cannot reach {host}) and the file is not in the local Hugging Face cache"
    elif download and not offline:
        try:
            return Path(hf_hub_download(repo_id, filename))
        except Exception as exc:  # network, auth, missing file: all end the same way for the user
            reason = f"download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    else:
        reason = "not in the local Hugging Face cache and downloads are off (HF_HUB_OFFLINE=1)"
    raise WeightsNotFoundError(
        f"{filename} from {repo_id}: {reason}; fetch it on a connected machine with "
        f"`geomind weights download` (or `hf download {repo_id} {filename}`) and copy the cache "
        f"(HF_HOME), or pass the file with --weights PATH"
    )


def _quiet_hub() -> None:
    """Send huggingface_hub's log records to the application's handlers only.

    huggingface_hub adds its own stderr handler when imported, so with the application's handler each record (each
    network retry) printed twice; without it, the application decides (geomind's CLI shows them with --verbose).
    """
    import logging

    import huggingface_hub  # noqa: F401  (its logging set-up runs on import)

    hub_logger = logging.getLogger("huggingface_hub")
    for handler in list(hub_logger.handlers):
        if type(handler) is logging.StreamHandler:
            hub_logger.removeHandler(handler)
    hub_logger.setLevel(logging.NOTSET)


def _unreachable_hub(timeout: float = 3.0) -> str | None:
    """The Hugging Face host if a connection to it fails within ``timeout`` s (no network), else None.

    Behind a proxy (HTTPS_PROXY, ALL_PROXY) the proxy decides, so no direct probe is made.
    """
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError:
        return url.hostname
    return None


def is_cached(repo_id: str, filename: str) -> Path | None:
    """Path of the cached file, or None. Never touches the network."""
    _quiet_hub()
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    return Path(cached) if isinstance(cached, str) else None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a flat ``{key: tensor}`` checkpoint from a ``.pt``/``.pth``/``.ckpt`` or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]  # Lightning checkpoints nest the weights
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a flat state dict of tensors")
    return dict(state)


def _listed(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f" (+{len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else "")


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Raise WeightsMismatchError naming missing, unexpected and wrongly shaped keys; return if all match."""
    expected = module.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected.keys() & state.keys()
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_listed(wrong)}")
    if problems:
        raise WeightsMismatchError(f"{source} does not match the model; " + "; ".join(problems))


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> nn.Module:
    """Check ``state`` against ``module`` (see check_state_dict), then copy it in. Tied weights stay tied."""
    check_state_dict(module, state, source=source)
    module.load_state_dict(state, strict=True)
    return module


MODEL_SIZES = ("tiny", "small", "base", "large")


def model_file(size: str) -> tuple[str, str]:
    """(repo_id, filename) of the official TerraMind v1 checkpoint of one size."""
    from geomind_cli.facts.modalities import HF_ORG

    if size not in MODEL_SIZES:
        raise WeightsError(f"unknown TerraMind size {size!r}; choose from {', '.join(MODEL_SIZES)}")
    return f"{HF_ORG}/TerraMind-1.0-{size}", f"TerraMind_v1_{size}.pt"


def official_files() -> dict[str, tuple[str, str]]:
    """Every official file geomind can use, by short name: sizes (``base``) and tokenizers (``S1GRD``)."""
    from geomind_cli.facts.modalities import MODALITIES

    files = {size: model_file(size) for size in MODEL_SIZES}
    files.update({name: (m.tokenizer.repo_id, m.tokenizer.filename) for name, m in MODALITIES.items() if m.tokenizer})
    return files
