"""Test products built from published metadata: the metadata files are copied as published (shared/data/products),
the band rasters they name are written small, cut from the shipped samples, in the format the metadata states."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PRODUCTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "products"
S2_SAFE = {
    "L2A": PRODUCTS / "sentinel2-safe/gdal/fake_l2a_processing_baseline_5_09/"
                      "S2B_MSIL2A_20230823T095559_N0509_R122_T34UCF_20230823T124759.SAFE",
    "L1C": PRODUCTS / "sentinel2-safe/gdal/fake_l1c_processing_baseline_5_09/"
                      "S2B_MSIL1C_20230823T095559_N0509_R122_T34UCF_20230823T120234.SAFE",
}
L2A_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
NATIVE = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20,
          "B12": 20, "B01": 60, "B09": 60, "B10": 60, "SCL": 20}
SIZE_10M = 60  # px of the 10 m bands: 600 m, a whole number of 20 m and 60 m pixels


def sample_dn(size: int = SIZE_10M) -> dict[str, np.ndarray]:
    """Digital numbers per band at 10 m, cut from the TerraMind S2L2A sample (uint16), shifted by +1000 as a
    baseline >= 04.00 product stores them (so DN - 1000 is the sample's reflectance x 10000)."""
    with rasterio.open(SAMPLES / "terramind/282D_485L_3_3_S2L2A.tif") as src:
        data = src.read(window=((0, size), (0, size))).astype(np.int64)
    bands = {band: np.clip(data[i] + 1000, 1, 65534).astype(np.uint16) for i, band in enumerate(L2A_IDS)}
    bands["B10"] = np.clip(data[L2A_IDS.index("B09")] // 4 + 1000, 1, 65534).astype(np.uint16)
    return bands


def at_resolution(array10: np.ndarray, res: int) -> np.ndarray:
    """Block mean of a 10 m array to ``res`` metres (what a coarser band's pixel holds)."""
    k = res // 10
    h, w = array10.shape
    return array10.reshape(h // k, k, w // k, k).mean(axis=(1, 3)).round().astype(array10.dtype)


def write_band(path: Path, data: np.ndarray, *, crs: str, transform: Affine, driver: str, nodata=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"QUALITY": "100", "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    if driver == "COG":
        options = {"COMPRESS": "DEFLATE"}
    with rasterio.open(path, "w", driver=driver, width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata, **options) as dst:
        dst.write(data, 1)
    return path


def build_s2_safe(tmp: Path, level: str = "L2A", scl: np.ndarray | None = None) -> tuple[Path, dict]:
    """A SAFE folder: the published metadata files plus JP2 band files at native resolution (UTM 34N, origin of
    MTD_TL.xml), cut from the sample. Returns the .SAFE folder and the 10 m DNs written per band."""
    source = S2_SAFE[level]
    safe = tmp / source.name
    shutil.copytree(source, safe)
    mtd = (safe / f"MTD_MSI{level}.xml").read_text()
    tile = next(safe.glob("GRANULE/*/MTD_TL.xml")).read_text()
    epsg = re.search(r"<HORIZONTAL_CS_CODE>(EPSG:\d+)<", tile).group(1)
    ulx = float(re.search(r"<ULX>([\d.]+)<", tile).group(1))
    uly = float(re.search(r"<ULY>([\d.]+)<", tile).group(1))
    dn = sample_dn()
    for stem in re.findall(r"<IMAGE_FILE>([^<]+)</IMAGE_FILE>", mtd):
        match = re.search(r"_(B\d[\dA]|SCL)(?:_(\d+)m)?$", stem)
        if not match:
            continue
        band = match.group(1)
        res = int(match.group(2) or NATIVE[band])
        if res != NATIVE[band]:
            continue  # the resampled copies of L2A are not needed
        if band == "SCL":
            data = scl if scl is not None else np.full((SIZE_10M * 10 // res,) * 2, 4, np.uint8)
        else:
            data = at_resolution(dn[band], res)
        write_band(safe / f"{stem}.jp2", data, crs=epsg, transform=Affine(res, 0, ulx, 0, -res, uly),
                   driver="JP2OpenJPEG", nodata=None if band == "SCL" else 0)
    return safe, dn


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip a .SAFE folder as ESA distributes it (the .SAFE folder at the top of the archive)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return archive


STAC = PRODUCTS / "stac"


def _asset_grid(item: dict, asset: dict) -> tuple[str, Affine] | None:
    """CRS and transform an asset's metadata states (asset-level proj:*, else the item's)."""
    props = item["properties"]
    code = asset.get("proj:code") or props.get("proj:code")
    epsg = asset.get("proj:epsg") or props.get("proj:epsg")
    crs = code or (f"EPSG:{epsg}" if epsg else None)
    transform = asset.get("proj:transform") or props.get("proj:transform")
    if crs is None or transform is None:
        return None
    return crs, Affine(*transform[:6])


def write_stac_assets(item: dict, served: Path, href_prefix: str, bands: dict[str, np.ndarray], *,
                      driver: str = "COG") -> dict[str, Path]:
    """Write small rasters for the single-band data assets of ``item`` whose href starts with ``href_prefix``, at
    the place the href names under ``served`` (the URL's host and path as folders), on the grid proj:* states.
    ``bands`` maps band ids (B04, VV, DEM) to 10 m-equivalent arrays. Returns asset key -> written file."""
    written = {}
    for key, asset in item["assets"].items():
        names = [b.get("name") for b in asset.get("eo:bands", [])]
        band = names[0] if len(names) == 1 and names[0] in bands else (key.upper() if key.upper() in bands else None)
        if band is None or not asset["href"].startswith(href_prefix) or "data" not in asset.get("roles", ["data"]):
            continue
        grid = _asset_grid(item, asset)
        crs, transform = grid
        res = abs(transform.a)
        data = bands[band]
        if band.startswith("B") and res > 10:
            data = at_resolution(data, int(res))  # a 20/60 m Sentinel-2 band
        target = served / asset["href"].split("://", 1)[1]
        ext_driver = "JP2OpenJPEG" if target.suffix == ".jp2" else driver
        write_band(target, data, crs=crs, transform=transform, driver=ext_driver,
                   nodata=(asset.get("raster:bands") or [{}])[0].get("nodata", 0))
        written[key] = target
    return written


S1_SAFE = (PRODUCTS / "sentinel1-safe/xarray-sentinel"
           / "S1B_IW_GRDH_1SDV_20210401T052623_20210401T052648_026269_032297_ECC8.SAFE")


def _geolocation_gcps(annotation: str, width: int, height: int):
    """The annotation's geolocation grid as GCPs of a ``width`` x ``height`` stand-in of the full measurement."""
    from rasterio.control import GroundControlPoint

    samples = int(re.search(r"<numberOfSamples>(\d+)<", annotation).group(1))
    lines = int(re.search(r"<numberOfLines>(\d+)<", annotation).group(1))
    points = re.findall(r"<line>(\d+)</line>\s*<pixel>(\d+)</pixel>\s*<latitude>([^<]+)</latitude>\s*"
                        r"<longitude>([^<]+)</longitude>\s*<height>([^<]+)</height>", annotation)
    return [GroundControlPoint(row=int(line) * height / lines, col=int(pixel) * width / samples, x=float(lon),
                               y=float(lat), z=float(h)) for line, pixel, lat, lon, h in points]


def calibration_xml(sigma_nought: float, spread: float = 0.0) -> str:
    """A calibration annotation in ESA's layout (generated: the published one was not copied), with sigmaNought
    varying linearly by ``spread`` across range around ``sigma_nought``."""
    values = " ".join(f"{sigma_nought + spread * (i / 9 - 0.5):.6e}" for i in range(10))
    vector = ("<calibrationVector><azimuthTime>2021-04-01T05:26:23</azimuthTime><line>{line}</line>"
              "<pixel count=\"10\">0 2865 5730 8596 11461 14326 17192 20057 22922 25787</pixel>"
              f"<sigmaNought count=\"10\">{values}</sigmaNought><betaNought count=\"10\">{values}</betaNought>"
              f"<gamma count=\"10\">{values}</gamma><dn count=\"10\">{values}</dn></calibrationVector>")
    vectors = "".join(vector.format(line=line) for line in (0, 8000, 16684))
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><calibration><adsHeader><polarisation>VV</polarisation>"
            f"</adsHeader><calibrationVectorList count=\"3\">{vectors}</calibrationVectorList></calibration>")


def build_s1_safe(tmp: Path, dn: dict[str, int], sigma_nought: float, *, size=(48, 64)) -> Path:
    """A GRD SAFE folder: the published manifest and VV annotation; generated GCP-georeferenced measurement
    GeoTIFFs (uint16, constant amplitude ``dn[pol]``, ``size`` = (lines, samples)) and calibration annotations."""
    safe = tmp / S1_SAFE.name
    shutil.copytree(S1_SAFE, safe)
    annotation = next((safe / "annotation").glob("*.xml")).read_text()
    manifest = (safe / "manifest.safe").read_text()
    height, width = size
    gcps = _geolocation_gcps(annotation, width, height)
    for href in re.findall(r'href="\./(measurement/[^"]+\.tiff)"', manifest):
        pol = re.search(r"-(vv|vh)-", href).group(1).upper()
        target = safe / href
        target.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(target, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                           gcps=gcps, crs="EPSG:4326") as dst:
            dst.write(np.full((1, height, width), dn[pol], np.uint16))
        calibration = safe / "annotation/calibration" / f"calibration-{target.stem}.xml"
        calibration.parent.mkdir(parents=True, exist_ok=True)
        calibration.write_text(calibration_xml(sigma_nought))
    return safe
