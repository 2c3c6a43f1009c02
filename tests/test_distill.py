"""The four-call student of the diffusion model (prodlab.training.distill; chapter 08, issue 27)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from prodlab import checkpoints, config, data, diffusion, exercises, runs
from prodlab.models import unet
from prodlab.training import distill, loop, registry
from prodlab.training.base import Context

SPEC = data.spec()


def _teacher(steps: int = 4, guidance: float = 1.5) -> unet.DiffusionModel:
    torch.manual_seed(0)
    model = unet.DiffusionModel(unet.DiffusionConfig(SPEC, width=8, steps=steps, guidance=guidance))
    for p in model.parameters():  # the U-Net starts at zero output; a teacher that moves its samples
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_the_teacher_states_are_its_own_solve_at_the_students_times():
    teacher, labels = _teacher(steps=4), torch.arange(6) % SPEC.n_classes
    states = distill.teacher_chunk(teacher, labels, 2, seed=3)
    assert states.shape == (6, 3, *SPEC.shape)
    path = diffusion.sample_trajectory(teacher, (6, *SPEC.shape), "flow", "heun", 4, labels, 1.5,
                                       torch.Generator().manual_seed(3), teacher.cfg.null_label)
    for k, j in enumerate((0, 2, 4)):  # the student's times 1, 0.5, 0 on the teacher's grid 1, 0.75, ..., 0
        assert torch.equal(states[:, k], path[j])
    assert not torch.allclose(states[:, 1], path[1])  # and not its neighbours


def test_a_student_grid_the_teacher_does_not_hold_is_refused():
    with pytest.raises(ValueError, match="divisors of 12"):
        distill.check_teacher(_teacher(steps=12), 5)
    assert distill.check_teacher(_teacher(steps=12), 4) == 3


def test_one_euler_step_along_the_target_lands_on_the_teachers_next_state():
    states = torch.randn(64, 5, *SPEC.shape, generator=torch.Generator().manual_seed(0))
    x, t, v = distill.window_batch(states, torch.Generator().manual_seed(1))
    times = distill.student_times(4)
    k = torch.round((1 - t) * 4).long()  # which window each row drew
    assert set(k.tolist()) == {0, 1, 2, 3} and torch.allclose(times[k], t)
    rows = torch.arange(64)
    assert torch.equal(x, states[rows, k])
    landed = x + (times[k + 1] - t).view(-1, 1, 1, 1) * v  # the student's Euler step with the perfect velocity
    assert torch.allclose(landed, states[rows, k + 1], atol=1e-5)


def test_on_its_own_path_a_window_starts_where_the_students_euler_steps_reach():
    teacher = _teacher()
    labels = torch.arange(32) % SPEC.n_classes
    states = distill.teacher_chunk(teacher, labels, 4, seed=0)
    student = distill.student_of(teacher, 4)
    x, t, v = distill.window_batch(states, torch.Generator().manual_seed(2), student, labels)
    own = diffusion.sample_trajectory(student, states[:, 0].shape, "flow", "euler", 4, labels, 1.0,
                                      noise=states[:, 0])  # the sampler the student ships with
    k, rows = torch.round((1 - t) * 4).long(), torch.arange(32)
    assert set(k.tolist()) == {0, 1, 2, 3}
    assert torch.allclose(x, torch.stack(own)[k, rows], atol=1e-6)
    assert not torch.allclose(x[k > 0], states[rows, k][k > 0], atol=1e-3)  # the student's path, not the teacher's
    landed = x + (distill.student_times(4)[k + 1] - t).view(-1, 1, 1, 1) * v
    assert torch.allclose(landed, states[rows, k + 1], atol=1e-5)  # and its target leads back onto the teacher's


def test_each_time_is_answered_by_the_expert_whose_window_holds_it():
    experts = distill.student_of(_teacher(), 4, experts=True).eval()
    nets = unet.unets(experts)
    assert experts.cfg.experts == 4 and len(nets) == 4
    for net in nets[1:]:  # experts that differ, so that a wrong dispatch shows
        for p in net.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
    grid = distill.student_times(4)
    assert experts.net.window(grid).tolist() == [0, 1, 2, 3, 3]  # t = 0 ends the last window
    t = torch.tensor([1.0, 0.9, 0.75, 0.7, 0.5, 0.3, 0.25, 0.1])
    assert experts.net.window(t).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # (t_{k+1}, t_k] is window k
    x, labels = torch.randn(8, *SPEC.shape), torch.arange(8) % SPEC.n_classes
    with torch.no_grad():
        mixed = experts(x, t, labels)
        for row, k in enumerate(experts.net.window(t).tolist()):
            alone = nets[k](x[row:row + 1], t[row:row + 1], labels[row:row + 1])
            assert torch.allclose(mixed[row:row + 1], alone, atol=1e-5), row
    assert not torch.allclose(nets[0](x[:1], t[:1], labels[:1]), nets[1](x[:1], t[:1], labels[:1]))


def test_a_student_of_experts_starts_as_its_teacher_and_round_trips_through_its_checkpoint(tmp_path):
    teacher = _teacher()
    student = distill.student_of(teacher, 4, experts=True).eval()
    (net,) = unet.unets(teacher)
    assert unet.parameter_count(student) == 4 * unet.parameter_count(teacher)
    x, t, labels = torch.randn(4, *SPEC.shape), torch.tensor([1.0, 0.75, 0.5, 0.25]), torch.arange(4)
    with torch.no_grad():
        assert torch.allclose(student(x, t, labels), net(x, t, labels), atol=1e-5)  # every expert is the teacher
    checkpoints.save("diffusion-fast", student, dataset=data.DEFAULT, recipe=None, command="x", seed=0,
                     train_seconds=0.0, metrics={}, directory=tmp_path)
    loaded = checkpoints.load("diffusion-fast", tmp_path, kind="diffusion")
    assert loaded.cfg == student.cfg and loaded.cfg.experts == 4
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), student.state_dict().values(),
                                                 strict=True))
    with pytest.raises(ValueError, match="experts must be >= 1"):
        dataclasses.replace(student.cfg, experts=0)


def test_distill_step_is_the_loss_backpropagated_and_applied():
    teacher = _teacher()
    states = distill.teacher_chunk(teacher, torch.arange(8) % SPEC.n_classes, 4, seed=0)
    labels = torch.arange(8) % SPEC.n_classes
    recipe = distill.DistillRecipe(trajectories=8, batch_size=8, grad_clip=1e9)
    a, b = distill.student_of(teacher, 4), distill.student_of(teacher, 4)
    assert a.cfg.sampler == "euler" and a.cfg.steps == 4 and a.cfg.guidance == 1.0
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), teacher.parameters(), strict=True))
    opt_a, opt_b = (torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0) for m in (a, b))
    row = distill.distill_step(a, opt_a, states, labels, recipe, torch.Generator().manual_seed(5))
    loss = distill.distill_loss(b, states, labels, torch.Generator().manual_seed(5))  # by hand
    opt_b.zero_grad()
    loss.backward()
    opt_b.step()
    assert row["loss"] == pytest.approx(float(loss.detach()))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_the_end_to_end_loss_is_the_students_own_solve_against_the_teachers_product():
    teacher, labels = _teacher(), torch.arange(8) % SPEC.n_classes
    states = distill.teacher_chunk(teacher, labels, 4, seed=0)
    student = distill.student_of(teacher, 4, experts=True)
    for net in unet.unets(student)[1:]:
        for p in net.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
    loss = distill.end_to_end_loss(student, states, labels)
    with torch.no_grad():
        end = diffusion.sample_trajectory(student, states[:, 0].shape, "flow", "euler", 4, labels, 1.0,
                                          noise=states[:, 0])[-1]  # the sampler the student ships with
    assert loss.item() == pytest.approx(16 * float((end - states[:, -1]).pow(2).mean()), rel=1e-5)
    loss.backward()
    for net in unet.unets(student):  # every step's network hears of the product's error
        assert net.head[-1].weight.grad.abs().sum() > 0


def test_a_joint_step_adds_the_weighted_end_to_end_term():
    teacher, labels = _teacher(), torch.arange(8) % SPEC.n_classes
    states = distill.teacher_chunk(teacher, labels, 4, seed=0)
    recipe = distill.DistillRecipe(trajectories=8, batch_size=8, joint_weight=3.0, joint_batch=5)
    rows = {}
    for joint in (False, True):
        student = distill.student_of(teacher, 4, experts=True)
        opt = torch.optim.AdamW(student.parameters(), lr=0.0)
        rows[joint] = distill.distill_step(student, opt, states, labels, recipe, torch.Generator().manual_seed(5),
                                           joint)["loss"]
    e2e = float(distill.end_to_end_loss(distill.student_of(teacher, 4, experts=True), states[:5], labels[:5]))
    assert e2e > 0 and rows[True] == pytest.approx(rows[False] + 3.0 * e2e, rel=1e-5)
    with pytest.raises(ValueError, match="joint_batch"):
        dataclasses.replace(recipe, joint_batch=0)


def test_training_the_student_lowers_its_loss_and_its_error_at_the_end(tmp_path, monkeypatch):
    teacher = _teacher()
    labels = torch.arange(64) % SPEC.n_classes
    states = distill.teacher_chunk(teacher, labels, 4, seed=0)
    recipe = distill.DistillRecipe(trajectories=64, batch_size=16, epochs=12, lr=2e-3, warmup_steps=5)

    def end_error(model):
        with torch.no_grad():
            x = diffusion.sample_trajectory(model, states[:, 0].shape, "flow", "euler", 4, labels, 1.0,
                                            noise=states[:, 0])[-1]
        return float((x - states[:, -1]).pow(2).mean())

    before = end_error(distill.student_of(teacher, 4))
    family = distill.DistillFamily(lambda: distill.student_of(teacher, 4), states, labels, recipe)
    state = loop.train(family, loop.Setup(runs.Run("distill-test", tmp_path), progress=False, threads=1))
    first, last = state.steps[0]["loss"], sum(r["loss"] for r in state.steps[-4:]) / 4
    assert last < 0.7 * first
    assert end_error(family.model.eval()) < 0.7 * before  # four Euler steps land nearer the guided solve's end


def test_the_recipe_trains_one_network_then_one_per_window(tmp_path, monkeypatch):
    teacher, labels = _teacher(), torch.arange(32) % SPEC.n_classes
    states = distill.teacher_chunk(teacher, labels, 4, seed=0)
    monkeypatch.setattr(distill.checkpoints, "load", lambda name, kind=None: teacher)
    monkeypatch.setattr(distill, "teacher_states", lambda *args: {"states": states, "labels": labels,
                                                                  "cpu_seconds": torch.tensor(1.0)})
    recipe = distill.DistillRecipe(trajectories=32, batch_size=16, epochs=1, warmup_steps=1, expert_epochs=2,
                                   joint_epochs=1, joint_batch=4)
    phase, joint = recipe.expert_phase(), recipe.joint_phase()
    assert (phase.epochs, phase.lr, phase.warmup_steps, phase.experts, phase.joint_epochs) == (
        2, recipe.expert_lr, 0, False, 0)
    assert (joint.epochs, joint.lr, joint.warmup_steps, joint.experts, joint.joint_epochs) == (
        1, recipe.expert_lr, 0, False, 0)
    ctx = Context("diffusion-fast", None, data.DEFAULT, 0, False, False, runs.Run("phases", tmp_path), False, None, 1)
    student, phases, _ = distill.train_student(recipe, ctx)
    assert student.cfg.experts == 4 and [s.step for s in phases] == [2, 4, 2]
    for run in ("phases", "phases-experts", "phases-joint"):  # each phase resumable
        assert (tmp_path / run).is_dir()
    heads = [net.head[-1].weight for net in unet.unets(student)]
    assert not torch.equal(heads[0], heads[3])  # started equal, each trained on its own window
    history = distill.joined_history(phases)
    assert [r["step"] for r in history] == list(range(1, 9))
    assert history[2]["cpu_seconds"] > history[1]["cpu_seconds"]  # the second phase's clock goes on
    assert history[6]["loss"] > history[5]["loss"]  # the joint phase's loss holds the end-to-end term
    two = distill.train_student(dataclasses.replace(recipe, joint_epochs=0), dataclasses.replace(
        ctx, run=runs.Run("two", tmp_path)))
    assert two[0].cfg.experts == 4 and len(two[1]) == 2
    single = distill.train_student(dataclasses.replace(recipe, expert_epochs=0, joint_epochs=0), dataclasses.replace(
        ctx, run=runs.Run("single", tmp_path)))[0]
    assert single.cfg.experts == 1 and len(unet.unets(single)) == 1


def test_acceptance_compares_each_space_with_the_teachers_full_sampler():
    teacher = {"fid": 2.0, "second_ruler": {"fid": 0.10}}
    verdict = distill.against_teacher({"fid": 2.2, "second_ruler": {"fid": 0.12}}, teacher)
    assert verdict["classifier"]["within_15_percent"] and verdict["classifier"]["ratio"] == pytest.approx(1.1)
    assert not verdict["encoder"]["within_15_percent"] and verdict["encoder"]["ratio"] == pytest.approx(1.2)


def test_the_registered_student_samples_in_four_unguided_calls():
    entry = registry.entry("diffusion-fast")
    cfg = entry.config(SPEC)
    assert (cfg.sampler, cfg.steps, cfg.guidance) == ("euler", entry.recipe.student_steps, 1.0)
    assert diffusion.network_calls(cfg.sampler, cfg.steps, cfg.guidance != 1.0) == 4
    shipped = checkpoints.read_meta("diffusion-fast")
    assert shipped["network_calls"] == 4 and shipped["teacher_network_calls"] == 46
    assert shipped["teacher_weights_sha256"] == checkpoints.read_meta("diffusion")["weights_sha256"]
    assert cfg == unet.DiffusionConfig(**{**shipped["config"], "image": SPEC})


def test_a_recipe_with_too_few_trajectories_is_refused():
    with pytest.raises(ValueError, match="trajectories >= batch_size"):
        dataclasses.replace(distill.DistillRecipe(), trajectories=10)


def test_the_teachers_trajectories_are_kept_under_its_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "cache_dir", lambda: tmp_path)
    calls = []
    monkeypatch.setattr(distill, "ProcessPoolExecutor", _InProcess)
    monkeypatch.setattr(distill, "_chunk_job", lambda args: calls.append(args) or (
        distill.teacher_chunk(_teacher(steps=12), args[1], args[2], args[3]), 1.0))
    first = distill.teacher_states("diffusion", 12, 4, seed=0)
    again = distill.teacher_states("diffusion", 12, 4, seed=0)
    assert len(calls) == 1 and all(args[3] >= distill.SEED_OFFSET for args in calls)  # never the measuring seeds
    assert torch.equal(first["states"], again["states"]) and first["states"].shape == (12, 5, *SPEC.shape)
    assert sorted(first["labels"].tolist()) == sorted((torch.arange(12) % SPEC.n_classes).tolist())


class _InProcess:
    """A stand-in for the process pool: the same map, in this process (the test's stub is not picklable)."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, tasks):
        return map(fn, tasks)


def test_the_trainer_runs_in_quick_mode(tmp_path, monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")
    monkeypatch.setattr(config, "cache_dir", lambda: tmp_path)
    recipe = dataclasses.replace(registry.entry("diffusion-fast").quick, trajectories=64, batch_size=32)
    ctx = Context("diffusion-fast", registry.entry("diffusion-fast").config(SPEC), data.DEFAULT, 0, False, False,
                  runs.Run("fast", tmp_path), with_baseline=False, threads=1)
    student, phases, drawn = distill.train_student(recipe, ctx, jobs=1)
    assert [state.step for state in phases] == [2, 2, 2] and drawn["states"].shape[:2] == (64, 5)
    assert student.cfg.steps == 4 and student.cfg.experts == 4 and not student.training


def test_the_window_velocity_exercise_accepts_the_chord_and_names_two_mistakes(capsys):
    exercises.check_window_velocity(lambda x, x_next, t, t_next: (x_next - x) / (t_next - t))
    assert capsys.readouterr().out.strip() == "window velocity: correct"
    for wrong, hint in ((lambda x, x_next, t, t_next: x_next - x, "divide by the time step"),
                        (lambda x, x_next, t, t_next: (x_next - x) / (t - t_next), "time runs backwards")):
        with pytest.raises(exercises.ExerciseFailed, match=hint):
            exercises.check_window_velocity(wrong)
    exercises.check_window_velocity(lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    assert capsys.readouterr().out.startswith("window velocity: not done yet - ")
