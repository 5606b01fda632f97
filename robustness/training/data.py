"""Data sets: the IDX reader and writer, MNIST (download and load), and UCI digits.

Every loader returns a :class:`Dataset` of numpy arrays: inputs ``x`` of shape
``(n, d)``, float32, scaled to [0, 1], and labels ``y`` of shape ``(n,)``, int64.
The trainer converts them to torch; this module does not import torch.

MNIST is read from the published IDX files (LeCun, Cortes and Burges), checked
against their md5 sums. Where only the offline 5,000-image training subset is
present it is used instead, and the data set is named ``"mnist-5k"``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from robustness.errors import RobustnessError

__all__ = [
    "KNOWN_SUBSETS", "MNIST_FILES", "MNIST_MIRRORS", "DataError", "Dataset",
    "clear_dataset_cache", "default_data_dir", "download_mnist", "load_dataset",
    "load_digits", "load_mnist", "read_idx", "stratified_split", "write_idx",
]


class DataError(RobustnessError):
    """A data file is missing, corrupt, or cannot be fetched (the message is one line)."""


# Published file name -> md5 of the gzip file.
MNIST_FILES: Mapping[str, str] = MappingProxyType({
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
})
# The offline subset: 5,000 real training images, 500 per class, sorted by class.
KNOWN_SUBSETS: Mapping[str, str] = MappingProxyType({
    "train-5k-images-idx3-ubyte.gz": "81edc6ee08338daf429913bd1a71a8ff",
    "train-5k-labels-idx1-ubyte.gz": "12a57e01969d72ff608d06fba11a36a0",
})
# yann.lecun.com itself now refuses most downloads, so only the mirrors are listed.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
_TRAIN_5K = ("train-5k-images-idx3-ubyte.gz", "train-5k-labels-idx1-ubyte.gz")
_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# IDX type code -> big-endian numpy dtype (the IDX spec fixes the byte order).
_IDX_DTYPES: Mapping[int, np.dtype] = MappingProxyType({
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
})
_CHUNK = 1 << 16


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set split into train and test.

    ``train_x``: ``(n_train, d)`` float32 in [0, 1]; ``train_y``: ``(n_train,)`` int64
    in ``[0, num_classes)``; ``test_x``: ``(n_test, d)``; ``test_y``: ``(n_test,)``.
    The arrays are made read-only, because loaded data sets are cached and shared by
    every caller in the process. ``eq=False``: comparing arrays has no single truth value.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        arrays = {f: getattr(self, f) for f in ("train_x", "train_y", "test_x", "test_y")}
        xs, ys = (self.train_x, self.test_x), (self.train_y, self.test_y)
        ok = all(x.dtype == np.float32 and x.ndim == 2 for x in xs)
        ok = ok and all(y.dtype == np.int64 and y.ndim == 1 for y in ys)
        # Short-circuits: shapes are compared only once the ranks are known to be right.
        if not (ok and [len(x) for x in xs] == [len(y) for y in ys]
                and xs[0].shape[1] == xs[1].shape[1]):
            got = ", ".join(f"{f} {a.dtype} {a.shape}" for f, a in arrays.items())
            raise DataError(
                f"data set {self.name!r} needs x float32 (n, d) with n int64 labels y and "
                f"the same d in train and test, got {got}"
            )
        for array in arrays.values():
            array.flags.writeable = False

    @property
    def input_dim(self) -> int:
        """The number of features ``d`` of one flattened input."""
        return int(self.train_x.shape[1])


def _read_bytes(path: Path) -> bytes:
    """The file's contents, decompressed when its name ends in ``.gz``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as e:
        # A truncated download ends the gzip stream early (EOFError); a damaged one
        # fails its CRC or inflate (OSError / zlib.error).
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot read ({reason}); check it or download it again") from None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``).

    Returns an array of the shape stored in the header, e.g. ``(n, 28, 28)`` uint8 for
    MNIST images and ``(n,)`` uint8 for labels, in native byte order and writable.
    Raises :class:`DataError` naming the file on a bad magic number, an unknown type
    code, truncated data or trailing bytes.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (first bytes {data[:4].hex(' ') or 'missing'}, "
            "expected 00 00 <type> <dims>); the file is corrupt or in another format"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{path}: truncated IDX header ({len(data)}/{start} bytes); re-download it")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    # Python ints: a corrupt header must not overflow before we compare sizes.
    expected = dtype.itemsize * int(np.prod(shape, dtype=object))
    found = len(data) - start
    if found != expected:
        what = "truncated IDX data" if found < expected else f"{found - expected} trailing bytes"
        raise DataError(
            f"{path}: {what} (shape {shape} of {dtype.newbyteorder('=')} needs {expected} "
            f"bytes, found {found}); the file is corrupt, download it again"
        )
    array = np.frombuffer(data, dtype=dtype, offset=start).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # copies: writable, native order


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` (any shape, up to 255 dims) as an IDX file; gzip when ``.gz``.

    The dtype must be one IDX can hold: uint8, int8, int16, int32, float32 or float64.
    The gzip header carries no time stamp, so equal arrays give byte-identical files
    (and equal md5 sums). The file is written to a temporary name and renamed into
    place, so a reader never sees half a file.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(
            f"{path}: IDX cannot hold dtype {array.dtype}; cast to one of "
            "uint8, int8, int16, int32, float32, float64"
        )
    if array.ndim > 255 or any(s >= 2**32 for s in array.shape):
        raise DataError(f"{path}: IDX cannot hold shape {array.shape} (<= 255 dims of < 2**32)")
    header = bytes([0, 0, codes[native], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[codes[native]]).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: str) -> None:
    got = _md5(path)
    if got != expected:
        raise DataError(
            f"{path}: md5 is {got}, expected {expected}; the file is corrupt or not the "
            "published one: delete it and download it again"
        )


def default_data_dir() -> Path:
    """``$ROBUSTNESS_DATA_DIR`` if set, else ``~/.cache/robustness`` (MNIST: ``<dir>/mnist``)."""
    env = os.environ.get("ROBUSTNESS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "robustness"


def _fetch(url: str, dest: Path, *, timeout: float, progress: bool) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file in ``dest``; return (temp path, md5)."""
    from tqdm import tqdm  # only needed while downloading

    # A fresh opener reads the proxy settings of the environment as it is now.
    opener = urllib.request.build_opener()
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=".download-", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, opener.open(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            with tqdm(
                total=int(total) if total else None, unit="B", unit_scale=True,
                desc=url.rsplit("/", 1)[-1], disable=not progress, leave=False,
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _download_one(
    name: str, expected: str, dest: Path, *, mirrors: Sequence[str], timeout: float,
    progress: bool,
) -> None:
    """Fetch ``name`` from the first mirror that serves it with the right md5."""
    failures: list[str] = []
    mismatch = ""
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            tmp, got = _fetch(url, dest, timeout=timeout, progress=progress)
        except (OSError, http.client.HTTPException) as e:
            # URLError wraps the socket error; HTTPError's own text ("HTTP Error 404") is clearer.
            cause = e.reason if type(e) is urllib.error.URLError else e
            failures.append(f"{url}: {' '.join(str(cause).split()) or type(e).__name__}")
            continue
        if got == expected:
            os.replace(tmp, dest / name)  # atomic: dest never holds half a file
            return
        tmp.unlink()
        mismatch = f"{url}: md5 of the download is {got}, expected {expected}"
    if mismatch:
        raise DataError(f"checksum mismatch for {name} ({mismatch}); nothing was saved in {dest}")
    raise DataError(
        f"could not download {name} from any mirror ({'; '.join(failures)}); you seem "
        f"to be offline: put the files in {dest} or set ROBUSTNESS_DATA_DIR / --data-dir"
    )


def download_mnist(
    dest_dir: str | os.PathLike[str], *, mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0, progress: bool = True,
) -> Path:
    """Download the MNIST files missing from ``dest_dir``; return ``dest_dir``.

    Files already there are checked against their md5 instead of fetched again. Each
    download goes to a temporary file in ``dest_dir`` and is renamed into place only
    when its md5 matches, so an interrupted or corrupt download leaves nothing behind.
    """
    dest = Path(dest_dir).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {dest} ({e.strerror}); choose another data dir") from None
    for name, expected in MNIST_FILES.items():
        if (dest / name).exists():
            _verify(dest / name, expected)
        else:
            _download_one(name, expected, dest, mirrors=mirrors, timeout=timeout, progress=progress)
    return dest


def _mnist_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The folder holding the .gz files: ``data_dir`` itself, or its ``mnist`` child."""
    if data_dir is None:
        return default_data_dir() / "mnist"
    directory = Path(data_dir).expanduser()
    # Accept the parent too, as in $ROBUSTNESS_DATA_DIR, when the files sit in mnist/.
    names = {*MNIST_FILES, *KNOWN_SUBSETS}
    if not any((directory / n).exists() for n in names) and (directory / "mnist").is_dir():
        return directory / "mnist"
    return directory


def _pick_files(directory: Path) -> tuple[str, tuple[str, str]] | None:
    """(data set name, training file pair), or None when a needed file is missing."""
    def present(names: tuple[str, ...]) -> bool:
        return all((directory / n).exists() for n in names)

    if present(_TEST) and (present(_TRAIN) or present(_TRAIN_5K)):
        return ("mnist", _TRAIN) if present(_TRAIN) else ("mnist-5k", _TRAIN_5K)
    return None


def _read_split(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """``x`` of shape ``(n, 784)`` float32 in [0, 1] and ``y`` of shape ``(n,)`` int64."""
    x, y = read_idx(images), read_idx(labels)
    if x.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"{images.parent}: {images.name} ({x.dtype} {x.shape}) and {labels.name} "
            f"({y.dtype} {y.shape}) are not MNIST images (n, 28, 28) uint8 with n labels"
        )
    if y.size and not 0 <= int(y.min()) <= int(y.max()) <= 9:
        raise DataError(f"{labels}: labels must lie in 0..9, found {y.min()}..{y.max()}")
    # uint8 / 255 in float32 is exact enough and halves memory against float64.
    flat = x.reshape(x.shape[0], -1).astype(np.float32) / np.float32(255.0)
    return flat, y.astype(np.int64)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False,
    verify: bool = True,
) -> Dataset:
    """Load MNIST: train ``(60000, 784)`` (5k subset: ``(5000, 784)``), test ``(10000, 784)``.

    Looks in ``data_dir`` (the folder holding the .gz files) or ``default_data_dir() /
    "mnist"``. The full training files win over the 5k subset (named ``"mnist-5k"``).
    With ``verify`` every file's md5 is checked against the published one.
    """
    directory = _mnist_dir(data_dir)
    picked = _pick_files(directory)
    if picked is None and download:
        # Read MNIST_MIRRORS now, not at import, so it can be repointed.
        download_mnist(directory, mirrors=MNIST_MIRRORS)
        picked = _pick_files(directory)
    if picked is None:
        missing = [n for n in (*_TEST, *_TRAIN) if not (directory / n).exists()]
        raise DataError(
            f"MNIST files missing in {directory}: {', '.join(missing)} (or the 5k subset "
            "train-5k-*); pass download=True (--download), put the files there, or set "
            "ROBUSTNESS_DATA_DIR / --data-dir"
        )
    name, train = picked
    if verify:
        sums = {**MNIST_FILES, **KNOWN_SUBSETS}
        for n in (*train, *_TEST):
            _verify(directory / n, sums[n])
    train_x, train_y = _read_split(directory / train[0], directory / train[1])
    test_x, test_y = _read_split(directory / _TEST[0], directory / _TEST[1])
    return Dataset(name, train_x, train_y, test_x, test_y, num_classes=10)


def load_digits() -> Dataset:
    """UCI handwritten digits as shipped in scikit-learn: 1797 8x8 images, no download.

    A fixed stratified split (75/25, ``random_state=0``) gives train ``(1347, 64)`` and
    test ``(450, 64)``; pixels (0..16) are divided by 16. The split is scikit-learn's
    ``train_test_split(..., stratify=y, random_state=0)``, index for index.
    """
    # The file scikit-learn ships, read without importing scikit-learn: that import takes
    # 1.2-1.4 s, paid by the sweep's driver and again by every Ray worker that trains.
    data = np.loadtxt(_sklearn_file("datasets", "data", "digits.csv.gz"), delimiter=",")
    x = np.asarray(data[:, :-1], dtype=np.float32) / np.float32(16.0)  # pixels are 0..16
    y = data[:, -1].astype(np.int64)
    train, test = stratified_split(y, n_test=math.ceil(0.25 * len(y)), seed=0)
    return Dataset("digits", x[train], y[train], x[test], y[test], num_classes=10)


def _sklearn_file(*parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits data set ships with scikit-learn: pip install scikit-learn")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def stratified_split(y: np.ndarray, *, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices as scikit-learn's ``StratifiedShuffleSplit`` draws its first split.

    Every class gets its share of the test set (ties broken at random), each class's
    members are permuted, and both index lists are shuffled, all from one
    ``RandomState(seed)`` in scikit-learn's order, so the split is the same.
    """
    rng = np.random.RandomState(seed)
    n_train = len(y) - n_test
    _, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i, members in enumerate(class_indices):
        shuffled = members.take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(shuffled[: n_i[i]])
        test.extend(shuffled[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Draws per class: the floor of each class's share, then the largest remainders (ties at random)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need -= add_now
            if need == 0:
                break
    return floored.astype(int)


# The data sets a task can name, and the one a file gets without saying (offline, no
# download); the search-space schema and the tasks read both here.
DATASETS = ("digits", "mnist")
DEFAULT_DATASET = "digits"


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: Path | None, download: bool) -> Dataset:
    if name == "digits":
        return load_digits()
    return load_mnist(data_dir, download=download)


def load_dataset(
    name: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> Dataset:
    """Load ``"digits"`` or ``"mnist"``, cached in-process (restart packs reload often).

    The cache is keyed on the name and the resolved MNIST folder, so changing
    ``ROBUSTNESS_DATA_DIR`` or ``data_dir`` loads afresh. Failures are not cached.
    The cached arrays are read-only and shared: copy before editing them.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    folder = None if key == "digits" else _mnist_dir(data_dir).resolve()
    return _load_cached(key, folder, download and folder is not None)


def clear_dataset_cache() -> None:
    """Forget the data sets cached by :func:`load_dataset` (e.g. after files change)."""
    _load_cached.cache_clear()
