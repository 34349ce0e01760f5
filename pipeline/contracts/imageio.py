"""Images at the edges: decoding (rasterio for GeoTIFF, OpenCV otherwise) and PNG writes (atomic, through
contracts/fileio.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.contracts.fileio import atomic_write_bytes
from pipeline.contracts.records import Georef

GEOTIFF_SUFFIXES = {".tif", ".tiff"}


def read_image(path: Path) -> tuple[np.ndarray, Georef | None]:
    """Decode an image to RGB uint8 (H, W, 3); GeoTIFFs keep their CRS and transform."""
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        return _read_geotiff(path)
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise OSError(f"{path}: cannot decode image (missing, empty or not an image)")
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB), None


def _read_geotiff(path: Path) -> tuple[np.ndarray, Georef | None]:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            bands = min(src.count, 3)
            arr = src.read(list(range(1, bands + 1)))
            crs = src.crs.to_wkt() if src.crs else None
            t = src.transform
            georef = Georef(crs, (t.a, t.b, t.c, t.d, t.e, t.f)) if (crs or not t.is_identity) else None
    except RasterioIOError as exc:
        raise OSError(f"{path}: cannot decode GeoTIFF: {exc}") from exc
    arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    if bands == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr), georef


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Stretch 16-bit or float imagery to 8 bits (2nd-98th percentile) for patches and prompts."""
    lo, hi = np.percentile(arr, (2, 98))
    scaled = (arr.astype(np.float32) - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def read_id_mask(path: Path) -> np.ndarray:
    """iSAID instance-id PNG -> int32 ids (R + 256 G + 65536 B, 0 background)."""
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise OSError(f"{path}: cannot decode instance-id PNG")
    b, g, r = (data[..., i].astype(np.int32) for i in range(3))
    return r + 256 * g + 65536 * b


def read_color_mask(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise OSError(f"{path}: cannot decode class-colour PNG")
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) without decoding pixels where the format allows."""
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        import rasterio

        with rasterio.open(path) as src:
            return src.width, src.height
    arr, _ = read_image(path)
    return arr.shape[1], arr.shape[0]


def write_png(path: Path, rgb: np.ndarray, compression: int = 1) -> dict:
    """Atomic PNG write without a per-file fsync (the caller syncs a batch with `sync_outputs`); returns the
    file's {"size", "sha256"} for the manifest that names it.

    The UP filter encodes 20-25% faster than libpng's adaptive choice at about the same size, on real
    aerial patches and on the synthetic ones alike; encoding is most of the planning time.
    """
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    return atomic_write_bytes(path, buf.tobytes(), fsync=False)
