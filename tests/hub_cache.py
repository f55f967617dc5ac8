"""A temporary Hugging Face cache holding checkpoints in the official layout (random weights, tests only)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import torch


class HubCache:
    """A folder laid out as ``$HF_HOME/hub`` so that huggingface_hub resolves files offline from it."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.hub = self.home / "hub"
        self.hub.mkdir(parents=True, exist_ok=True)

    def place(self, repo_id: str, filename: str, state_dict: dict[str, torch.Tensor]) -> Path:
        """Write ``state_dict`` as ``filename`` of ``repo_id`` (torch.save, as the official .pt files are)."""
        repo_dir = self.hub / ("models--" + repo_id.replace("/", "--"))
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        target = repo_dir / "snapshots" / commit / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state_dict, target)
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
        return target

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that must see only this cache, offline."""
        env = dict(os.environ)
        env.update(HF_HOME=str(self.home), HF_HUB_CACHE=str(self.hub), HF_HUB_OFFLINE="1")
        return env

    def place_random_official(self, size: str | None = "tiny", tokenizers=(), *, seed: int = 1) -> None:
        """Random TerraMind ``size`` weights (None: none) and the named modalities' tokenizers, official layout."""
        from geomind_cli.models import official_state_dict
        from geomind_cli.facts.modalities import MODALITIES
        from geomind_cli.models.tokenizers import build_tokenizer
        from geomind_cli.models.weights import model_file

        if size is not None:
            self.place(*model_file(size), official_state_dict(size, seed=seed))
        for name in tokenizers:
            info = MODALITIES[name].tokenizer
            torch.manual_seed(len(name))  # fixed per tokenizer, whatever else is placed
            self.place(info.repo_id, info.filename, build_tokenizer(info.name).state_dict())

    @contextlib.contextmanager
    def active(self):
        """Make this the offline cache of this process (environment and huggingface_hub's constants), then restore."""
        import huggingface_hub.constants as constants

        keys = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")
        saved_env = {key: os.environ.get(key) for key in keys}
        saved = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
        os.environ.update(HF_HOME=str(self.home), HF_HUB_CACHE=str(self.hub), HF_HUB_OFFLINE="1")
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(self.hub), True
        try:
            yield self
        finally:
            constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
