"""A four-call sampler: the shipped diffusion model distilled into a student that takes a few Euler steps (chapter 08).

The shipped ``diffusion`` samples with 12 Heun steps and guidance 1.25: 46 network calls per image. The student is
a copy of its U-Net, trained to take ``K`` plain Euler steps (one unguided network call each) that land where the
teacher's guided solve lands at the same ``K + 1`` times ``1 = t_0 > t_1 > ... > t_K = 0``. On each window
``[t_k, t_{k+1}]`` it regresses the teacher's mean velocity over the window,

    v_k = (x_{k+1} - x_k) / (t_{k+1} - t_k),

the chord of the teacher's curved path, which one Euler step follows exactly. The window starts where the student's
own steps have brought it (:func:`window_batch`; at the teacher's ``x_k`` with ``own_states=False``), so that it
learns to come back onto the teacher's path from its own small errors, which add up over the steps. Guidance is
baked into the targets, so the student needs no unconditional half. This is knowledge distillation of
the sampler (Luhman & Luhman 2021) cut into windows, as piecewise rectified flow cuts reflow (Yan et al. 2024): a
window's path is far straighter than the whole path from noise to product, which one chord must follow in
rectified flow's one-window reflow (Liu et al. 2023). One network serves every window at first; then each window
gets its own copy of it (``unet.WindowExperts``), trained on that window alone: four times the parameters, the same
cost a step (``expert_epochs``). Last, the four steps are trained together (``joint_epochs``): the window loss plus
the error of the student's whole solve against the teacher's product, back-propagated through every step
(:func:`end_to_end_loss`), so that an early step learns what the later ones make of its error (:func:`train_student`).
:func:`teacher_states` draws the training set, :func:`distill_step` is one optimiser step (chapter 08 runs it by hand)
and :func:`train_entry` is ``python -m prodlab train diffusion-fast``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prodlab import bootstrap, checkpoints, config, data, diffusion, files, runs
from prodlab.models import unet
from prodlab.training import diffusion_measure, loop
from prodlab.training.base import Context, Trained
from prodlab.training.diffusion import DiffusionFamily, loss_curve


@dataclass(frozen=True)
class DistillRecipe:
    """How the student is made: the teacher (a shipped diffusion checkpoint, with its shipped sampler), the student's
    Euler steps, how many teacher trajectories it learns from, and the optimiser (AdamW, warm-up then cosine decay,
    clipped gradients, a moving average of the weights, as every diffusion model here)."""

    teacher: str = "diffusion"
    student_steps: int = 4
    trajectories: int = 15_000
    epochs: int = 17
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    own_states: bool = True  # windows start on the student's own path (:func:`window_batch`)
    expert_epochs: int = 26  # then one U-Net per step (``unet.WindowExperts``), each the student so far; 0: none
    expert_lr: float = 1e-4  # their peak learning rate (no warm-up: they start trained), and the joint phase's
    joint_epochs: int = 12  # then the steps trained together (:func:`end_to_end_loss`); 0: none
    joint_weight: float = 10.0  # the end-to-end term's weight beside the window loss in that phase
    joint_batch: int = 48  # trajectories of each batch (at most) solved whole for it, back-propagated

    def __post_init__(self) -> None:
        if self.student_steps < 1 or self.trajectories < self.batch_size or self.epochs < 0 or self.lr <= 0:
            raise ValueError("student_steps >= 1, trajectories >= batch_size, epochs >= 0 and lr > 0")
        if self.expert_epochs < 0 or self.expert_lr <= 0:
            raise ValueError("expert_epochs >= 0 and expert_lr > 0")
        if self.joint_epochs < 0 or self.joint_weight < 0 or self.joint_batch < 1:
            raise ValueError("joint_epochs >= 0, joint_weight >= 0 and joint_batch >= 1")

    @property
    def experts(self) -> bool:
        """Whether the student ends as one U-Net per step."""
        return self.expert_epochs > 0

    def expert_phase(self) -> DistillRecipe:
        """The recipe of the experts' phase: its epochs and learning rate, no warm-up, the rest as before."""
        return dataclasses.replace(self, epochs=self.expert_epochs, lr=self.expert_lr, warmup_steps=0,
                                   expert_epochs=0, joint_epochs=0)

    def joint_phase(self) -> DistillRecipe:
        """The recipe of the joint phase: the experts' learning rate for ``joint_epochs``, no warm-up."""
        return dataclasses.replace(self.expert_phase(), epochs=self.joint_epochs)


def student_times(steps: int) -> Tensor:
    """The student's ``steps + 1`` times from 1 (noise) to 0, evenly spaced, as ``diffusion.time_grid``."""
    return torch.tensor(diffusion.time_grid(steps))


def check_teacher(teacher: unet.DiffusionModel, steps: int) -> int:
    """How many teacher steps make one student window: the teacher's grid must hold the student's (its step count a
    multiple of ``steps``); a clear error otherwise."""
    if teacher.cfg.steps % steps:
        raise ValueError(f"the teacher samples with {teacher.cfg.steps} steps, which {steps} student steps do not "
                         f"divide: choose student_steps among the divisors of {teacher.cfg.steps}")
    return teacher.cfg.steps // steps


@torch.no_grad()
def teacher_chunk(teacher: unet.DiffusionModel, labels: Tensor, steps: int, seed: int) -> Tensor:
    """The teacher's guided solve of ``labels`` from noise of ``seed``, kept at the student's times: N x (steps+1)
    x C x H x W, from the noise ``x_1`` to the product ``x_0`` (in [-1, 1], unclamped)."""
    cfg, every = teacher.cfg, check_teacher(teacher, steps)
    path = diffusion.sample_trajectory(teacher.eval(), (len(labels), *cfg.image.shape), cfg.objective, cfg.sampler,
                                       cfg.steps, labels, cfg.guidance, torch.Generator().manual_seed(seed),
                                       cfg.null_label)
    return torch.stack(path[::every], 1)


def _chunk_job(args: tuple[str, Tensor, int, int]) -> tuple[Tensor, float]:
    """One worker's chunk and its CPU seconds: the teacher loaded by name (a process gets names, not networks),
    solved on one thread."""
    name, labels, steps, seed = args
    start = time.process_time()
    with config.one_thread():
        states = teacher_chunk(checkpoints.load(name, kind="diffusion"), labels, steps, seed)
    return states, time.process_time() - start


CHUNK = 500  # trajectories per worker task; each chunk has its own seed, so the set does not depend on the jobs
SEED_OFFSET = 1_000_000  # the teacher's noise seeds start here: never the seeds (0, 1, ...) that measure the student


def teacher_states(name: str, n: int, steps: int, seed: int = 0, jobs: int = 2) -> dict[str, Tensor]:
    """``n`` trajectories of the shipped teacher ``name`` at the student's times (:func:`teacher_chunk`) for
    balanced classes in a seeded order: ``states``, ``labels`` and the workers' ``cpu_seconds``, drawn by ``jobs``
    processes of one thread. Kept in the cache folder under the teacher's weights' hash (about 31 MB per 1,000):
    a resumed run or a second recipe does not pay for them twice."""
    path = config.cache_dir() / (f"teacher-states-{checkpoints.weights_sha256(name)[:16]}-{n}-{steps}-{seed}"
                                 ".safetensors")
    if path.is_file():
        return files.read_tensors(path)
    teacher = checkpoints.load(name, kind="diffusion")
    labels = checkpoints.requests(teacher, n, seed)
    if labels is None:
        raise ValueError(f"{name} is unconditional; the student is distilled from a class-conditional teacher")
    check_teacher(teacher, steps)
    files.check_memory(n * (steps + 1) * math.prod(teacher.cfg.image.shape) * 4, "the teacher's trajectories")
    tasks = [(name, chunk, steps, SEED_OFFSET + 1_000 * seed + i) for i, chunk in enumerate(labels.split(CHUNK))]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(_chunk_job, tasks))
    result = {"states": torch.cat([s for s, _ in done]), "labels": labels,
              "cpu_seconds": torch.tensor(sum(c for _, c in done))}
    files.write_tensors(path, result)
    return result


def window_batch(states: Tensor, generator: torch.Generator, student: nn.Module | None = None,
                 labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One random window ``k`` per trajectory of ``states`` (N x (K+1) x ...): where it starts, its time ``t_k`` and
    the velocity whose Euler step lands on the teacher's ``x_{k+1}``, the student's target.

    The window starts at the teacher's ``x_k``, or, given the ``student`` (and the ``labels``), where the student's
    own Euler steps from the same noise reach at ``t_k``: its small errors add up over the steps, and a student
    trained only on the teacher's states never learns to come back from its own (DAgger, Ross et al. 2011)."""
    steps = states.shape[1] - 1
    times = student_times(steps)
    k = torch.randint(0, steps, (len(states),), generator=generator)
    rows = torch.arange(len(states))
    x = states[rows, k] if student is None else own_states(student, states[:, 0], labels, k, steps)
    dt = (times[k + 1] - times[k]).view(-1, *([1] * (x.dim() - 1)))
    return x, times[k], (states[rows, k + 1] - x) / dt


@torch.no_grad()
def own_states(student: nn.Module, noise: Tensor, labels: Tensor | None, k: Tensor, steps: int) -> Tensor:
    """Row ``i``'s state after ``k[i]`` of the student's ``steps``-step Euler solve from ``noise[i]`` (``k[i] = 0``:
    the noise itself)."""
    times, x = student_times(steps).tolist(), noise.clone()
    for j in range(int(k.max())):
        go = k > j  # the rows still on their way: each step runs the network on them alone
        y = None if labels is None else labels[go]
        x[go] = diffusion.ddim_step(x[go], student(x[go], torch.full((int(go.sum()),), times[j]), y), times[j],
                                    times[j + 1], "flow")
    return x


def distill_loss(net: nn.Module, states: Tensor, labels: Tensor, generator: torch.Generator,
                 own: bool = True) -> Tensor:
    """The student's loss on a batch of trajectories: the squared error of its velocity against the target of
    :func:`window_batch`, its windows starting on its ``own`` path or on the teacher's."""
    x, t, v = window_batch(states, generator, net if own else None, labels)
    return F.mse_loss(net(x, t, labels), v)


def end_to_end_loss(net: nn.Module, states: Tensor, labels: Tensor) -> Tensor:
    """The squared error of the student's whole Euler solve from each trajectory's noise against the teacher's
    product, times ``K^2`` (a velocity's error over one of the ``K`` windows): the student's own sampler, run with
    its gradients, so that a step's gradient holds what the later steps make of its error."""
    steps = states.shape[1] - 1
    end = diffusion.sample_trajectory(net, tuple(states[:, 0].shape), "flow", "euler", steps, labels,
                                      noise=states[:, 0])[-1]
    return F.mse_loss(end, states[:, -1]) * steps**2


def distill_step(model: nn.Module, opt: torch.optim.Optimizer, states: Tensor, labels: Tensor,
                 recipe: DistillRecipe, generator: torch.Generator, joint: bool = False) -> dict[str, float]:
    """One optimiser step of the student: :func:`distill_loss` (``joint``: plus ``joint_weight`` times
    :func:`end_to_end_loss` on the batch's first ``joint_batch`` trajectories), clipped at ``recipe.grad_clip``,
    applied. Chapter 08 runs it by hand."""
    loss = distill_loss(model, states, labels, generator, recipe.own_states)
    if joint:
        rows = slice(recipe.joint_batch)
        loss = loss + recipe.joint_weight * end_to_end_loss(model, states[rows], labels[rows])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    opt.step()
    return {"loss": float(loss.detach()), "grad_norm": float(norm)}


STUDENT_SAMPLING = {"sampler": "euler", "guidance": 1.0}  # how a student samples: its steps, no guidance


def student_config(teacher: unet.DiffusionConfig, steps: int, experts: bool = False) -> unet.DiffusionConfig:
    """The student's config: the teacher's network (one per step with ``experts``), sampled with ``steps`` Euler
    steps and no guidance."""
    return dataclasses.replace(teacher, steps=steps, experts=steps if experts else 1, **STUDENT_SAMPLING)


def student_of(teacher: unet.DiffusionModel, steps: int, experts: bool = False) -> unet.DiffusionModel:
    """The student before training: :func:`student_config`, each of its U-Nets a copy of the teacher's."""
    (net,) = unet.unets(teacher)
    student = unet.DiffusionModel(student_config(teacher.cfg, steps, experts))
    for expert in unet.unets(student):
        expert.load_state_dict(net.state_dict())
    return student.train()


class DistillFamily(DiffusionFamily):
    """The student in the workbook's training loop: diffusion's optimiser, schedule and moving average, with
    :func:`distill_step` (``joint``: with its end-to-end term) on batches of teacher trajectories instead of
    images."""

    def __init__(self, make: Callable[[], nn.Module], states: Tensor, labels: Tensor, recipe: DistillRecipe,
                 joint: bool = False) -> None:
        super().__init__(make, states, labels, recipe, None)  # type: ignore[arg-type]
        self.joint = joint

    def step(self, x: Tensor, y: Tensor | None, state: loop.State) -> dict[str, float]:
        self.schedule(state)
        return distill_step(self.net, self.optimizers["opt"], x, y, self.recipe, state.generator, self.joint)


def _phase(start: unet.DiffusionModel, experts: bool, drawn: dict[str, Tensor], recipe: DistillRecipe,
           ctx: Context, run: runs.Run, joint: bool = False) -> tuple[unet.DiffusionModel, loop.State]:
    """One phase of training: the student (:func:`student_of` ``start``; ``start`` itself when it already has
    its experts) in the workbook's loop on the teacher's trajectories, its state in ``run``; returns its moving
    average (CPU, eval mode) and the loop's state."""
    def make() -> unet.DiffusionModel:
        if start.cfg.experts > 1:  # already the student's shape: trained on as it is
            return copy.deepcopy(start).requires_grad_().train()
        return student_of(start, recipe.student_steps, experts)

    family = DistillFamily(make, drawn["states"], drawn["labels"], recipe, joint)
    state = loop.train(family, loop.Setup(run, ctx.seed, ctx.progress, ctx.resume, ctx.device, ctx.threads))
    return family.ema.cpu().eval(), state


def train_student(recipe: DistillRecipe, ctx: Context, jobs: int = 2) -> tuple[unet.DiffusionModel,
                                                                                list[loop.State], dict[str, Tensor]]:
    """The teacher's trajectories (:func:`teacher_states`), then the student trained on them: one U-Net for every
    step, then (``expert_epochs``) a copy of it per step, each trained on its own window (its run
    ``NAME-experts``), then (``joint_epochs``) all steps together (run ``NAME-joint``). Returns the student, each
    phase's loop state and the trajectories."""
    teacher = checkpoints.load(recipe.teacher, kind="diffusion")
    data.check_fits(teacher.cfg.image, ctx.dataset)
    check_teacher(teacher, recipe.student_steps)
    drawn = teacher_states(recipe.teacher, recipe.trajectories, recipe.student_steps, ctx.seed, jobs)
    student, state = _phase(teacher, False, drawn, recipe, ctx, ctx.run)
    states = [state]
    if recipe.experts:
        student, second = _phase(student, True, drawn, recipe.expert_phase(), ctx,
                                 runs.Run(f"{ctx.run.name}-experts", ctx.run.directory))
        states.append(second)
    if recipe.joint_epochs:
        student, third = _phase(student, recipe.experts, drawn, recipe.joint_phase(), ctx,
                                runs.Run(f"{ctx.run.name}-joint", ctx.run.directory), joint=True)
        states.append(third)
    return student, states, drawn


def joined_history(states: list[loop.State]) -> list[dict[str, float]]:
    """The phases' steps as one run: each phase's steps and CPU clock continued from where the last ended."""
    rows, step, cpu = [], 0, 0.0
    for state in states:
        rows += [{**r, "step": r["step"] + step, "cpu_seconds": r["cpu_seconds"] + cpu} for r in state.steps]
        step, cpu = step + state.step, cpu + state.cpu_seconds
    return rows


def against_teacher(metrics: dict[str, Any], teacher: dict[str, Any]) -> dict[str, Any]:
    """Issue 27's acceptance: the student's FID at most 15 % above its teacher's full sampler, in each ruler's space
    (both measured on the same number of samples, the same seed)."""
    rows = {"classifier": (metrics["fid"], teacher["fid"])}
    if "second_ruler" in metrics and "second_ruler" in teacher:
        rows["encoder"] = (metrics["second_ruler"]["fid"], teacher["second_ruler"]["fid"])
    return {space: {"student_fid": s, "teacher_fid": t, "ratio": round(s / t, 4), "within_15_percent": s <= 1.15 * t}
            for space, (s, t) in rows.items()}


BENCH_SAMPLES = 1000  # the student's point of chapter 08's sampler-steps bench, as many samples as the bench's


def train_entry(recipe: DistillRecipe, _baseline: None, ctx: Context) -> Trained:
    """``train diffusion-fast``: the student (:func:`train_student`), then both rulers on 10,000 samples with
    intervals, beside the teacher's shipped measures of its full sampler, and a point of chapter 08's sampler-steps
    bench (1,000 samples: ``bench``)."""
    student, states, drawn = train_student(recipe, ctx)
    if not ctx.measures:
        return Trained(student, {}, {})
    n = config.budget(10_000, 200)
    metrics = diffusion_measure.measure(ctx.name, student, n, ctx.seed, ctx.dataset,
                                        config.budget(bootstrap.REPLICATES, 20))
    teacher = checkpoints.read_meta(recipe.teacher)
    extra: dict[str, Any] = {
        "history": loss_curve(joined_history(states)),
        "train_cpu_seconds_steps": sum(state.cpu_seconds for state in states),
        "teacher_cpu_seconds": round(float(drawn["cpu_seconds"]), 1), "teacher_weights_sha256":
        teacher["weights_sha256"], "network_calls": diffusion.network_calls("euler", recipe.student_steps, False),
        "teacher_network_calls": diffusion.network_calls(teacher["config"]["sampler"], teacher["config"]["steps"],
                                                         teacher["config"]["guidance"] != 1.0),
        "parameters": unet.parameter_count(student.net),
        "bench": diffusion_measure.bench_row(ctx.name, student, config.budget(BENCH_SAMPLES, 30), ctx.seed,
                                             "distilled")}
    if teacher["metrics"].get("n") == n:
        extra["acceptance"] = against_teacher(metrics, teacher["metrics"])
    return Trained(student, metrics, extra)
