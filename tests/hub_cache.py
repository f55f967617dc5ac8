"""A temporary Hugging Face cache holding checkpoints in the official layout (random weights, tests only)."""

from __future__ import annotations

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
