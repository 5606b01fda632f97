"""Binary addition and multiplication for the Neural GPU (Neelakantan et al. 2015, section 4.5).

The paper's experiment 5 trains a Neural GPU (Kaiser & Sutskever 2015) on 20-digit binary
numbers and tests on 200-digit ones; a restart succeeds when its test error is below a
threshold (Table 6: 1%, 2%, 3%, 5%). Facts about the encoding come from the public trainer
(tensorflow/models, ``research/neural_gpu/data_utils.py``); the code is our own.

**Encoding** (k digits per operand, tape width ``W = 2k + 1``, least-significant digit first,
as in the reference): the input row is ``a_0 .. a_{k-1}, op, b_0 .. b_{k-1}`` with digit d
as symbol ``d + 1``, ``+`` as 3, ``*`` as 4 and padding 0; shape ``(N, W)`` int64. The target
``(N, W)`` int64 holds the result's digits (0 or 1), least significant first, in a **result
field** of fixed size for k: ``2k`` digits for ``mul``, ``k + 1`` for ``add``, leading zeros
included; every other position is :data:`IGNORE` (-1), neither trained nor scored. The
reference trims the result's leading zeros instead; a fixed field makes every test example
count the same number of digits, so per-example digit errors average to the pooled one.
Operand digits are independent fair bits (so operands may have leading zeros), as in the
reference. Results are computed digit-wise with exact int64 column sums and carries, so any
length is exact (200-digit products need 400 bits; no float, no int64 overflow).

**Curriculum.** The pack stacks every restart's batch, so the training tape width is shared:
``W_train = 2 train_length + 1`` for every batch of every restart. The paper's curriculum
raises the length as training progresses; ``SampledData.sample(generator, batch)`` is not
told the step, so this task uses a *mixing* curriculum instead: each example's operand length
k is drawn uniformly from 1 .. ``train_length`` and padded to ``W_train``. Shared by the pack:
the width and the (step-independent) length distribution. Per restart: the lengths, digits
and order of every example, all drawn from the restart's own data generator.

**Evaluation**: ``test_size`` examples with exactly ``test_length`` digits per operand (tape
``2 test_length + 1``, so the model runs more steps than in training), drawn once from the
fixed seed :data:`TEST_SEED`, the same for every restart and every pack.

**Metrics**, per example over its result field F (``|F|`` digits, the same for all test
examples), predictions the per-position argmax:

- ``test_digit_error``: wrong digits in F / ``|F|``. Its mean over the test set is the
  fraction of wrong result digits over the whole set (the paper's "error"), exactly up to
  float rounding, because ``|F|`` is the same for every test example.
- ``test_sequence_error``: 1 if any digit in F is wrong, else 0.
- ``test_loss``: mean cross-entropy over F (no label smoothing).

The primary metric is ``test_digit_error``; success is e.g. ``test_digit_error < 0.01``.
The per-example values are float64: in float32 an error of exactly 1% averages to
0.00999999977 and passes ``< 0.01``. Even in float64 a mean of fractions k / |F| is exact only
when |F| is a power of two, so an error that equals a threshold exactly (possible when
``test_size * |F| * threshold`` is an integer, e.g. 200-digit products) is judged by the last
bit; with the defaults (256 x 24 digits) no error equals 1%, 2%, 3% or 5%.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustness.training.neural_gpu import NeuralGPU
from robustness.training.tasks import SampledData, Task, TaskFieldError

__all__ = ["IGNORE", "OPS", "TEST_SEED", "BinaryArithmeticTask", "add_digits", "encode", "mul_digits", "result_size"]

PAD, ZERO, ONE = 0, 1, 2
OPS = {"add": 3, "mul": 4}  # the operator's symbol on the tape
SYMBOLS = 5  # padding, two digits, two operators
CLASSES = 2  # output digits 0 and 1
IGNORE = -1  # target outside the result field
TEST_SEED = 20151123  # the held-out set's seed: fixed, independent of every restart


def _carry(columns: torch.Tensor) -> torch.Tensor:
    """Column sums ``(N, n)`` int64 (least significant first) -> binary digits ``(N, n)``, carries propagated."""
    out = torch.empty_like(columns)
    carry = torch.zeros_like(columns[:, 0])
    for j in range(columns.shape[1]):
        total = columns[:, j] + carry
        out[:, j], carry = total & 1, total >> 1
    return out


def add_digits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact a + b: digits ``(N, k)`` int64 in {0, 1}, least significant first -> ``(N, k + 1)``."""
    return _carry(F.pad(a + b, (0, 1)))


def mul_digits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact a * b: digits ``(N, k)`` int64 in {0, 1}, least significant first -> ``(N, 2k)``.

    Schoolbook: column j sums ``a_i b_{j-i}`` (at most k, exact in int64), then carries.
    """
    k = a.shape[1]
    columns = torch.zeros(a.shape[0], 2 * k, dtype=torch.int64)
    for i in range(k):
        columns[:, i : i + k] += a[:, i : i + 1] * b
    return _carry(columns)


def result_size(op: str, k: int) -> int:
    """Digits in the result field of two k-digit operands: ``2k`` for mul, ``k + 1`` for add."""
    return 2 * k if op == "mul" else k + 1


def encode(a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Tapes for ``a op b``: operands ``(N, K)`` digits, example n using its first ``lengths[n]`` (1 .. K).

    Returns the input ``(N, 2K + 1)`` symbols and the target ``(N, 2K + 1)`` result digits,
    :data:`IGNORE` outside each example's result field (see the module docstring).
    """
    N, K = a.shape
    used = torch.arange(K) < lengths.unsqueeze(1)  # (N, K): digits beyond an example's length are 0
    a, b = a * used, b * used
    result = mul_digits(a, b) if op == "mul" else add_digits(a, b)  # (N, 2K) or (N, K + 1)
    width = 2 * K + 1
    pos = torch.arange(width).expand(N, width)
    k = lengths.unsqueeze(1)
    a_at = a.gather(1, pos.clamp(max=K - 1)) + 1
    b_at = b.gather(1, (pos - k - 1).clamp(0, K - 1)) + 1
    x = torch.where(pos < k, a_at, torch.where(pos == k, OPS[op], torch.where(pos <= 2 * k, b_at, PAD)))
    field = 2 * k if op == "mul" else k + 1  # (N, 1): each example's result_size
    digits = F.pad(result, (0, width - result.shape[1]))
    y = torch.where(pos < field, digits, IGNORE)
    return x, y


def sample_examples(generator: torch.Generator, n: int, op: str, max_len: int, *,
                    mixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` tapes of width ``2 max_len + 1`` from ``generator``: operand lengths uniform on
    1 .. max_len (``mixed``) or all ``max_len``."""
    lengths = (torch.randint(1, max_len + 1, (n,), generator=generator) if mixed
               else torch.full((n,), max_len, dtype=torch.int64))
    digits = torch.randint(0, 2, (2, n, max_len), generator=generator)
    return encode(digits[0], digits[1], lengths, op)


@dataclasses.dataclass(frozen=True)
class BinaryArithmeticTask(Task):
    """Binary ``op`` (``"mul"``, the paper's, or ``"add"``) with a Neural GPU; see the module docstring.

    Defaults are sized for CPU restarts: the paper trains on 20 digits and tests on 200
    (``train_length: 20, test_length: 200``). The training batch size and the number of
    steps are the search space's ``task.batch_size`` and ``task.steps`` (the reference used
    batch 32 or 64 and Adam; it ran for many thousands of steps).
    """

    name: ClassVar[str] = "binary_arithmetic"
    primary_metric: ClassVar[str] = "test_digit_error"

    op: str = "mul"
    train_length: int = 6  # digits per operand at most, in training (the paper: 20)
    test_length: int = 12  # digits per operand in the held-out set (the paper: 200)
    test_size: int = 256  # held-out examples: one wrong digit moves the error by 1 / (256 |F|)
    maps: int = 24  # the reference's older default (128 later): small enough for CPU
    height: int = 4  # the paper's and the reference's
    layers: int = 2  # CGRU cells per step (the paper's l = 2)
    kernel: int = 3  # the paper's 3 x 3
    label_smoothing: float = 0.1  # the reference's training targets: 0.9 on the digit, 0.1 on the other

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise TaskFieldError("op", f"one of: {', '.join(OPS)}")
        for key in ("train_length", "test_length", "test_size", "maps", "height", "layers"):
            if getattr(self, key) < 1:
                raise TaskFieldError(key, "an integer >= 1")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise TaskFieldError("kernel", "an odd integer >= 1 (the image keeps its shape)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise TaskFieldError("label_smoothing", "a number in [0, 1)")

    def load_data(self) -> SampledData:
        op, max_len = self.op, self.train_length

        def sample(generator: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
            return sample_examples(generator, batch, op, max_len, mixed=True)

        test_x, test_y = sample_examples(torch.Generator().manual_seed(TEST_SEED), self.test_size, op,
                                         self.test_length, mixed=False)
        return SampledData(sample, test_x, test_y)

    def build_module(self, data: SampledData) -> nn.Module:  # type: ignore[override]
        return NeuralGPU(symbols=SYMBOLS, classes=CLASSES, maps=self.maps, height=self.height,
                         layers=self.layers, kernel=self.kernel)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean smoothed cross-entropy over each example's result field: ``(B, W, 2)``, ``(B, W)`` -> ``(B,)``.

        Each example weighs the same (the reference pools digits over a batch of one length;
        with mixed lengths, pooling would weigh long examples more).
        """
        field = target != IGNORE
        logp = torch.log_softmax(output, dim=-1)
        nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        other = -(logp.sum(-1) + nll) / (output.shape[-1] - 1)  # mean over the wrong classes
        per_digit = (1.0 - self.label_smoothing) * nll + self.label_smoothing * other
        return (per_digit * field).sum(1) / field.sum(1)

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per example ``(N,)``: digit error, sequence error and cross-entropy over its result field."""
        field = target != IGNORE
        digits = field.sum(1)
        wrong = (output.argmax(-1) != target) & field
        nll = F.cross_entropy(output.transpose(1, 2), target.clamp(min=0), reduction="none")  # (N, W)
        return {
            "test_digit_error": wrong.sum(1).double() / digits,
            "test_sequence_error": wrong.any(1).double(),
            "test_loss": (nll * field).sum(1) / digits,
        }
