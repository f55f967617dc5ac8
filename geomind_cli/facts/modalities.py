"""One registry of per-modality facts: names, checkpoint keys, bands, statistics and tokenizers.

TerraMind's checkpoints key every embedding by an internal domain name (``untok_sen2l2a@224`` for raw Sentinel-2 L2A
patches, ``tok_sen2l2a@224`` for its tokens). Users say ``S2L2A``. This module is the only place that maps one to the
other (terramind-spec section 2), so the rest of the code never branches on name substrings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from geomind_cli.errors import ModalityError

HF_ORG = "ibm-esa-geospatial"

S2L2A_BANDS = (
    "COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3",
    "NIR_BROAD", "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2",
)
S2L1C_BANDS = S2L2A_BANDS[:10] + ("CIRRUS",) + S2L2A_BANDS[10:]
# Sentinel-2 band ids in the same order, for matching files named ..._B8A.tif or band descriptions "B8A".
S2L2A_BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2L1C_BAND_IDS = S2L2A_BAND_IDS[:10] + ("B10",) + S2L2A_BAND_IDS[10:]

# ESRI 10 m land cover as used by TerraMind v1.0 (LULC tokenizer input and generated LULC logits, 10 classes).
LULC_CLASS_NAMES = (
    "No data", "Water", "Trees", "Flooded vegetation", "Crops", "Built area",
    "Bare ground", "Snow/ice", "Clouds", "Rangeland",
)
LULC_COLORS = (
    (0, 0, 0), (65, 155, 223), (57, 125, 73), (122, 135, 198), (228, 150, 53), (196, 40, 27),
    (165, 155, 143), (168, 235, 255), (97, 97, 97), (227, 226, 195),
)

# Pre-training statistics of TerraMind v1 (terramind-spec 2.4). Raw and token keys of one modality share them.
_S2L2A_MEAN = (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988,
               2424.884, 1857.648)
_S2L2A_STD = (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
              1434.261, 1334.311)
_S2L1C_MEAN = (2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56, 3306.481, 1473.847,
               506.07, 2472.825, 1838.929)
_S2L1C_STD = (1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732, 1727.26, 1024.687,
              442.165, 1331.411, 1160.419)


@dataclass(frozen=True)
class TokenizerInfo:
    """Facts about one TerraMind tokenizer (terramind-spec 1.2)."""

    name: str  # registry name, e.g. terramind_v1_tokenizer_s2l2a
    repo_id: str
    filename: str
    in_channels: int
    fsq_levels: tuple[int, ...]
    decoder: str  # "diffusion" (DiVAE with UNet) or "vit" (VQVAE, LULC)

    @property
    def vocab_size(self) -> int:
        size = 1
        for level in self.fsq_levels:
            size *= level
        return size


@dataclass(frozen=True)
class Modality:
    """One TerraMind modality as users name it, with everything the model and the engine need to know."""

    name: str  # canonical user name: S2L2A, S1GRD, ...
    bands: tuple[str, ...]
    raw_key: str | None  # encoder key for raw patch input (None: only usable as tokens)
    token_key: str | None  # key of its tokenized domain (None: cannot be generated or tokenized)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    unit: str
    categorical: bool = False
    tokenizer: TokenizerInfo | None = None
    band_ids: tuple[str, ...] = field(default=())

    @property
    def num_channels(self) -> int:
        return len(self.bands)


def _tokenizer(short: str, channels: int, levels=(8, 8, 8, 6, 5), decoder="diffusion") -> TokenizerInfo:
    return TokenizerInfo(
        name=f"terramind_v1_tokenizer_{short.lower()}",
        repo_id=f"{HF_ORG}/TerraMind-1.0-Tokenizer-{short}",
        filename=f"TerraMind_Tokenizer_{short}.pt",
        in_channels=channels,
        fsq_levels=tuple(levels),
        decoder=decoder,
    )


MODALITIES: dict[str, Modality] = {
    m.name: m
    for m in (
        Modality("S2L2A", S2L2A_BANDS, "untok_sen2l2a@224", "tok_sen2l2a@224", _S2L2A_MEAN, _S2L2A_STD,
                 "reflectance x10000", tokenizer=_tokenizer("S2L2A", 12), band_ids=S2L2A_BAND_IDS),
        Modality("S2L1C", S2L1C_BANDS, "untok_sen2l1c@224", None, _S2L1C_MEAN, _S2L1C_STD,
                 "reflectance x10000", band_ids=S2L1C_BAND_IDS),
        Modality("RGB", ("RED", "GREEN", "BLUE"), "untok_sen2rgb@224", None, (87.271, 80.931, 66.667),
                 (58.767, 47.663, 42.631), "8-bit", band_ids=("B04", "B03", "B02")),
        Modality("S1GRD", ("VV", "VH"), "untok_sen1grd@224", "tok_sen1grd@224", (-12.599, -20.293), (5.195, 5.890),
                 "dB", tokenizer=_tokenizer("S1GRD", 2)),
        Modality("S1RTC", ("VV", "VH"), "untok_sen1rtc@224", "tok_sen1rtc@224", (-10.93, -17.329), (4.391, 4.459),
                 "dB", tokenizer=_tokenizer("S1RTC", 2)),
        Modality("DEM", ("DEM",), "untok_dem@224", "tok_dem@224", (670.665,), (951.272,), "m",
                 tokenizer=_tokenizer("DEM", 1)),
        Modality("LULC", ("LULC",), None, "tok_lulc@224", (0.0,), (1.0,), "class", categorical=True,
                 tokenizer=_tokenizer("LULC", 10, levels=(7, 5, 5, 5, 5), decoder="vit")),
        Modality("NDVI", ("NDVI",), None, "tok_ndvi@224", (0.327,), (0.322,), "index",
                 tokenizer=_tokenizer("NDVI", 1)),
    )
}

TOKENIZERS: dict[str, TokenizerInfo] = {m.tokenizer.name: m.tokenizer for m in MODALITIES.values() if m.tokenizer}
GENERATABLE = tuple(name for name, m in MODALITIES.items() if m.token_key)


def _normalise(name: str) -> str:
    # The reference lower-cases and rewrites s2->sen2, s1->sen1, location->coords before matching (spec 2.2).
    return name.lower().replace("s2", "sen2").replace("s1", "sen1").replace("location", "coords")


# First matching substring wins (spec 2.2). Encoder inputs: LULC and NDVI are always tokenized.
_INPUT_RULES = (
    ("sen2l2a", "S2L2A"), ("sen2l1c", "S2L1C"), ("sen1rtc", "S1RTC"), ("sen1", "S1GRD"), ("rgb", "RGB"),
    ("dem", "DEM"), ("lulc", "LULC"), ("ndvi", "NDVI"),
)
# Generation outputs and TiM targets: any Sentinel-2 name means S2L2A tokens.
_TARGET_RULES = (
    ("sen2", "S2L2A"), ("sen1rtc", "S1RTC"), ("sen1", "S1GRD"), ("dem", "DEM"), ("lulc", "LULC"), ("ndvi", "NDVI"),
)

_KEY_TO_NAME = {}
for _m in MODALITIES.values():
    for _key in (_m.raw_key, _m.token_key):
        if _key:
            _KEY_TO_NAME[_key] = _m.name


def _match(name: str, rules) -> str | None:
    if name in MODALITIES:
        return name
    if name in _KEY_TO_NAME:
        return _KEY_TO_NAME[name]
    norm = _normalise(name)
    for needle, canonical in rules:
        if needle in norm:
            return canonical
    return None


def get_modality(name: str) -> Modality:
    """Look a modality up by canonical name, TerraTorch alias (``S2``, ``sen1grd``...) or internal key."""
    canonical = _match(name, _INPUT_RULES)
    if canonical is None:
        raise ModalityError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}")
    return MODALITIES[canonical]


def input_key(name: str) -> str:
    """Encoder embedding key for a modality given as input (raw patches, or tokens for LULC/NDVI)."""
    modality = get_modality(name)
    return modality.raw_key or modality.token_key


def target_key(name: str) -> str:
    """Token key for a modality used as generation output or TiM target."""
    canonical = _match(name, _TARGET_RULES)
    if canonical is None or MODALITIES[canonical].token_key is None:
        raise ModalityError(
            f"modality {name!r} cannot be generated; choose from {', '.join(GENERATABLE)}"
        )
    return MODALITIES[canonical].token_key


def modality_id(key: str) -> int:
    """The reference's integer id of a domain key: sha256 of the key modulo 2**15 (spec 2.1)."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2**15


def statistics(key_or_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pre-training (mean, std) for a modality name or internal key."""
    modality = get_modality(key_or_name)
    return modality.mean, modality.std
