"""The Neural GPU across a pack's restarts: the generic pack path against grouped convolutions and a plain loop.

Workload: ``BinaryArithmeticTask`` (binary multiplication, robustness/training/arithmetic.py)
with its ``NeuralGPU``, Adam lr 0.001, clip 1.0, ``AnnealedNoise(eta=1.0)``, He init, at two
sizes: the CPU study's (search_spaces/paper_binary_multiplication_cpu.yaml: train_length 4,
maps 8, batch 16) and the full study's model (search_spaces/paper_binary_multiplication.yaml:
train_length 20, maps 24, batch 32; about 40 GFLOP per restart-step, so R = 4 and one update
per timed block). Three routes, timed side by side in one process in interleaved rounds
(median over rounds), each reported in restart-steps per second:

- pack: the library's ``PackTrainer`` (its generic ``VmapModel``: ``vmap`` over
  ``functional_call``, whose conv2d rule runs the R restarts' convolutions as one conv with
  R groups), timed through ``run(until=step + k)``;
- grouped: the same model for R restarts written by hand: the image laid out
  ``(B, R * maps, height, W)``, each cell's gate and candidate convolutions one
  ``F.conv2d(..., groups=R)``, the per-restart embedding and output layer as ``einsum``; then
  the task's own loss, backward, per-restart global-norm clipping, one Gaussian draw per
  parameter tensor for the noise, and ``torch.optim.Adam`` over the stacked parameters.
  Before timing, its forward is checked against each restart's own ``NeuralGPU`` with the
  same weights, and its gradients against the pack's (so both time the same model);
- loop: one restart the plain way, the step of ``robustness.training.reference.train_single``
  (``nn.Module`` + ``torch.optim.Adam`` in ``GradientNoise``, one sampled batch per step).

Every route draws each restart's batch from its own generator with the task's ``sample``
(the pack's data path); evaluation never runs. Ratios: grouped / pack and pack / loop
(both in restart-steps per second).

Example:
    python benchmarks/bench_neural_gpu.py --quick --threads 1
    python benchmarks/bench_neural_gpu.py --threads 1 --json | tail -n 1 | python -m json.tool
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find _common next to it

import _common as C

from robustness.criterion import Criterion
from robustness.noise import AnnealedNoise, clip_coefficient
from robustness.training.arithmetic import SYMBOLS, BinaryArithmeticTask
from robustness.training.config import TrainConfig
from robustness.training.models import init_module
from robustness.training.neural_gpu import GATE_BIAS, cutoff_sigmoid
from robustness.training.pack import PackTrainer, SampledOrder
from robustness.training.reference import make_optimizer
from robustness.training.spec import RestartSpec, derived_seeds
from robustness.training.tasks import SampledData

SCHEDULE = AnnealedNoise(eta=1.0)  # the studies' noise arm; gamma = 0.55
LR, CLIP, INIT = 1e-3, 1.0, "he"  # the CPU study's one cell (the reference's lr and newer clip)
CRITERION = Criterion("test_digit_error", "<", 0.01)  # required by PackTrainer; never judged here
NEVER = C.NEVER
FORWARD_ATOL = 1e-5  # grouped forward vs each restart's own NeuralGPU, max |difference| of the logits
GRAD_RTOL = 1e-4  # grouped gradients vs the pack's, max |difference| / max |gradient|, per tensor


@dataclasses.dataclass(frozen=True)
class Size:
    key: str
    label: str
    train_length: int
    maps: int
    batch: int
    restarts: tuple[int, ...]  # pack sizes without --quick
    quick_restarts: tuple[int, ...]
    source: str


SIZES = {
    "cpu": Size("cpu", "CPU study", 4, 8, 16, (4, 16), (16,), "search_spaces/paper_binary_multiplication_cpu.yaml"),
    "full": Size("full", "full study", 20, 24, 32, (4,), (4,), "search_spaces/paper_binary_multiplication.yaml"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example:\n  python benchmarks/bench_neural_gpu.py --quick --threads 1 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default_dev = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--quick", action="store_true",
                        help="R = 16 only at the CPU study's size, fewer rounds (a few minutes on 2 loaded CPU cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with all figures as the last line")
    parser.add_argument("--device", default=default_dev, help=f"torch device (default: {default_dev})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; pass 1 on a shared machine)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved timing rounds (default: 7 with --quick, 9; the full size: 2 and 3)")
    parser.add_argument("--sizes", default="cpu,full", help="comma-separated sizes: cpu, full (default: both)")
    return parser.parse_args(argv)


def make_task(size: Size) -> BinaryArithmeticTask:
    # Only training is timed: a one-example test set of the training length (as reproduce.measure_scale).
    return BinaryArithmeticTask(op="mul", train_length=size.train_length, test_length=size.train_length,
                                test_size=1, maps=size.maps)


def make_specs(R: int) -> list[RestartSpec]:
    return [RestartSpec.make(restart=r, lr=LR, schedule=SCHEDULE, clip_norm=CLIP, init=INIT) for r in range(R)]


def flops_per_restart_step(task: BinaryArithmeticTask, batch: int) -> float:
    """3 x the forward FLOPs of the convolutions (as ``robustness.reproduce.neural_gpu_flops``) x batch."""
    width = 2 * task.train_length + 1
    forward = 2.0 * width * task.layers * task.height * width * 3 * task.maps ** 2 * task.kernel ** 2
    return 3.0 * forward * batch


def sample_batch(data: SampledData, orders: list[SampledOrder], batch: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each restart's own batch, x and y ``(R, B, W)``: ``PackTrainer._batch``'s data path."""
    pairs = [data.sample(o.generator, batch) for o in orders]
    return torch.stack([x for x, _ in pairs]).to(device), torch.stack([y for _, y in pairs]).to(device)


# -- grouped convolutions ---------------------------------------------------------------
class GroupedNeuralGPU:
    """R Neural GPUs at once by hand: grouped convolutions, batched embedding and output.

    Parameters are the module's, each stacked over restarts, ``(R, *shape)``, one leaf per
    tensor, in ``named_parameters`` order; ``params`` starts as a copy of the pack's initial
    ``theta`` so both routes train the same restarts from the same weights.
    """

    def __init__(self, task: BinaryArithmeticTask, pack: PackTrainer, batch: int, device: torch.device) -> None:
        self.task, self.batch, self.device = task, batch, device
        self.R = len(pack.specs)
        self.maps, self.height, self.kernel, self.layers = task.maps, task.height, task.kernel, task.layers
        views = pack.model.layout.views(pack.theta.detach())
        self.names = list(views)
        self.params = {n: v.clone().requires_grad_(True) for n, v in views.items()}
        self.leaves = list(self.params.values())
        self.data = task.load_data()
        self.orders = [SampledOrder(d) for _, d, _ in (derived_seeds(s.seed) for s in pack.specs)]
        self.opt = torch.optim.Adam(self.leaves, lr=LR)
        self.noise_gen = torch.Generator(device=device).manual_seed(12345)
        self.clip = torch.full((self.R,), CLIP, device=device)
        self.step = 0
        self.frozen = 0

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Symbols ``(R, B, W)`` -> logits ``(R, B, W, classes)``; restart r reads its own parameters."""
        R, B, W = x.shape
        m, h, k = self.maps, self.height, self.kernel
        pad = k // 2
        onehot = F.one_hot(x, SYMBOLS)[..., 1:].to(params["embed.weight"].dtype)  # padding: an all-zero row
        first = torch.einsum("rbws,rsm->brmw", onehot, params["embed.weight"])  # (B, R, m, W)
        s = torch.cat([first.unsqueeze(3), first.new_zeros(B, R, m, h - 1, W)], dim=3).reshape(B, R * m, h, W)
        cells = []
        for i in range(self.layers):
            p = f"cells.{i}."
            cells.append((params[p + "gates.weight"].reshape(R * 2 * m, m, k, k),
                          params[p + "gates.bias"].reshape(-1),
                          params[p + "candidate.weight"].reshape(R * m, m, k, k),
                          params[p + "candidate.bias"].reshape(-1)))
        for _ in range(W):
            for gw, gb, cw, cb in cells:
                gates = cutoff_sigmoid(F.conv2d(s, gw, gb, padding=pad, groups=R) + GATE_BIAS)
                # (B, R, m, h, W) each: restart r's first m outputs are its u (split: its backward is one cat)
                u, r = gates.view(B, R, 2 * m, h, W).split(m, dim=2)
                s5 = s.view(B, R, m, h, W)
                c = torch.tanh(F.conv2d((r * s5).reshape(B, R * m, h, W), cw, cb, padding=pad, groups=R))
                s = (u * s5 + (1.0 - u) * c.view(B, R, m, h, W)).reshape(B, R * m, h, W)
        top = s.view(B, R, m, h, W)[:, :, :, 0, :]  # row 0: (B, R, m, W)
        return torch.einsum("brmw,rcm->rbwc", top, params["out.weight"]) + params["out.bias"][:, None, None, :]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-restart mean loss ``(R,)``: the task's own per-example loss on the flattened outputs."""
        out = self.forward(self.params, x)
        R, B, W = y.shape
        return self.task.loss(out.reshape(R * B, W, -1), y.reshape(R * B, W)).view(R, B).mean(1)

    def run(self, k: int) -> None:
        R = self.R
        for _ in range(k):
            x, y = sample_batch(self.data, self.orders, self.batch, self.device)
            loss = self.loss(x, y)
            self.opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # the restarts share no parameter: row r of each grad is restart r's own
            with torch.no_grad():
                grads = [p.grad for p in self.leaves]
                norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g.reshape(R, -1), dim=1) for g in grads]), dim=0)
                ok = torch.isfinite(loss) & torch.isfinite(norm)
                coef = torch.where(ok, clip_coefficient(norm, self.clip), 0.0)  # frozen restarts: a zero gradient
                sigma = math.sqrt(SCHEDULE.variance(self.step))
                for g in grads:
                    g.mul_(coef.view(R, *[1] * (g.dim() - 1)))
                    g.add_(torch.randn(g.shape, generator=self.noise_gen, device=g.device), alpha=sigma)
            self.opt.step()  # timing only: one lr for all and no freezing of Adam's moments
            self.step += 1


def verify(grouped: GroupedNeuralGPU, pack: PackTrainer, task: BinaryArithmeticTask, device: torch.device,
           n: int = 2) -> dict[str, float]:
    """Forward against each restart's own ``NeuralGPU``, gradients against the pack's, on n examples each."""
    gen = torch.Generator().manual_seed(7)
    data = task.load_data()
    pairs = [data.sample(gen, n) for _ in range(grouped.R)]
    x = torch.stack([p[0] for p in pairs]).to(device)
    y = torch.stack([p[1] for p in pairs]).to(device)
    module = task.build_module(data).to(device)
    with torch.no_grad():
        out = grouped.forward(grouped.params, x)
        ref = torch.stack([functional_call(module, {k: v[r] for k, v in grouped.params.items()}, (x[r],))
                           for r in range(grouped.R)])
    fwd = (out - ref).abs().max().item()
    if not fwd <= FORWARD_ATOL:
        raise RuntimeError(f"grouped forward differs from NeuralGPU's by {fwd:.3g} (> {FORWARD_ATOL:g})")
    # Gradients: the pack's (vmap) model and the grouped one, on the same batch and the same (initial) weights.
    R = grouped.R
    pack_loss = task.loss(pack.model.forward(pack._state, x).flatten(0, 1), y.flatten(0, 1)).view(R, n).mean(1)
    pack_grads = torch.autograd.grad(pack_loss.sum(), pack._leaves)
    own = torch.autograd.grad(grouped.loss(x, y).sum(), grouped.leaves)
    grad = max(((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item() for a, b in zip(own, pack_grads))
    if not grad <= GRAD_RTOL:
        raise RuntimeError(f"grouped gradients differ from the pack's by {grad:.3g} relative (> {GRAD_RTOL:g})")
    return {"forward_max_abs_diff": fwd, "grad_max_rel_diff": grad, "logits_max_abs": ref.abs().max().item()}


# -- the plain loop ------------------------------------------------------------------------
class NeuralGPULoop:
    """One restart the plain way: the step of ``train_single`` on a sampled task, one batch per call."""

    def __init__(self, task: BinaryArithmeticTask, config: Any, device: torch.device) -> None:
        spec = make_specs(1)[0]
        init_seed, data_seed, noise_seed = derived_seeds(spec.seed)
        self.task, self.batch, self.device = task, config.batch_size, device
        self.data = task.load_data()
        module = init_module(task.build_module(self.data), spec.init, torch.Generator().manual_seed(init_seed))
        self.module = module.to(device)
        self.opt = make_optimizer(self.module, spec, config, seed=noise_seed)
        self.order = SampledOrder(data_seed)
        self.diverged = False

    def run(self, k: int) -> None:
        for _ in range(k):
            x, y = self.data.sample(self.order.generator, self.batch)
            x, y = x.to(self.device), y.to(self.device)
            loss = self.task.loss(self.module(x), y).mean()
            self.diverged |= C.plain_update(self.module, self.opt, loss)


# -- one size --------------------------------------------------------------------------------
def measure_size(size: Size, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    t0 = time.perf_counter()
    task = make_task(size)
    full = size.key == "full"
    sizes = size.quick_restarts if args.quick else size.restarts
    rounds = args.rounds or ((2 if args.quick else 3) if full else (7 if args.quick else 9))
    block_s = 0.0 if full else (0.5 if args.quick else 1.5)  # full size: one update per block
    config = TrainConfig(steps=NEVER, batch_size=size.batch, eval_every=NEVER, optimizer="adam")
    flops = flops_per_restart_step(task, size.batch)
    groups: list[list[C.Variant]] = []
    packs: list[PackTrainer] = []
    checks: dict[int, dict[str, float]] = {}
    for R in sizes:
        pack = PackTrainer(task, make_specs(R), config, criterion=CRITERION, device=device, data=task.load_data())
        packs.append(pack)
        grouped = GroupedNeuralGPU(task, pack, size.batch, device)
        checks[R] = verify(grouped, pack, task, device)
        pv = C.Variant(f"pack R={R}", lambda k, p=pack: p.run(until=p.step + k), restarts=R, flops=R * flops)
        gv = C.Variant(f"grouped R={R}", grouped.run, restarts=R, flops=R * flops)
        groups.append([pv, gv])
    loop = NeuralGPULoop(task, config, device)
    lv = C.Variant("loop", loop.run, restarts=1, flops=flops)
    groups.append([lv])
    for v in (v for g in groups for v in g):
        if full:  # seconds per update: one warm-up update, then one update per timed block
            C.time_block(v, 1, device)
        else:
            C.calibrate(v, block_s, device)
    C.interleave(groups, rounds, device)
    for p in packs:
        p.close()
    loop_rate = 1.0 / lv.median
    records = []
    for v in (v for g in groups for v in g):
        rate = v.restarts / v.median
        records.append({
            "size": size.key, "variant": v.name.split()[0], "R": v.restarts, "restart_steps_per_s": rate,
            "ms_per_restart_step": 1e3 / rate, "gflops": rate * flops / 1e9, "vs_loop": rate / loop_rate,
            "steps_per_block": v.steps, "times_ms": [t * 1e3 for t in v.times],
        })
    by = {(r["variant"], r["R"]): r for r in records}
    ratios = []
    for R in sizes:
        pk, gr = by[("pack", R)], by[("grouped", R)]
        ratios.append({
            "R": R, "grouped_over_pack": gr["restart_steps_per_s"] / pk["restart_steps_per_s"],
            "pack_over_loop": pk["vs_loop"], "grouped_over_loop": gr["vs_loop"],
            # per round: the two ran back to back, so each round's ratio sees the same load
            "grouped_over_pack_per_round": [p / g for p, g in zip(pk["times_ms"], gr["times_ms"])],
        })
    params = sum(p.numel() for p in task.build_module(task.load_data()).parameters())
    return {"size": size.key, "label": size.label, "source": size.source, "train_length": size.train_length,
            "width": 2 * size.train_length + 1, "maps": size.maps, "batch": size.batch, "height": task.height,
            "layers": task.layers, "kernel": task.kernel, "params_per_restart": params,
            "flops_per_restart_step": flops, "rounds": rounds, "block_s": block_s, "checks": checks,
            "results": records, "ratios": ratios, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse_args(argv)
    try:
        device = C.setup_torch(args.threads, args.device)
        keys = [s.strip() for s in args.sizes.split(",") if s.strip()]
        unknown = [k for k in keys if k not in SIZES]
        if not keys or unknown:
            raise ValueError(f"--sizes takes a comma-separated list of {', '.join(SIZES)}; got {args.sizes!r}")
        machine = C.machine_info(device)
        done = [measure_size(SIZES[k], args, device) for k in keys]
    except (ValueError, RuntimeError) as exc:
        return C.fail(str(exc))
    header = ["size", "variant", "R", "ms/restart-step", "restart-steps/s", "GFLOP/s", "vs loop"]
    rows, text_ratios = [], []
    for d in done:
        for r in d["results"]:
            rows.append([d["size"], r["variant"], str(r["R"]), f"{r['ms_per_restart_step']:.2f}",
                         f"{r['restart_steps_per_s']:.2f}", f"{r['gflops']:.2f}", f"{r['vs_loop']:.2f}"])
        for q in d["ratios"]:
            spread = q["grouped_over_pack_per_round"]
            text_ratios.append(f"{d['size']} R={q['R']}: grouped / pack {q['grouped_over_pack']:.2f} x "
                               f"(per round {min(spread):.2f} .. {max(spread):.2f}, "
                               f"median {statistics.median(spread):.2f}), pack / loop {q['pack_over_loop']:.2f} x, "
                               f"grouped / loop {q['grouped_over_loop']:.2f} x")
    sizes_text = [
        f"  {d['size']}: {d['label']} ({d['source']}): train_length {d['train_length']} (tape {d['width']}), "
        f"maps {d['maps']}, height {d['height']}, batch {d['batch']}; {d['params_per_restart']} parameters, "
        f"{d['flops_per_restart_step'] / 1e9:.3g} GFLOP per restart-step (convolutions, 3 x forward); "
        f"medians of {d['rounds']} rounds" + (", one update per block" if d["block_s"] == 0 else "")
        for d in done
    ]
    checks_text = [f"  {d['size']} R={R}: forward max |diff| {c['forward_max_abs_diff']:.2g} "
                   f"(logits up to {c['logits_max_abs']:.2g}), gradients max rel diff {c['grad_max_rel_diff']:.2g}"
                   for d in done for R, c in d["checks"].items()]
    text = [
        f"bench_neural_gpu: BinaryArithmeticTask mul, NeuralGPU, Adam lr {LR:g}, clip {CLIP:g}, {SCHEDULE}, "
        f"{INIT} init",
        f"device {device} ({machine['device_name']}), torch {machine['torch']}, {machine['threads']} threads, "
        f"load average at start {machine['load_average_at_start']}",
        *sizes_text,
        "grouped vs NeuralGPU (forward) and vs the pack (gradients), same weights, before timing:",
        *checks_text,
        "",
        C.format_table(header, rows),
        "",
        *text_ratios,
        f"wall time {time.perf_counter() - t0:.1f} s",
    ]
    payload = {
        "benchmark": "bench_neural_gpu", "date": C.now_utc(), "machine": machine,
        "settings": {"quick": args.quick, "lr": LR, "clip_norm": CLIP, "init": INIT, "schedule": SCHEDULE.params(),
                     "optimizer": "adam", "op": "mul"},
        "sizes": done, "wall_s": time.perf_counter() - t0,
    }
    C.emit(text, payload, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
