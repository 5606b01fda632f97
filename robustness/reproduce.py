"""The paper's two restart tables, from fresh studies on this machine, written as one Markdown report.

``robustness reproduce`` runs, through the same sweep runner as ``robustness sweep``:

- **MNIST, Table 1**: ``search_spaces/paper_mnist_deep20.yaml`` with ``task.steps``
  replaced by what a small machine trains in about an hour (the study is renamed
  ``<name>-steps<N>``, so it never mixes with a full-length run of the same file);
- **binary multiplication, Table 6**: ``search_spaces/paper_binary_multiplication_cpu.yaml``;

then measures the Neural GPU pack against a plain one-model loop at the full study's size,
and writes ``docs/reproduction.md``. Every number in that file comes from the studies in
storage, from that measurement, or from the paper's tables below, and the file says which.
The studies resume as any sweep does: a second run trains nothing and rewrites the report.

The sweeps' wall times are stored with each study (attribute ``reproduce_wall_s``, summed
over the invocations that trained part of it), so the report can be rewritten later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from robustness.criterion import Criterion
from robustness.errors import RobustnessError
from robustness.study.search_space import SearchSpace, load_search_space, parse_search_space

__all__ = [
    "PAPER_TABLE1", "PAPER_TABLE6", "ReproduceError", "ScaleFigures", "measure_scale", "neural_gpu_flops",
    "run_reproduction", "with_steps", "write_reproduction",
]

WALL_ATTR = "reproduce_wall_s"
MACHINE_ATTR = "reproduce_machine"

# Table 1 of Neelakantan et al. (2015), test accuracy in percent over 40 runs (20 per lr),
# keyed by the search space's (init, clip). Checked against the paper's text in paper-notes.md.
PAPER_TABLE1: dict[tuple[str, float | None], tuple[str, tuple[float, float], tuple[float, float]]] = {
    ("simple", None): ("1. simple init, no clipping", (89.9, 43.1), (96.7, 52.7)),
    ("simple", 100.0): ("2. simple init, clip 100", (90.0, 46.3), (96.7, 52.3)),
    ("simple", 10.0): ("3. simple init, clip 10", (95.7, 51.6), (97.0, 53.6)),
    ("random_walk", 10.0): ("4. Sussillo-Abbott init, clip 10", (97.4, 92.1), (97.5, 92.2)),
    ("he", 10.0): ("5. He init, clip 10", (97.4, 91.7), (97.2, 91.7)),
    ("zero", 10.0): ("6. zero init, clip 10", (11.4, 10.1), (94.5, 49.7)),
}
# Table 6: successful runs out of 7,290 by test error, (no noise, with noise).
PAPER_TABLE6: dict[float, tuple[int, int]] = {0.01: (28, 58), 0.02: (90, 159), 0.03: (172, 282), 0.05: (387, 570)}
PAPER_TABLE6_RUNS = 7290


class ReproduceError(RobustnessError, ValueError):
    """A reproduction that cannot run or finish (a failed pack, an interrupted sweep)."""


# --- the studies ---------------------------------------------------------------------------


def with_steps(path: str | Path, steps: int) -> SearchSpace:
    """The search space at ``path`` with ``task.steps = steps``, as study ``<name>-steps<steps>``.

    The stored text is the rewritten file, with a first line that says where it came from.
    ``eval_every`` shrinks to ``steps`` when it was longer.
    """
    original = load_search_space(path)
    data = yaml.safe_load(original.text)
    data["study"] = f"{data['study']}-steps{steps}"
    data["task"]["steps"] = steps
    data["task"]["eval_every"] = min(int(data["task"].get("eval_every", 100)), steps)
    text = f"# {path} with task.steps = {steps}, written by robustness reproduce\n" + yaml.safe_dump(
        data, sort_keys=False)
    return parse_search_space(text, source=f"{path} (steps {steps})")


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, {platform.system()} {platform.release()}"


def _run(space: SearchSpace, storage: str | None, *, progress: Callable[[str, int, int], None] | None,
         say: Callable[[str], None]) -> int:
    """Run (or resume) one study; returns the restarts this call trained."""
    from robustness.storage import RestartStore
    from robustness.study.sweep import run_sweep

    def step(done: int, total: int, successes: int) -> None:
        if progress is not None:
            progress(space.study, done, total)

    result = run_sweep(space, storage=storage, progress=step, events=say)
    if result.interrupted:
        raise ReproduceError(f"study {space.study!r} was interrupted; run the same command again to continue it")
    if result.failed_packs:
        raise ReproduceError(f"study {space.study!r}: {result.failed_packs} packs failed after retries; "
                             "run the same command again to train their restarts")
    if result.written:
        with RestartStore(storage) as store:
            before = float(store.study_attrs(space.study).get(WALL_ATTR) or 0.0)
            store.set_study_attrs(space.study, {WALL_ATTR: before + result.elapsed_s, MACHINE_ATTR: _machine()})
    say(f"{space.study}: {result.recorded}/{result.total} restarts stored "
        f"({result.written} trained now, {result.elapsed_s:.0f} s)")
    return result.written


# --- scale: the Neural GPU pack against a plain loop -------------------------------------


def neural_gpu_flops(*, width: int, height: int, maps: int, layers: int, kernel: int) -> float:
    """Forward FLOPs of one example through the Neural GPU's convolutions (2 per multiply-add).

    Per step, each of ``layers`` CGRU cells convolves ``maps`` maps into ``3 maps`` (gates and
    candidate) at every one of ``height x width`` positions; the model runs ``width`` steps.
    The embedding, the gates' pointwise work and the output layer are left out (under 1%).
    """
    macs_per_step = layers * height * width * 3 * maps * maps * kernel * kernel
    return 2.0 * width * macs_per_step


@dataclasses.dataclass(frozen=True)
class ScaleFigures:
    """Measured throughput of the Neural GPU at the full study's size, and what it implies.

    ``train_flops`` is per restart-step (forward and backward, 3x the forward, on the
    batch); ``eval_flops`` per evaluation of one restart on the test set.
    """

    pack_restarts: int
    pack_steps_per_s: float  # restart-steps per second, the pack
    loop_steps_per_s: float  # restart-steps per second, the plain loop
    threads: int
    train_flops: float
    eval_flops: float
    study_flops: float
    study_restarts: int
    steps: int
    evals: int
    rounds: int = 1
    block: int = 1  # updates per timed block

    @property
    def pack_over_loop(self) -> float:
        return self.pack_steps_per_s / self.loop_steps_per_s

    @property
    def pack_gflops(self) -> float:
        return self.pack_steps_per_s * self.train_flops / 1e9


def measure_scale(space: SearchSpace, *, pack_restarts: int = 4, steps: int = 2, rounds: int = 3) -> ScaleFigures:
    """Restart-steps per second of a pack of ``pack_restarts`` and of ``train_single``'s loop (one
    restart) on ``space``'s task: medians of ``rounds`` interleaved blocks of ``steps`` updates,
    after a warm-up of each. The test set is cut to one example of the training length, since
    only training is timed."""
    import torch

    from robustness.noise import AnnealedNoise
    from robustness.study.plan import training_setup
    from robustness.training.pack import PackTrainer
    from robustness.training.reference import train_single
    from robustness.training.spec import RestartSpec

    task, config = training_setup(space)
    probe = dataclasses.replace(task, test_length=task.train_length, test_size=1)
    never = 10**9
    timed = dataclasses.replace(config, steps=never, eval_every=never)
    specs = [RestartSpec.make(restart=k, lr=1e-3, schedule=AnnealedNoise(eta=1.0), clip_norm=1.0)
             for k in range(pack_restarts)]
    data = probe.load_data()
    pack = PackTrainer(probe, specs, timed, criterion=space.success, data=data)
    pack.run(until=1)  # the warm-up update: allocator, kernel choice, vmap's first trace

    def loop(n: int) -> float:
        start = time.perf_counter()
        train_single(probe, specs[0], dataclasses.replace(config, steps=n, eval_every=n), criterion=space.success,
                     data=data)
        return time.perf_counter() - start

    loop(1)  # the loop's warm-up
    pack_rates, loop_rates = [], []
    for _ in range(rounds):  # interleaved, so that both routes see the same load; medians
        start = time.perf_counter()
        pack.run(until=pack.step + steps)
        pack_rates.append(pack_restarts * steps / (time.perf_counter() - start))
        # Whole restarts of 1 and 1 + steps updates: the difference is the updates' cost.
        extra = loop(1 + steps) - loop(1)
        loop_rates.append(steps / extra if extra > 0 else float("nan"))
    pack.close()
    per_example = neural_gpu_flops(width=2 * task.train_length + 1, height=task.height, maps=task.maps,
                                   layers=task.layers, kernel=task.kernel)
    test_example = neural_gpu_flops(width=2 * task.test_length + 1, height=task.height, maps=task.maps,
                                    layers=task.layers, kernel=task.kernel)
    train_flops = 3.0 * per_example * config.batch_size
    eval_flops = test_example * task.test_size
    evals = config.steps // config.eval_every + (config.steps % config.eval_every != 0)
    restarts = len(space.cells()) * space.restarts
    return ScaleFigures(
        pack_restarts=pack_restarts,
        pack_steps_per_s=statistics.median(pack_rates),
        # NaN when timer noise swamps the updates (a toy size): the report then says so.
        loop_steps_per_s=statistics.median(loop_rates),
        threads=torch.get_num_threads(),
        train_flops=train_flops,
        eval_flops=eval_flops,
        study_flops=restarts * (config.steps * train_flops + evals * eval_flops),
        study_restarts=restarts,
        steps=config.steps,
        evals=evals,
        rounds=rounds,
        block=steps,
    )


# --- the report -------------------------------------------------------------------------------


def run_reproduction(
    *,
    mnist: str | Path,
    binary: str | Path,
    full_binary: str | Path,
    output: str | Path,
    storage: str | None = None,
    mnist_steps: int = 4000,
    progress: Callable[[str, int, int], None] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> Path:
    """Run (or resume) both studies, measure the scale figures, and write the report to ``output``.

    ``progress(study, done, total)`` follows each sweep; ``say(line)`` gets one line per step.
    All three files are checked before anything trains.
    """
    if mnist_steps < 1:
        raise ReproduceError(f"--mnist-steps must be >= 1, got {mnist_steps}")
    output = Path(output)
    if not output.parent.is_dir():
        raise ReproduceError(f"cannot write {output}: no directory {output.parent}")
    mnist_space = with_steps(mnist, mnist_steps)
    binary_space = load_search_space(binary)
    full_space = load_search_space(full_binary)
    if full_space.task.name != "binary_arithmetic" or binary_space.task.name != "binary_arithmetic":
        raise ReproduceError("the binary studies must use the binary_arithmetic task")
    from robustness.study.check import check_trainable

    for space in (mnist_space, binary_space):
        check_trainable(space)  # the MNIST files and both tasks, before the first sweep starts
    started = time.perf_counter()
    trained = 0
    for space in (mnist_space, binary_space):
        say(f"study {space.study}: {len(space.cells()) * space.restarts} restarts")
        trained += _run(space, storage, progress=progress, say=say)
    say("measuring the Neural GPU pack against a plain loop at the full study's size")
    scale = measure_scale(full_space)
    say(f"scale: pack {scale.pack_steps_per_s:.3g} restart-steps/s, loop {scale.loop_steps_per_s:.3g}")
    return write_reproduction(output, storage=storage, mnist=mnist_space, binary=binary_space, full=full_space,
                              scale=scale, command_s=time.perf_counter() - started, trained=trained)


def write_reproduction(output: str | Path, *, storage: str | None, mnist: SearchSpace, binary: SearchSpace,
                       full: SearchSpace, scale: ScaleFigures, command_s: float | None = None,
                       trained: int | None = None) -> Path:
    """Write the Markdown report from the stored studies and the scale figures."""
    from robustness.report import _write_atomically
    from robustness.storage import RestartStore

    with RestartStore(storage) as store:
        tables = {s.study: store.read_table(s.study) for s in (mnist, binary)}
        attrs = {s.study: store.study_attrs(s.study) for s in (mnist, binary)}
    now = dt.datetime.now(dt.timezone.utc)
    parts = [
        _header(now, command_s, trained, mnist, binary),
        _mnist_section(mnist, tables[mnist.study], attrs[mnist.study]),
        _binary_section(binary, tables[binary.study], attrs[binary.study]),
        _scale_section(full, scale),
    ]
    return _write_atomically(Path(output), "\n".join(parts))


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"


def _header(now: dt.datetime, command_s: float | None, trained: int | None, mnist: SearchSpace,
            binary: SearchSpace) -> str:
    total = ""
    if command_s is not None:
        # A rerun resumes the stored studies: say so, since the studies' own times are below.
        what = (f"trained {trained:,} restarts" if trained else "found both studies stored and trained nothing")
        total = f" This invocation {what} and took {_fmt_s(command_s)}; each study's own time is in its section."
    return f"""# Reproducing Neelakantan et al. (2015) on one small machine

Generated by `robustness reproduce` on {now:%Y-%m-%d %H:%M} UTC.{total} Every number below
is computed from the studies it ran (stored in Optuna storage as `{mnist.study}` and
`{binary.study}`), from the throughput it measured, or is quoted from the paper's tables
(marked "paper"). Regenerate it with the README's command; nothing here is edited by hand.

Success is judged per restart; diverged restarts count as failures. Intervals are 95%:
Wilson for rates, percentile bootstrap for means; tests pair restarts by seed (McNemar's
exact test) and are Holm-adjusted across each table.
"""


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}"


def _mnist_section(space: SearchSpace, table: Any, attrs: Mapping[str, Any]) -> str:
    from robustness.stats import arm_summary, cell_stats, compare_arms
    from robustness.study.plan import training_setup

    task, config = training_setup(space)
    data = task.load_data()
    n_train, n_test = len(data.train_y), len(data.test_y)
    arms = ("init", "clip", "schedule")
    summaries = {(a.params["init"], a.params["clip"], a.params["schedule"]): a
                 for a in arm_summary(table, by=arms, metric="test_accuracy", direction="maximize")}
    rates = {(c.params["init"], c.params["clip"], c.params["schedule"]): c for c in cell_stats(table, by=arms)}
    noise = next(s for s in {k[2] for k in summaries} if s != "none")
    rows, verdicts = [], []
    for (init, clip), (label, (pb0, pa0), (pb1, pa1)) in PAPER_TABLE1.items():
        base, with_noise = summaries.get((init, clip, "none")), summaries.get((init, clip, noise))
        if base is None or with_noise is None:
            continue
        r0, r1 = rates[(init, clip, "none")], rates[(init, clip, noise)]
        rows.append(
            f"| {label} | {pb0} / {pa0} | {_pct(base.best)} / {_pct(base.mean)} | {pb1} / {pa1} | "
            f"{_pct(with_noise.best)} / {_pct(with_noise.mean)} | {r0.successes}/{r0.n} "
            f"({_pct(r0.ci_low)}–{_pct(r0.ci_high)}) | {r1.successes}/{r1.n} ({_pct(r1.ci_low)}–{_pct(r1.ci_high)}) |")
        ours, paper = with_noise.mean - base.mean, (pa1 - pa0) / 100
        verdicts.append(f"- {label}: noise changed the average by {100 * ours:+.1f} points here "
                        f"(paper {100 * paper:+.1f}): {_direction(ours, paper)}.")
    chance = 0.2  # 10 classes: an untrained net sits at 0.10-0.12
    stuck = [PAPER_TABLE1[key][0].split(". ", 1)[1] for key in PAPER_TABLE1
             if (key[0], key[1], "none") in summaries and (key[0], key[1], noise) in summaries
             and max(summaries[(key[0], key[1], s)].best for s in ("none", noise)) <= chance]
    rescued_keys = [key for key in PAPER_TABLE1
                    if (key[0], key[1], "none") in summaries and (key[0], key[1], noise) in summaries
                    and summaries[(key[0], key[1], "none")].best <= chance < summaries[(key[0], key[1], noise)].best]
    rescued = [PAPER_TABLE1[key][0].split(". ", 1)[1] for key in rescued_keys]
    paper_best = sorted(PAPER_TABLE1[key][1][0] for key in rescued_keys)
    those = "that row" if len(stuck) == 1 else "those rows"
    stuck_text = " ".join(filter(None, [
        f"In {len(stuck)} of the {len(rows)} arms ({'; '.join(stuck)}) no restart of either arm left chance "
        f"(best test accuracy ≤ {100 * chance:.0f}%): in this budget noise at this η started none of them, so the "
        f"paper's gain in {those}, which comes from runs that did train, cannot show here." if stuck else "",
        f"In {len(rescued)} arms ({'; '.join(rescued)}) only the noise arm left chance: no restart without noise "
        f"trained at all, where the paper's best without noise reached {_span(paper_best)}%, "
        "so the gain in the average here is larger than the paper's and measures noise starting runs that "
        "otherwise never start." if rescued else "",
    ])) or f"Every arm has restarts that left chance (best test accuracy above {100 * chance:.0f}%)."
    # Per arm, pooled over the learning rates (pairs stay within each lr), at the study's
    # threshold and at 0.5, which separates runs that trained at all from those that did not.
    cuts = [space.success, Criterion(space.success.metric, space.success.op, 0.5)]
    pooled = [{(c.group["init"], c.group["clip"]): c for c in compare_arms(
        table, baseline={"schedule": "none"}, match=("init", "clip"), criterion=cut)} for cut in cuts]
    tests = []
    for key, (label, *_) in PAPER_TABLE1.items():
        if key not in pooled[0]:
            continue
        cells = []
        for by_arm in pooled:
            c = by_arm[key]
            cells += [f"{c.baseline_successes}/{c.baseline_n}", f"{c.noise_successes}/{c.noise_n}",
                      f"{c.noise_only} / {c.baseline_only}", f"{c.p_adjusted:.3g}"]
        tests.append(f"| {label} | {' | '.join(cells)} |")
    wall = attrs.get(WALL_ATTR)
    lrs = sorted({float(x) for x in table.params['lr']}, reverse=True)
    epochs = config.steps * config.batch_size / n_train
    return f"""
## MNIST: Table 1

**Setup.** `{space.source}`: a {task.depth} × {task.width} ReLU net (the paper's: 20 × 50), plain SGD,
lr {' and '.join(f'{x:g}' for x in lrs)}, {space.restarts} restarts per lr, so {len(lrs) * space.restarts} per arm (the paper: 20 and 40), annealed noise
η = 0.01, γ = 0.55, against no noise, seed-paired. **{config.steps:,} updates** of batch
{config.batch_size} ({epochs:.1f} epochs of the {n_train:,} training images here; the shipped file
says 10,000), tested on {n_test:,} images. {len(table)} restarts, trained in {_fmt_s(wall)} on
{attrs.get(MACHINE_ATTR, 'an unrecorded machine')}. Success: test accuracy ≥ {space.success.threshold:g}.
The paper's dropout row (1b) is not expressible: packs train no dropout.

Best / average test accuracy (%) over each arm's {len(lrs) * space.restarts} restarts, the paper's beside ours,
and the success rate with its interval:

| arm | paper, no noise | ours, no noise | paper, noise | ours, noise | ours: success, no noise | ours: success, noise |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Noise against no noise per arm, pooled over the two learning rates with each restart paired by seed
with the baseline restart of its own learning rate (McNemar's exact test on the discordant pairs,
noise-only / baseline-only; p Holm-adjusted over the arms), at the study's threshold and at 50%:

| arm | ≥ {100 * cuts[0].threshold:g}%: no noise | noise | discordant | Holm p | ≥ 50%: no noise | noise | discordant | Holm p |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(tests)}

**Direction of the noise effect on the average, ours against the paper's:**

{chr(10).join(verdicts)}

{stuck_text}

**Why this run can differ from the paper.** The paper does not state its epochs, batch
size, bias init or preprocessing. This run trains {config.steps:,} updates on a {n_train:,}-image
subset (the offline data here), where the paper used the full 60,000. Its averages near 50%
come from lr 0.01 converging slowly, so they depend on the training length: a short run lowers the
lr 0.01 half of every arm, and a longer one (the shipped file's 10,000 updates, full MNIST on a
GPU) should move our averages toward the paper's where the runs are still learning. The noise is
small at η = 0.01 (σ falls from 0.1 to under 0.01 by update {_sigma_below(0.01, 0.01):,}), so
small differences between arms are within restart-to-restart spread; the tests above say which are not.
"""


def _span(values: list[float]) -> str:
    return f"{values[0]:g}" if values[0] == values[-1] else f"{values[0]:g}–{values[-1]:g}"


def _sigma_below(eta: float, sigma: float, gamma: float = 0.55) -> int:
    """The first update t at which sqrt(eta / (1 + t)^gamma) < sigma."""
    return math.ceil((eta / sigma**2) ** (1 / gamma) - 1)


def _direction(ours: float, paper: float, *, tie: float = 0.005) -> str:
    if abs(paper) < tie and abs(ours) < tie:
        return "no change in either, as in the paper"
    if abs(paper) < tie:
        return "the paper saw no change"
    if abs(ours) < tie:
        return "no change here, where the paper saw one"
    return "the same direction" if (ours > 0) == (paper > 0) else "the opposite direction"


def _binary_section(space: SearchSpace, table: Any, attrs: Mapping[str, Any]) -> str:
    from robustness.stats import arm_summary, compare_arms, success_counts
    from robustness.study.plan import training_setup

    task, config = training_setup(space)
    thresholds = sorted(PAPER_TABLE6)
    criteria = [Criterion("test_digit_error", "<", t) for t in thresholds]
    counts = {c.params["schedule"]: c for c in success_counts(table, criteria, by=("schedule",))}
    noise = next(s for s in counts if s != "none")
    base, with_noise = counts["none"], counts[noise]
    rows = []
    for i, t in enumerate(thresholds):
        p0, p1 = PAPER_TABLE6[t]
        comps = compare_arms(table, baseline={"schedule": "none"}, criterion=criteria[i], match=())
        c = comps[0] if len(comps) == 1 else None
        rr = "undefined (no successes)" if c is None or c.risk_ratio != c.risk_ratio else (
            f"{c.risk_ratio:.2f} ({c.rr_low:.2f}–{c.rr_high:.2f})")
        p = "–" if c is None else f"{c.p_value:.3g}"
        rows.append(f"| < {100 * t:g}% | {p0} | {p1} | {p1 / p0:.2f} | {base.successes[i]}/{base.n} | "
                    f"{with_noise.successes[i]}/{with_noise.n} | {rr} | {p} |")
    spread = {a.params["schedule"]: a for a in arm_summary(table, by=("schedule",), metric="test_digit_error",
                                                            direction="minimize")}
    seq = {a.params["schedule"]: a for a in arm_summary(table, by=("schedule",), metric="test_sequence_error",
                                                         direction="minimize")}
    spread_rows = [f"| {name} | {_pct(spread[name].best)} | {_pct(spread[name].mean)} "
                   f"({_pct(spread[name].mean_low)}–{_pct(spread[name].mean_high)}) | {_pct(seq[name].best)} |"
                   for name in ("none", noise)]
    any_success = any(base.successes) or any(with_noise.successes)
    reading = (
        "No restart of either arm reached 5% test error, so every count is 0 and the risk ratio is "
        "undefined: at this size the study shows no effect of noise, and cannot, since neither arm "
        "learns to multiply at the longer test length. This is the absence of an effect at this scale, "
        "not evidence against the paper's."
        if not any_success else
        "Compare the ratio's interval with the paper's ratio; an interval that includes 1 means this "
        "study cannot tell the arms apart at that threshold.")
    return f"""
## Binary multiplication: Table 6, CPU-sized

**Setup.** `{space.source}`: a Neural GPU ({task.maps} maps, height {task.height}, {task.layers} CGRU
layers, {task.kernel} × {task.kernel} kernels) trained on operands of 1 to {task.train_length} digits and
tested on {task.test_size} products of {task.test_length}-digit operands, {config.steps:,} Adam updates of
batch {config.batch_size}; annealed noise η = 1.0, γ = 0.55 after clipping at {table.params['clip'][0]:g},
against no noise; {space.restarts} seed-paired restarts per arm. The paper: 20 and 200 digits, 7,290 runs
over a grid it does not state (`search_spaces/paper_binary_multiplication.yaml` is ours at that size).
{len(table)} restarts, trained in {_fmt_s(attrs.get(WALL_ATTR))} on {attrs.get(MACHINE_ATTR, 'an unrecorded machine')}.

Successful runs by test digit error (the paper's "error"), paper out of {PAPER_TABLE6_RUNS:,} runs,
ours out of the restarts per arm; risk ratio noise / no noise with its paired interval:

| test error | paper, no noise | paper, noise | paper ratio | ours, no noise | ours, noise | ours: ratio (95%) | McNemar p |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{reading}

Test digit error (%) per arm: best, mean (95% interval) and the best per-sequence error:

| arm | best digit error | mean digit error | best sequence error |
|---|---|---|---|
{chr(10).join(spread_rows)}
"""


def _scale_section(space: SearchSpace, s: ScaleFigures) -> str:
    from robustness.study.plan import training_setup

    task, config = training_setup(space)
    best = max(s.pack_steps_per_s, s.loop_steps_per_s if s.loop_steps_per_s == s.loop_steps_per_s else 0.0)
    cpu_days = s.study_restarts * s.steps / best / 86400
    # The GPU estimate's basis: the H200's fp32 (non-tensor-core) peak from NVIDIA's data sheet,
    # at a utilization range for convolutions with few channels. Not measured here.
    peak = 67e12
    low, high = 0.10, 0.40
    gpu_h = [s.study_flops / (peak * u) / 3600 for u in (high, low)]
    return f"""
## Scale: the full study

**Measured here** on `{space.source}`'s model ({task.maps} maps, operands of {task.train_length} digits
padded to a {2 * task.train_length + 1}-wide tape, batch {config.batch_size}), {s.threads} torch threads,
training updates only (medians of {s.rounds} interleaved rounds of {s.block} updates, after a warm-up
update of each route): a pack of {s.pack_restarts} restarts trains
**{s.pack_steps_per_s:.3g} restart-steps/s**, the plain one-model loop (`nn.Module` + `torch.optim` +
`GradientNoise`, `robustness.training.reference.train_single`) **{s.loop_steps_per_s:.3g}**:
{_ratio(s)}

**Work.** One update is {s.train_flops / 1e9:.1f} GFLOP (convolutions only, forward and backward);
one evaluation of one restart on {task.test_size} tapes of {2 * task.test_length + 1} symbols is
{s.eval_flops / 1e12:.2f} TFLOP. The study's {s.study_restarts:,} restarts × ({s.steps:,} updates +
{s.evals} evaluations) are **{s.study_flops / 1e18:.2f} × 10¹⁸ FLOP**.

**Estimates, not measurements.** At the faster of the two measured rates the study would take
{cpu_days:,.0f} days on this CPU. On one H200 (fp32 peak 67 TFLOP/s without tensor cores, from
NVIDIA's data sheet), at 10–40% of peak, which is our assumption for convolutions with
{task.maps} channels: **{gpu_h[0]:,.0f}–{gpu_h[1]:,.0f} GPU-hours**. Restarts are independent, so N GPUs
divide that by N (8 GPUs: {gpu_h[0] / 8:,.0f}–{gpu_h[1] / 8:,.0f} hours). No GPU was measured for this
report; the pack's CUDA path has not run yet.
"""


def _ratio(s: ScaleFigures) -> str:
    if s.pack_over_loop != s.pack_over_loop:
        return "the loop's updates were too short to time apart from its set-up at this size."
    text = f"the pack is **{s.pack_over_loop:.2f}×** the loop, at {s.pack_gflops:.1f} GFLOP/s."
    if s.pack_over_loop < 1:
        text += (" At this size a restart's convolutions are large enough to keep a CPU busy on their own, and the "
                 "pack's grouped convolution ran no faster than the loop's dense ones here (`benchmarks/bench_neural_gpu.py`"
                 " and docs/benchmarks.md compare the routes): on a CPU, batching restarts buys nothing at this size. "
                 "Packs are for GPUs, where one restart cannot fill the device.")
    return text


def default_files(root: str | Path = ".") -> dict[str, Path]:
    """The shipped search spaces the command reads, relative to ``root`` (a clone's top level)."""
    spaces = Path(root) / "search_spaces"
    return {
        "mnist": spaces / "paper_mnist_deep20.yaml",
        "binary": spaces / "paper_binary_multiplication_cpu.yaml",
        "full_binary": spaces / "paper_binary_multiplication.yaml",
    }

