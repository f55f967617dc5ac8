"""TerraMind 1.0 in plain PyTorch: backbone, Thinking-in-Modalities, any-to-any generation and tokenizers.

    from geomind_cli.models import build_model

    backbone = build_model("terramind_v1_base", pretrained=True, modalities=["S2L2A", "S1GRD"])
    features = backbone({"S2L2A": s2, "S1GRD": s1})          # list of [B, N, D], one per layer

Names and keyword arguments are TerraTorch's (``terramind_v1_{tiny,small,base,large}[_tim|_generate]``,
``terramind_v1_tokenizer_*``); checkpoints are the official files, loaded strictly.
"""

from geomind_cli.models.backbone import TerraMindViT
from geomind_cli.models.generation import TerraMindGeneration
from geomind_cli.models.registry import MODEL_NAMES, SIZES, build_model, official_state_dict
from geomind_cli.models.tim import TerraMindTiM

__all__ = ["MODEL_NAMES", "SIZES", "TerraMindGeneration", "TerraMindTiM", "TerraMindViT", "build_model",
           "official_state_dict"]
