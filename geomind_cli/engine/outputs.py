"""What a task writes: one :class:`OutputSpec` per output raster, and how blended values become stored values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

KINDS = ("continuous", "classes", "grid")


@dataclass(frozen=True)
class OutputSpec:
    """One output raster.

    kind ``continuous``: the tile function returns [B, C, T, T] values, blended across tiles (C = len(bands)).
    kind ``classes``: [B, K, T, T] class probabilities (softmax, not logits), blended then argmax'd into one band of
    class indices 0..K-1; ``probabilities``/``confidence`` add sibling files ``<stem>_probabilities.tif`` (K bands)
    and ``<stem>_confidence.tif`` (max probability). kind ``grid``: [B, C, T/16, T/16] per 16 px cell (token ids,
    patch embeddings), never blended: each cell comes from the tile whose centre is nearest.

    Stored values are ``(value - offset) / scale`` (rounded and clipped for integer dtypes); GDAL's scale/offset are set
    so readers recover ``value``. Every kind is stored through :meth:`encode`. ``nodata`` defaults to NaN for floats,
    0 (unsigned) or the minimum (signed) for continuous integers, and the dtype maximum for class and grid outputs.
    A class or grid output whose nodata is a class index (TerraMind's LULC class 0, "No data") keeps that index:
    the class and the nodata value are the same thing.
    """

    name: str
    path: Path
    kind: Literal["continuous", "classes", "grid"]
    bands: list[str]
    dtype: str
    nodata: float | int | None = None
    class_names: list[str] | None = None
    colormap: dict[int, tuple] | None = None
    probabilities: bool = False
    confidence: bool = False
    scale: float = 1.0
    offset: float = 0.0
    # What produced the output (a hash of command, options, model and weights file; tasks.base.fingerprint): written
    # as the GEOMIND_FINGERPRINT tag, and resume keeps an existing output only when it matches. None: not checked.
    fingerprint: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        if self.kind not in KINDS:
            raise ValueError(f"output kind must be one of {KINDS}, not {self.kind!r}")
        np.dtype(self.dtype)
        if self.kind == "classes" and len(self.bands) != 1:
            raise ValueError("a class output has exactly one band (the class map)")
        if (self.probabilities or self.confidence) and self.kind != "classes":
            raise ValueError("probability and confidence bands exist only for class outputs")

    @property
    def fill(self) -> float | int:
        """The nodata value actually written."""
        if self.nodata is not None:
            return self.nodata
        dtype = np.dtype(self.dtype)
        if dtype.kind == "f":
            return float("nan")
        info = np.iinfo(dtype)
        if self.kind == "continuous":
            return 0 if dtype.kind == "u" else int(info.min)
        return int(info.max)

    @property
    def channels(self) -> int | None:
        """Channels the tile function returns: K class probabilities (None if no class names tell K), else bands.

        A grid output may carry ``class_names`` too (a per-patch class label, with its colour table); its tile
        function still returns one channel per band.
        """
        if self.kind == "classes":
            return len(self.class_names) if self.class_names else None
        return len(self.bands)

    @property
    def overview_resampling(self) -> str:
        return {"continuous": "AVERAGE", "classes": "MODE", "grid": "NEAREST"}[self.kind]

    def sidecar(self, what: str) -> Path:
        return self.path.with_name(f"{self.path.stem}_{what}{self.path.suffix or '.tif'}")

    def encode(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """float [C, h, w] values and bool [h, w] validity -> [C, h, w] in ``dtype``, nodata where not valid."""
        dtype = np.dtype(self.dtype)
        stored = values if (self.scale == 1.0 and self.offset == 0.0) else (values - self.offset) / self.scale
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            low, high = info.min, info.max
            # Keep real values off the nodata value when it sits at an end of the range (uint16 nodata 0, ...).
            # Class indices and token ids are never moved: an index equal to nodata means "no data".
            fill = self.fill
            if self.kind == "continuous" and fill == low:
                low += 1
            elif self.kind == "continuous" and fill == high:
                high -= 1
            stored = np.clip(np.rint(stored), low, high)
        out = stored.astype(dtype)
        out[:, ~valid] = self.fill
        return out
