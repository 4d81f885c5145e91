"""Images as sequences: IDX files (MNIST) and single image files -> pixels -> patch vectors.

# N images, H height, W width, P patch side, R/C patch grid rows/columns, D model width

A self-attention model sees an image as a sequence of non-overlapping P x P patches read in
row-major order of the patch grid; `attntrain.model.positional.sinusoid_table_2d` tells it where
each patch sits.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from attntrain.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
# IDX type code -> big-endian element type (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (whatever the suffix)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: corrupt gzip data ({e})") from None


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (plain or gzip'd) into a tensor shaped by its header; uint8 stays uint8."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise UserError(f"{path}: not an IDX file (only {len(raw)} bytes, shorter than the 4-byte magic)")
    if raw[:2] != b"\x00\x00":
        raise UserError(f"{path}: not an IDX file (expected magic bytes 00 00, found {raw[:2].hex(' ')})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise UserError(f"{path}: unknown IDX dtype code 0x{code:02X} (valid: {valid})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated: header declares {ndim} dimensions but the file has {len(raw)} bytes")
    dims = [int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)]
    dtype = IDX_DTYPES[code]
    expected, found = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize, len(raw) - header
    if found < expected:
        raise UserError(f"{path}: truncated: expected {expected} bytes of data, found {found}")
    if found > expected:
        raise UserError(f"{path}: expected {expected} bytes of data after the header, found {found} (trailing bytes)")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return torch.from_numpy(data.astype(dtype.newbyteorder("=")))  # the copy is native-endian and writable


def grid_shape(height: int, width: int, patch: int) -> tuple[int, int]:
    """(rows, cols) of the patch grid; a patch side that does not tile the image is a UserError."""
    if patch < 1:
        raise UserError(f"data.patch must be a positive integer, got {patch}")
    if height % patch or width % patch:
        raise UserError(f"data.patch={patch} does not divide the image size {height}x{width}")
    return height // patch, width // patch


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(N,H,W) images -> (N, R*C, P*P) patch vectors, grid row-major, each patch flattened row-major."""
    if images.dim() != 3:
        raise ValueError(f"patchify expects (N,H,W) images, got shape {tuple(images.shape)}")
    N, H, W = images.shape
    R, C = grid_shape(H, W, patch)
    x = images.reshape(N, R, patch, C, patch)  # (N,R,P,C,P)
    x = x.permute(0, 1, 3, 2, 4)  # (N,R,C,P,P)
    return x.reshape(N, R * C, patch * patch)  # (N,R*C,P*P)


def read_image(path: str | Path, size: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """Read an image file as grayscale (H,W) float32 in [0,1], resized to size=(H,W) if needed."""
    from PIL import Image, ImageOps  # only needed for single-image input, not for IDX data

    path = Path(path)
    height, width = size
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("L")  # honour camera orientation
            if image.size != (width, height):  # Pillow sizes are (width, height)
                image = image.resize((width, height), Image.Resampling.LANCZOS)
    except (OSError, Image.DecompressionBombError) as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else str(e)
        raise UserError(f"{path}: not a readable image ({reason})") from None
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H,W)
    return torch.from_numpy(pixels)
