"""Band layouts: which bands an input must hold, in the order a model takes them.

A pre-trained modality's layout is its full band list (S2L2A: twelve bands). A fine-tune may take fewer bands of it
(TerraTorch's ``backbone_bands``: six Sentinel-2 bands), other bands on a reused patch embedding (Landsat bands on
``S2L1C_L8``), or a modality TerraMind never saw (``{NDVI: 1}``). The engine locates each layout band in the input
files by band description or file-name suffix, then by position.
"""

from __future__ import annotations

from dataclasses import dataclass

from geomind_cli.facts.modalities import MODALITIES


@dataclass(frozen=True)
class BandLayout:
    """The bands of one model input, in model order.

    ``name``: the input's name in the scene and in the model (``S2L2A``, ``image``). ``base``: the pre-trained
    modality whose facts also apply (Sentinel-2 band ids such as ``B02`` for ``BLUE``, the baseline offset,
    Sentinel-1 dB conversion, the full band order of an unnamed full-band file); None for a new modality.
    """

    name: str
    bands: tuple[str, ...]
    base: str | None = None

    @property
    def num_channels(self) -> int:
        return len(self.bands)

    def band_ids(self) -> tuple[str | None, ...]:
        """Per layout band, the base modality's id of a band of the same name (``BLUE`` -> ``B02``), else None."""
        if self.base is None:
            return tuple(None for _ in self.bands)
        base = MODALITIES[self.base]
        ids = dict(zip(base.bands, base.band_ids)) if base.band_ids else {}
        return tuple(ids.get(b) for b in self.bands)

    def lookup(self) -> dict[str, int]:
        """Upper-case band name or id -> position in the layout."""
        index = {}
        for i, (band, band_id) in enumerate(zip(self.bands, self.band_ids())):
            index.setdefault(band.upper(), i)
            if band_id:
                index.setdefault(band_id, i)
        if self.base == "DEM" and "DEM" in index:  # what elevation files call their band
            index.update({"ELEVATION": index["DEM"], "HEIGHT": index["DEM"]})
        return index

    def base_positions(self) -> tuple[int, ...] | None:
        """Position of each layout band in the base modality's full band order; None if a band is not among them.
        Lets an unnamed file holding all the base bands feed a band subset."""
        if self.base is None:
            return None
        bands = MODALITIES[self.base].bands
        if not all(b in bands for b in self.bands):
            return None
        return tuple(bands.index(b) for b in self.bands)


def pretrained_layout(name: str) -> BandLayout:
    """The full band layout of a pre-trained modality (canonical ``name``)."""
    return BandLayout(name, MODALITIES[name].bands, name)
