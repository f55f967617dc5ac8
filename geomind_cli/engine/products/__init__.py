"""Products as users download them, turned into resolved sources: Sentinel-2 SAFE (folder or zip), Sentinel-1 SAFE,
STAC items and item collections (JSON files or URLs).

Each reader finds the band files (or assets) of the modality, at their native resolutions, and states how their
raw values become physical ones (:class:`~geomind_cli.engine.sources.FileBands`), reading the product's own
metadata; the engine then aligns them on one grid like any other file.
"""

from __future__ import annotations

from geomind_cli.engine.products.detect import product_kind
from geomind_cli.engine.sources import ReadOptions, ResolvedSource, SourceSpec


def open_product(spec: SourceSpec, options: ReadOptions, *, categorical: set[str]) -> list[ResolvedSource] | None:
    """The resolved sources of a product input; None when ``spec`` names plain raster files."""
    if len(spec.paths) != 1:
        return None
    kind = product_kind(spec.paths[0])
    if kind is None:
        return None
    if kind == "s2-safe":
        from geomind_cli.engine.products.sentinel2_safe import open_sentinel2_safe

        return [open_sentinel2_safe(spec, options)]
    if kind == "s1-safe":
        from geomind_cli.engine.products.sentinel1_safe import open_sentinel1_safe

        return [open_sentinel1_safe(spec, options)]
    from geomind_cli.engine.products.stac import open_stac

    return open_stac(spec, options, categorical=categorical)


def product_modality(path: str) -> str | None:
    """The modality a product holds, from its metadata only (no band read); None for plain files."""
    kind = product_kind(path)
    if kind is None:
        return None
    if kind == "s2-safe":
        from geomind_cli.engine.products.sentinel2_safe import safe_modality

        return safe_modality(path)
    if kind == "s1-safe":
        return "S1GRD"
    from geomind_cli.engine.products.stac import stac_modality

    return stac_modality(path)
