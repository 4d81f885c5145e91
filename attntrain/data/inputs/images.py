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
    """(N,H,W) or (N,K,H,W) images (K channels) -> (N, R*C, K*P*P) patch vectors, grid row-major.

    Each patch is flattened channel-major then row-major; with P=1 a vector is one pixel's K values.
    """
    if images.dim() == 3:
        images = images[:, None]  # (N,1,H,W)
    if images.dim() != 4:
        raise ValueError(f"patchify expects (N,H,W) or (N,K,H,W) images, got shape {tuple(images.shape)}")
    N, K, H, W = images.shape
    R, C = grid_shape(H, W, patch)
    x = images.reshape(N, K, R, patch, C, patch)  # (N,K,R,P,C,P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (N,R,C,K,P,P)
    return x.reshape(N, R * C, K * patch * patch)  # (N,R*C,K*P*P)


def read_image(path, size: tuple[int, int] = (28, 28), *, channels: int | None = None) -> torch.Tensor:
    """Read an image (a file path or a PIL image) as float32 in [0,1], resized to size=(H,W) if needed.

    channels None: grayscale (H,W) (MNIST-style callers); 1 or 3: (C,H,W) grayscale or RGB; 0: the
    image's own mode decides (grayscale stays 1 channel, anything else becomes RGB).
    """
    x = torch.from_numpy(read_image_bytes(path, size, channels=channels).astype(np.float32) / 255.0)
    if channels is None:
        return x  # (H,W)
    return x[None] if x.dim() == 2 else x.permute(2, 0, 1).contiguous()  # (C,H,W)


def read_image_bytes(path, size: tuple[int, int] = (28, 28), *, channels: int | None = None) -> np.ndarray:
    """The 8-bit pixels `read_image` scales to [0,1]: uint8 (H,W) grayscale or (H,W,3) RGB, after any resize
    (Pillow resizes 8-bit images in 8 bits, so these bytes are all an image file's pixels hold)."""
    from PIL import Image, ImageOps  # only needed for image files, not for IDX data

    height, width = size
    name = getattr(path, "filename", None) or str(path)
    try:
        image = path if isinstance(path, Image.Image) else Image.open(Path(path))
        with image:
            image = ImageOps.exif_transpose(image)  # honour camera orientation
            gray = channels is None or channels == 1 or (channels == 0 and image.mode in ("L", "1", "I;16", "I", "F"))
            image = image.convert("L" if gray else "RGB")
            if image.size != (width, height):  # Pillow sizes are (width, height)
                image = image.resize((width, height), Image.Resampling.LANCZOS)
            return np.array(image, dtype=np.uint8)  # (H,W) or (H,W,3), writable
    except (OSError, Image.DecompressionBombError) as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else str(e)
        raise UserError(f"{name}: not a readable image ({reason})") from None
