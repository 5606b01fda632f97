"""Tests for robustness.training.data: IDX files, MNIST (offline copy and a local mirror), digits."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from robustness.training import data
from robustness.training.data import DataError, Dataset, read_idx, write_idx

# CI clones the repository with shared/ beside it; the files are never copied in.
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
# In CI (which lays shared/ beside the clone) a missing copy fails the tests instead of skipping them.
needs_shared = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists() and os.environ.get("CI", "").lower() not in ("1", "true"),
    reason=f"offline MNIST copy not found at {SHARED_MNIST} (clone shared/ beside the repo)",
)
# The published MNIST test-set label counts for digits 0..9.
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    data.clear_dataset_cache()
    yield
    data.clear_dataset_cache()


# ------------------------------------------------------------------ IDX, real files


@needs_shared
def test_read_idx_t10k() -> None:
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000
    assert counts.tolist() == T10K_COUNTS


@needs_shared
def test_read_idx_5k_subset() -> None:
    images = read_idx(SHARED_MNIST / "train-5k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED_MNIST / "train-5k-labels-idx1-ubyte.gz")
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [500] * 10
    assert np.all(np.diff(labels) >= 0)  # sorted by class, per the README


# ------------------------------------------------------------------ IDX round trip


def test_write_idx_bytes_by_hand(tmp_path: Path) -> None:
    write_idx(tmp_path / "a.idx", np.array([[1, 2], [3, 4]], dtype=np.uint8))
    assert (tmp_path / "a.idx").read_bytes() == bytes(
        [0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4]
    )
    write_idx(tmp_path / "b.idx", np.array([1, -2], dtype=np.int16))
    assert (tmp_path / "b.idx").read_bytes() == bytes(
        [0, 0, 0x0B, 1, 0, 0, 0, 2, 0x00, 0x01, 0xFF, 0xFE]
    )


@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64, ">i4", "<f8"]
)
def test_idx_round_trip(tmp_path: Path, dtype: str, suffix: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.integers(-100, 100, size=(3, 4, 5)) % 128).astype(dtype)
    if np.dtype(dtype).kind == "f":
        array = (rng.standard_normal((3, 4, 5)) * 1e3).astype(dtype)
    path = tmp_path / f"x{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == (3, 4, 5)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    raw = gzip.decompress(path.read_bytes()) if suffix.endswith(".gz") else path.read_bytes()
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    assert raw[:4] == bytes([0, 0, codes[back.dtype.str[1:]], 3])


def test_idx_round_trip_1d_and_scalar(tmp_path: Path) -> None:
    write_idx(tmp_path / "v.idx.gz", np.arange(7, dtype=np.int32) - 3)
    assert read_idx(tmp_path / "v.idx.gz").tolist() == [-3, -2, -1, 0, 1, 2, 3]
    write_idx(tmp_path / "s.idx", np.float64(2.5))
    assert read_idx(tmp_path / "s.idx").shape == () and read_idx(tmp_path / "s.idx") == 2.5


def test_write_idx_gzip_is_deterministic(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert md5(tmp_path / "a.gz") == md5(tmp_path / "b.gz")


def test_write_idx_rejects_int64(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        write_idx(tmp_path / "x.idx", np.arange(3))
    assert "int64" in one_line(err) and "int32" in str(err.value)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ corrupt IDX

HEADER = bytes([0, 0, 0x08, 1, 0, 0, 0, 4])


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (bytes([1, 0, 0x08, 1, 0, 0, 0, 4, 1, 2, 3, 4]), "not an IDX file"),
        (b"", "not an IDX file"),
        (bytes([0, 0, 0x0A, 1, 0, 0, 0, 4, 1, 2, 3, 4]), "unknown IDX type code 0x0A"),
        (HEADER + bytes([1, 2, 3]), "truncated IDX data"),
        (HEADER[:6], "truncated IDX header"),
        (HEADER + bytes([1, 2, 3, 4, 5, 6]), "2 trailing bytes"),
    ],
)
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_corrupt_idx(tmp_path: Path, content: bytes, expect: str, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(gzip.compress(content) if suffix.endswith(".gz") else content)
    with pytest.raises(DataError) as err:
        read_idx(path)
    message = one_line(err)
    assert str(path) in message and expect in message


def test_corrupt_gzip_and_missing_file(tmp_path: Path) -> None:
    good = gzip.compress(HEADER + bytes([1, 2, 3, 4]))
    (tmp_path / "cut.gz").write_bytes(good[:-6])  # ends before the gzip trailer
    (tmp_path / "junk.gz").write_bytes(b"this is not gzip")
    for name in ("cut.gz", "junk.gz", "missing.gz"):
        with pytest.raises(DataError) as err:
            read_idx(tmp_path / name)
        assert str(tmp_path / name) in one_line(err)


# ------------------------------------------------------------------ load_mnist


@needs_shared
def test_load_mnist_shared() -> None:
    ds = data.load_mnist(SHARED_MNIST)
    assert ds.name == "mnist-5k" and ds.num_classes == 10 and ds.input_dim == 784
    assert ds.train_x.shape == (5000, 784) and ds.test_x.shape == (10000, 784)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int64
    for x in (ds.train_x, ds.test_x):
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(ds.test_y).tolist() == T10K_COUNTS
    raw = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_allclose(ds.test_x[17], raw[17].ravel() / 255.0, rtol=1e-6)
    assert not ds.train_x.flags.writeable  # cached and shared: nobody may edit it


@needs_shared
def test_load_mnist_flipped_byte(tmp_path: Path) -> None:
    for name in [*data.KNOWN_SUBSETS, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        shutil.copyfile(SHARED_MNIST / name, tmp_path / name)
    target = tmp_path / "train-5k-labels-idx1-ubyte.gz"
    content = bytearray(target.read_bytes())
    content[40] ^= 0xFF
    target.write_bytes(bytes(content))
    with pytest.raises(DataError) as err:
        data.load_mnist(tmp_path)
    message = one_line(err)
    assert "12a57e01969d72ff608d06fba11a36a0" in message and md5(target) in message
    assert target.name in message


def write_fake_mnist(directory: Path, *, n_train: int = 20, n_test: int = 10) -> dict[str, str]:
    """Small IDX files under the published names; returns name -> md5."""
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, array in arrays.items():
        write_idx(directory / name, array)
    return {name: md5(directory / name) for name in arrays}


def test_load_mnist_prefers_full_training_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sums = write_fake_mnist(tmp_path)
    write_idx(tmp_path / "train-5k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "train-5k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    monkeypatch.setattr(data, "MNIST_FILES", sums)
    ds = data.load_mnist(tmp_path)
    assert ds.name == "mnist" and ds.train_x.shape == (20, 784) and ds.test_x.shape == (10, 784)
    assert ds.train_y.tolist() == [i % 10 for i in range(20)]


def test_load_mnist_accepts_parent_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As with $ROBUSTNESS_DATA_DIR, the files may sit in <data_dir>/mnist.
    monkeypatch.setattr(data, "MNIST_FILES", write_fake_mnist(tmp_path / "mnist"))
    assert data.load_mnist(tmp_path).test_x.shape == (10, 784)
    monkeypatch.setenv("ROBUSTNESS_DATA_DIR", str(tmp_path))
    assert data.load_mnist().train_x.shape == (20, 784)


def test_load_mnist_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTNESS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as err:
        data.load_mnist()
    message = one_line(err)
    assert str(tmp_path / "mnist") in message and "t10k-images-idx3-ubyte.gz" in message
    assert "download=True" in message


def test_load_mnist_rejects_wrong_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))  # 10 images
    with pytest.raises(DataError) as err:
        data.load_mnist(tmp_path, verify=False)
    assert "t10k-labels-idx1-ubyte.gz" in one_line(err)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROBUSTNESS_DATA_DIR", str(tmp_path / "d"))
    assert data.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("ROBUSTNESS_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.default_data_dir() == tmp_path / ".cache" / "robustness"


# ------------------------------------------------------------------ download


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A local HTTP mirror serving tmp_path/mirror: (base URL, served folder)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    served = tmp_path / "mirror"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_from_local_mirror(
    tmp_path: Path, mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = mirror
    monkeypatch.setattr(data, "MNIST_FILES", write_fake_mnist(served))
    dest = tmp_path / "dest"
    # The first mirror is down: the second one serves the files.
    assert data.download_mnist(dest, mirrors=(closed_port_url(), url), progress=True) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(data.MNIST_FILES)
    for name, expected in data.MNIST_FILES.items():
        assert md5(dest / name) == expected
    ds = data.load_mnist(dest)
    assert ds.name == "mnist" and ds.train_x.shape == (20, 784)
    # Files present are verified, not fetched again: no mirror is needed.
    data.download_mnist(dest, mirrors=(closed_port_url(),), progress=False)


def test_download_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    monkeypatch.setattr(data, "MNIST_FILES", write_fake_mnist(served))
    data.download_mnist(tmp_path / "dest", mirrors=(served.as_uri() + "/",), progress=False)
    assert data.load_mnist(tmp_path / "dest").test_x.shape == (10, 784)


def test_download_corrupt_file(
    tmp_path: Path, mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = mirror
    sums = write_fake_mnist(served)
    monkeypatch.setattr(data, "MNIST_FILES", sums)
    bad = served / "train-labels-idx1-ubyte.gz"
    content = bytearray(bad.read_bytes())
    content[-1] ^= 0x01
    bad.write_bytes(bytes(content))
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as err:
        data.download_mnist(dest, mirrors=(url,), progress=False)
    message = one_line(err)
    assert sums[bad.name] in message and md5(bad) in message and bad.name in message
    # Only the good file fetched before it remains; no partial or temporary file.
    assert [p.name for p in dest.iterdir()] == ["train-images-idx3-ubyte.gz"]


def test_download_existing_corrupt_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sums = write_fake_mnist(tmp_path)
    monkeypatch.setattr(data, "MNIST_FILES", {**sums, "t10k-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(DataError) as err:
        data.download_mnist(tmp_path, mirrors=(closed_port_url(),), progress=False)
    assert "0" * 32 in one_line(err) and sums["t10k-images-idx3-ubyte.gz"] in str(err.value)


def test_download_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = closed_port_url()
    with pytest.raises(DataError) as err:
        data.download_mnist(tmp_path, mirrors=(dead,), timeout=5.0, progress=False)
    message = one_line(err)
    assert "offline" in message and "train-images-idx3-ubyte.gz" in message
    assert dead in message and str(tmp_path) in message
    assert not list(tmp_path.iterdir())
    # load_mnist(download=True) goes through the same path, with MNIST_MIRRORS.
    monkeypatch.setattr(data, "MNIST_MIRRORS", (dead,))
    with pytest.raises(DataError, match="offline"):
        data.load_mnist(tmp_path, download=True)


def test_load_mnist_downloads_when_asked(
    tmp_path: Path, mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = mirror
    monkeypatch.setattr(data, "MNIST_FILES", write_fake_mnist(served))
    monkeypatch.setattr(data, "MNIST_MIRRORS", (url,))
    assert data.load_mnist(tmp_path / "new", download=True).name == "mnist"


# ------------------------------------------------------------------ digits, load_dataset


def test_load_digits() -> None:
    from sklearn.datasets import load_digits as sk_load_digits

    ds = data.load_digits()
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_dim == 64
    assert ds.train_x.shape == (1347, 64) and ds.test_x.shape == (450, 64)
    assert ds.train_x.dtype == np.float32 and ds.test_y.dtype == np.int64
    assert ds.train_x.min() == 0.0 and ds.train_x.max() == 1.0
    again = data.load_digits()
    np.testing.assert_array_equal(ds.train_x, again.train_x)
    np.testing.assert_array_equal(ds.test_y, again.test_y)
    # Stratified: each class's test share is a quarter of it, up to rounding.
    total = np.bincount(sk_load_digits().target, minlength=10)
    test = np.bincount(ds.test_y, minlength=10)
    assert (np.bincount(ds.train_y, minlength=10) + test).tolist() == total.tolist()
    assert np.all(np.abs(test - 0.25 * total) <= 1)


def test_digits_split_is_scikit_learns_index_for_index() -> None:
    """The loader reads the file without importing scikit-learn; the split must stay its split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)
    train_x, test_x, train_y, test_y = train_test_split(x, bunch.target, test_size=0.25, stratify=bunch.target,
                                                        random_state=0)
    ds = data.load_digits()
    np.testing.assert_array_equal(ds.train_x, train_x)
    np.testing.assert_array_equal(ds.test_x, test_x)
    np.testing.assert_array_equal(ds.train_y, train_y)
    np.testing.assert_array_equal(ds.test_y, test_y)
    # Other labels, seeds and ties between class remainders: the same indices too.
    rng = np.random.default_rng(5)
    for seed, n, classes in ((0, 101, 3), (7, 250, 7), (42, 64, 4)):
        y = rng.integers(0, classes, n)
        y[:2 * classes] = np.repeat(np.arange(classes), 2)  # every class at least twice
        n_test = int(np.ceil(0.3 * n))
        idx = np.arange(n)
        sk_train, sk_test = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
        train, test = data.stratified_split(y, n_test=n_test, seed=seed)
        assert train.tolist() == sk_train.tolist() and test.tolist() == sk_test.tolist()


def test_loading_digits_does_not_import_scikit_learn() -> None:
    code = ("import sys; from robustness.training.data import load_digits; load_digits(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_dataset() -> None:
    digits = data.load_dataset("digits")
    assert data.load_dataset(" Digits ") is digits  # cached in-process
    with pytest.raises(DataError) as err:
        data.load_dataset("cifar10")
    message = one_line(err)
    assert "cifar10" in message and "digits" in message and "mnist" in message


@needs_shared
def test_load_dataset_mnist() -> None:
    ds = data.load_dataset("mnist", data_dir=SHARED_MNIST)
    assert ds.name == "mnist-5k" and ds.input_dim == 784
    assert data.load_dataset("mnist", data_dir=str(SHARED_MNIST)) is ds


def test_dataset_checks_shapes() -> None:
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(DataError, match=r"train_y int64 \(2,\)"):
        Dataset("t", x, np.zeros(2, np.int64), x, np.zeros(3, np.int64), num_classes=2)
    with pytest.raises(DataError, match="float32"):
        Dataset("t", x.astype(np.float64), np.zeros(3, np.int64), x, np.zeros(3, np.int64), 2)
