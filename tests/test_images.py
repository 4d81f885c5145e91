"""Image input: IDX reading on real MNIST, its errors, patches, image files, 2-D positions."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from attntrain.data.inputs.images import grid_shape, patchify, read_idx, read_image
from attntrain.model.positional import sinusoid_table_2d
from attntrain.errors import UserError
from tests.conftest import shared_data

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # from the dataset README


@pytest.fixture(scope="module")
def mnist_test():
    folder = shared_data() / "mnist"
    return read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """A plain IDX file written by hand: 00 00, type code, ndim, big-endian uint32 sizes, data."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def test_real_t10k_files_match_the_readme(mnist_test):
    images, labels = mnist_test
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.uint8
    assert torch.bincount(labels.long(), minlength=10).tolist() == TEST_COUNTS
    assert images.max() == 255 and images.min() == 0


def test_plain_and_gzipped_slices_read_back_equal(mnist_test, tmp_path):
    images, labels = mnist_test
    head = images[:100].numpy()
    plain = tmp_path / "head-images-idx3-ubyte"
    plain.write_bytes(idx_bytes(head))
    zipped = tmp_path / "head-images.idx"  # no .gz suffix: detected by the gzip magic bytes
    zipped.write_bytes(gzip.compress(idx_bytes(head)))
    assert torch.equal(read_idx(plain), images[:100])
    assert torch.equal(read_idx(zipped), images[:100])
    label_file = tmp_path / "head-labels-idx1-ubyte"
    label_file.write_bytes(idx_bytes(labels[:100].numpy()))
    assert torch.equal(read_idx(label_file), labels[:100])


@pytest.mark.parametrize("code, dtype", [(0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")])
def test_other_idx_types_are_big_endian(tmp_path, code, dtype):
    values = np.array([[-3, 0, 7], [100, -128, 5]], dtype=dtype)
    path = tmp_path / "v.idx"
    path.write_bytes(idx_bytes(values, code))
    out = read_idx(path)
    assert out.shape == (2, 3)
    assert out.tolist() == values.astype(dtype.replace(">", "=")).tolist()


def test_idx_errors_name_the_file(tmp_path):
    real = gzip.decompress((shared_data() / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    cases = {
        "missing.idx": (None, "no such file"),
        "magic.idx": (b"\x01\x00" + real[2:], "not an IDX file"),
        "cut.idx": (real[:5000], "truncated: expected 10000 bytes of data, found 4992"),
        "code.idx": (real[:2] + b"\x07" + real[3:], "unknown IDX dtype code 0x07"),
        "bad.gz": (gzip.compress(real)[:300], "corrupt gzip"),
        "garbled.gz": (gzip.compress(real)[:20] + b"\xff" * 200, "corrupt gzip"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(UserError) as err:
            read_idx(path)
        assert name in str(err.value) and reason in str(err.value), str(err.value)


def test_patches_of_a_known_image():
    image = torch.arange(16).reshape(1, 4, 4)
    expected = [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    assert patchify(image, 2).tolist() == [expected]
    assert patchify(image, 1).tolist() == [[[v] for v in range(16)]]
    assert patchify(image, 4).tolist() == [[list(range(16))]]


@pytest.mark.parametrize("patch, count", [(7, 16), (4, 49), (1, 784), (28, 1), (14, 4)])
def test_patches_of_mnist_match_slicing_and_reassemble(mnist_test, patch, count):
    images = mnist_test[0][:8]
    out = patchify(images, patch)
    assert out.shape == (8, count, patch * patch)
    rows, cols = grid_shape(28, 28, patch)
    assert rows * cols == count
    for index in (0, count // 2, count - 1):  # reference: slice the patch out directly
        r, c = divmod(index, cols)
        window = images[:, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch]
        assert torch.equal(out[:, index], window.reshape(8, -1))
    back = out.reshape(8, rows, cols, patch, patch).permute(0, 1, 3, 2, 4).reshape(8, 28, 28)
    assert torch.equal(back, images)


@pytest.mark.parametrize("patch", [5, 3, 0])
def test_patch_that_does_not_tile_is_a_user_error(patch):
    with pytest.raises(UserError, match="data.patch") as err:
        patchify(torch.zeros(2, 28, 28), patch)
    assert patch == 0 or "28x28" in str(err.value)


def test_png_digit_reads_back_as_the_original(mnist_test, tmp_path):
    digit = mnist_test[0][0]
    path = tmp_path / "digit.png"
    Image.fromarray(digit.numpy(), mode="L").save(path)
    pixels = read_image(path)
    assert pixels.shape == (28, 28) and pixels.dtype == torch.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    assert (pixels - digit.float() / 255).abs().max() <= 1 / 255


def test_larger_color_image_is_resized_to_grayscale(mnist_test, tmp_path):
    digit = mnist_test[0][0].numpy()
    big = np.repeat(np.repeat(digit, 2, axis=0), 2, axis=1)  # 56x56, each pixel doubled
    path = tmp_path / "big.png"
    Image.fromarray(np.stack([big] * 3, axis=-1), mode="RGB").save(path)
    pixels = read_image(path)
    assert pixels.shape == (28, 28)
    assert (pixels - torch.from_numpy(digit).float() / 255).abs().mean() < 0.05
    assert read_image(path, size=(56, 40)).shape == (56, 40)


def test_non_image_is_a_user_error(tmp_path):
    text = tmp_path / "x.png"
    text.write_text("not an image\n")
    for path in (text, tmp_path / "absent.png"):
        with pytest.raises(UserError, match="not a readable image") as err:
            read_image(path)
        assert path.name in str(err.value)


def test_2d_positions_share_row_and_column_halves():
    rows, cols, width = 4, 7, 32
    table = sinusoid_table_2d(rows, cols, width)
    assert table.shape == (rows * cols, width)
    grid = table.reshape(rows, cols, width)  # (R,C,D)
    half = width // 2
    assert torch.equal(grid[:, :1, :half].expand(rows, cols, half), grid[..., :half])  # same row -> same row half
    assert torch.equal(grid[:1, :, half:].expand(rows, cols, half), grid[..., half:])  # same column -> same col half
    assert not torch.equal(grid[0, :, :half], grid[1, :, :half])
    distances = torch.cdist(table, table) + torch.eye(rows * cols) * 1e3
    assert distances.min() > 1e-3  # every patch position has its own vector


@pytest.mark.parametrize("width", [6, 30, 2])
def test_2d_positions_need_width_divisible_by_four(width):
    with pytest.raises(ValueError, match="divisible by 4"):
        sinusoid_table_2d(3, 3, width)
