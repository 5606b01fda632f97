"""Keyed random streams (``rng: philox``): Philox-4x32-10 against its published answers, the
normals' statistics, the fused Triton kernel against the torch stream (through Triton's
interpreter on CPU), and a pack that draws all its restarts' noise and data order in one
call per update, whatever R is (the torch profiler counts the ops)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from robustness.criterion import Criterion
from robustness.noise import AnnealedNoise, NoNoise
from robustness.training.config import TrainConfig
from robustness.training.data import load_dataset
from robustness.training.pack import PackTrainer, train_pack
from robustness.training.philox import keyed_permutations, noise_offsets, philox_randn, philox_uint32
from robustness.training.spec import RestartSpec
from robustness.training.tasks import DeepMLPTask

TASK = DeepMLPTask(dataset="digits", depth=3, width=16)
CRIT = Criterion("test_accuracy", ">=", 0.5)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


def _specs(R: int, *, first: int = 0) -> list[RestartSpec]:
    schedules = [NoNoise(), AnnealedNoise(eta=0.3), AnnealedNoise(eta=1.0, gamma=0.3)]
    return [RestartSpec.make(restart=k, lr=0.02 * (1 + k % 2), schedule=schedules[k % 3], clip_norm=1.0)
            for k in range(first, first + R)]


# --- the stream ------------------------------------------------------------------------------------
# Random123's known-answer vectors for philox4x32-10 (kat_vectors): counter, key -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_matches_random123_known_answers(counter, key, expected) -> None:
    # a 64-bit key whose high word has its top bit set is a negative int64
    seed = torch.tensor([[key[0] | (key[1] << 32)]], dtype=torch.uint64).view(torch.int64)
    out = philox_uint32(seed, torch.tensor([counter[0]]), *counter[1:])
    assert tuple(int(w) for w in out) == expected


def test_philox_normals_are_standard_and_independent_per_seed_and_step() -> None:
    seeds = torch.tensor([1, 2, 2**62 + 3], dtype=torch.int64)
    z = philox_randn(seeds, noise_offsets(7, 200_000)).double()  # (3, 200k)
    n = z.shape[1]
    # mean within 4 standard errors, variance within 4 of its standard error (2/n)^0.5
    assert z.mean(1).abs().max() < 4 / n**0.5
    assert (z.var(1) - 1).abs().max() < 4 * (2 / n) ** 0.5
    # tails of a normal, not of a uniform or a rounding artefact
    assert ((z.abs() > 3).double().mean(1) - 0.0027).abs().max() < 0.001
    corr = torch.corrcoef(torch.cat([z, philox_randn(seeds[:1], noise_offsets(8, n)).double()]))
    off_diagonal = corr - torch.eye(4, dtype=torch.float64)
    assert off_diagonal.abs().max() < 4 / n**0.5  # other seeds and the next step: uncorrelated


def test_keyed_permutations_are_permutations_that_depend_on_the_seed_alone() -> None:
    seeds = torch.tensor([5, 6, 7, 8], dtype=torch.int64)
    perms = keyed_permutations(seeds, 1000, epoch=2)
    assert perms.shape == (4, 1000)
    assert all(torch.equal(p.sort().values, torch.arange(1000)) for p in perms)
    assert not torch.equal(perms[0], perms[1])
    assert torch.equal(keyed_permutations(seeds[2:3], 1000, epoch=2)[0], perms[2])  # alone = in a batch
    assert not torch.equal(keyed_permutations(seeds[:1], 1000, epoch=3)[0], perms[0])  # each epoch its own


# --- the fused kernel, on CPU through Triton's interpreter ------------------------------------------------
def _interpreted(code: str) -> str:
    pytest.importorskip("triton", reason="Triton is a dev dependency (pip install -e '.[dev]')")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_triton_kernel_draws_the_torch_stream_per_row_in_the_interpreter() -> None:
    out = _interpreted("""
        import torch
        from robustness.training import triton_noise
        from robustness.training.philox import noise_offsets, philox_randn
        assert triton_noise.available(torch.device("cpu"))
        R, P = 5, 2500  # P not a multiple of the block: the masked tail is drawn too
        seeds = torch.tensor([3, 2**62 + 1, 11, 12, 13], dtype=torch.int64)
        std = torch.tensor([0.5, 2.0, 0.0, 1.0, 1e-3])
        g0 = torch.randn(R, P, generator=torch.Generator().manual_seed(0))
        for step in (0, 1, 123456):
            g = triton_noise.add_noise_(g0.clone(), seeds, std, step)
            want = g0 + std[:, None] * philox_randn(seeds, noise_offsets(step, P))
            assert torch.allclose(g, want, rtol=1e-6, atol=1e-6), (g - want).abs().max()
            assert torch.equal(g[2], g0[2])  # sigma 0: nothing drawn, nothing changed
            # rows in another order (another pack placement): each row's draw goes with it
            perm = torch.tensor([4, 2, 0, 3, 1])
            moved = triton_noise.add_noise_(g0[perm].clone(), seeds[perm], std[perm], step)
            assert torch.equal(moved, g[perm])
        z = (g - g0)[0] / std[0]
        print(float(z.mean()), float(z.var()))
    """)
    mean, var = map(float, out.split())
    assert abs(mean) < 4 / 2500**0.5 and abs(var - 1) < 4 * (2 / 2500) ** 0.5


def test_a_philox_pack_gives_the_same_outcomes_through_the_kernel_and_through_torch(data) -> None:
    config = TrainConfig(steps=30, batch_size=32, eval_every=10, optimizer="adam", rng="philox")
    specs = _specs(4)
    torch_path = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    out = _interpreted("""
        import json
        from robustness.criterion import Criterion
        from robustness.noise import AnnealedNoise, NoNoise
        from robustness.training.config import TrainConfig
        from robustness.training.data import load_dataset
        from robustness.training.pack import train_pack
        from robustness.training.spec import RestartSpec
        from robustness.training.tasks import DeepMLPTask
        from robustness.training import triton_noise, pack
        calls = []
        real = triton_noise.add_noise_
        triton_noise.add_noise_ = lambda *a: calls.append(1) or real(*a)
        schedules = [NoNoise(), AnnealedNoise(eta=0.3), AnnealedNoise(eta=1.0, gamma=0.3)]
        specs = [RestartSpec.make(restart=k, lr=0.02 * (1 + k % 2), schedule=schedules[k % 3], clip_norm=1.0)
                 for k in range(4)]
        config = TrainConfig(steps=30, batch_size=32, eval_every=10, optimizer="adam", rng="philox")
        outs = train_pack(DeepMLPTask(dataset="digits", depth=3, width=16), specs, config,
                          criterion=Criterion("test_accuracy", ">=", 0.5), data=load_dataset("digits"))
        print(json.dumps({"calls": len(calls), "loss": [o.metrics["test_loss"] for o in outs]}))
    """)
    import json

    got = json.loads(out)
    assert got["calls"] == 30  # the kernel drew every update's noise, one launch each
    assert got["loss"] == pytest.approx([o.metrics["test_loss"] for o in torch_path], rel=1e-4)


# --- the pack -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_philox_restarts_outcome_does_not_depend_on_its_pack(data, optimizer) -> None:
    config = TrainConfig(steps=40, batch_size=32, eval_every=20, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0,
                         rng="philox")
    big = train_pack(TASK, _specs(9), config, criterion=CRIT, data=data)
    # other neighbours, another row, another size: bit-identical outcomes
    small = train_pack(TASK, _specs(9)[7:2:-2], config, criterion=CRIT, data=data)
    for o in small:
        twin = big[o.restart]
        assert (o.metrics, o.curve, o.diverged) == (twin.metrics, twin.curve, twin.diverged)
    # and the streams are not the generator's: the rng is part of what a restart is
    gen = train_pack(TASK, _specs(2), TrainConfig(steps=40, batch_size=32, eval_every=20, optimizer=optimizer,
                                                   momentum=0.9 if optimizer == "sgd" else 0.0), criterion=CRIT, data=data)
    assert gen[1].metrics != big[1].metrics


def test_a_philox_pack_resumes_bit_identically_and_refuses_a_generator_checkpoint(data) -> None:
    config = TrainConfig(steps=40, batch_size=32, eval_every=10, optimizer="adam", rng="philox")
    whole = PackTrainer(TASK, _specs(4), config, criterion=CRIT, data=data)
    whole.run()
    first = PackTrainer(TASK, _specs(4), config, criterion=CRIT, data=data)
    first.run(until=25)  # mid-epoch (digits: 1347 examples, 42 batches of 32)
    resumed = PackTrainer(TASK, _specs(4), config, criterion=CRIT, data=data)
    resumed.load_state_dict(first.state_dict())
    resumed.run()
    assert [o.metrics for o in resumed.outcomes()] == [o.metrics for o in whole.outcomes()]
    other = PackTrainer(TASK, _specs(4), TrainConfig(steps=40, batch_size=32, eval_every=10, optimizer="adam"),
                        criterion=CRIT, data=data)
    with pytest.raises(ValueError, match="rng 'philox'"):
        other.load_state_dict(first.state_dict())


def _top_level_ops(trainer: PackTrainer) -> collections.Counter:
    """The aten ops one update dispatches, by name: each a kernel launch on a GPU.

    Only ops called from Python or from the autograd engine count, not those an op
    calls inside itself: how ``cat`` or ``sum`` split their work on a CPU depends on
    sizes and is not a launch.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer._update()

    def nested(event) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return True
            parent = parent.cpu_parent
        return False

    return collections.Counter(e.name for e in prof.events() if e.name.startswith("aten::") and not nested(e))


def _python_calls(trainer: PackTrainer) -> int:
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        trainer._update()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_launches_and_python_calls_per_update_do_not_grow_with_R(data, optimizer) -> None:
    def measure(R: int, rng: str) -> tuple[collections.Counter, int, collections.Counter]:
        config = TrainConfig(steps=100, batch_size=32, eval_every=50, optimizer=optimizer, rng=rng)
        trainer = PackTrainer(TASK, _specs(R), config, criterion=CRIT, data=data)
        try:
            boundary = _top_level_ops(trainer)  # update 0 draws the epoch's data order
            trainer._update()
            return _top_level_ops(trainer), _python_calls(trainer), boundary
        finally:
            trainer.close()

    ops4, calls4, epoch4 = measure(4, "philox")
    ops64, calls64, epoch64 = measure(64, "philox")
    assert ops4 == ops64 and epoch4 == epoch64
    assert calls4 == calls64
    assert sum(ops4.values()) > 20  # the profiler saw the whole update (forward, backward, noise, optimizer)
    assert ops4["aten::argsort"] == 0 and epoch4["aten::argsort"] == 1  # one sort per epoch for the pack
    # Control: the per-restart generators do grow with R, and the count above would show it.
    gen4, gcalls4, _ = measure(4, "generator")
    gen64, gcalls64, _ = measure(64, "generator")
    assert sum(gen64.values()) > sum(gen4.values()) and gcalls64 > gcalls4


# --- on a GPU (benchmarks/gpu_check.sh runs these) -------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: no GPU on this machine")


@cuda
def test_the_kernel_on_cuda_draws_the_torch_stream() -> None:
    pytest.importorskip("triton", reason="CUDA builds of torch ship Triton")
    from robustness.training import triton_noise

    R, P = 300, 70_001
    seeds = torch.arange(R, dtype=torch.int64, device="cuda") * 7919 + 2**40
    std = torch.linspace(0, 2, R, device="cuda")
    g0 = torch.randn(R, P, device="cuda")
    g = triton_noise.add_noise_(g0.clone(), seeds, std, 99)
    want = g0 + std[:, None] * philox_randn(seeds, noise_offsets(99, P, "cuda"))
    assert torch.allclose(g, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(g[0], g0[0])  # sigma 0


@cuda
def test_a_philox_pack_on_cuda_matches_the_cpu_pack_and_its_own_placement(data) -> None:
    config = TrainConfig(steps=20, batch_size=32, eval_every=10, optimizer="adam", rng="philox")
    on_gpu = train_pack(TASK, _specs(6), config, criterion=CRIT, data=data, device="cuda")
    on_cpu = train_pack(TASK, _specs(6), config, criterion=CRIT, data=data)
    alone = train_pack(TASK, _specs(1, first=4), config, criterion=CRIT, data=data, device="cuda")
    for a, b in zip(on_gpu, on_cpu):
        assert a.metrics["test_loss"] == pytest.approx(b.metrics["test_loss"], rel=1e-3)
    assert alone[0].metrics["test_loss"] == pytest.approx(on_gpu[4].metrics["test_loss"], rel=1e-4)
