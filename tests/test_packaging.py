"""pyproject.toml is the one list of truth; environment.yml, the Makefile and CI must agree with it.

requirements.lock pins the exact versions that passed (made by `make lock`): every install uses it, so it must pin
every dependency pyproject.toml names, within pyproject's bounds, and the environment running the tests must match it.
"""

import re
import tomllib
from importlib import metadata

import yaml
from conftest import make_recipe
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from prodlab import config

ROOT = config.REPO_ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _direct_requirements() -> list[Requirement]:
    """The dependencies pyproject.toml names: the base ones and those of every extra (dev)."""
    project = _pyproject()["project"]
    deps = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        deps += extra
    return [Requirement(dep) for dep in deps]


def _lock_text() -> str:
    return (ROOT / "requirements.lock").read_text()


def _lock() -> dict[str, Version]:
    """requirements.lock's pins, by normalised name; each line must be an exact `name==version` pin and nothing else."""
    pins = {}
    for line in _lock_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assert "--hash" not in line and not line.startswith("-"), f"not a plain pin: {line!r}"
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not an exact == pin: {line!r}"
        assert not (req.marker or req.extras or req.url), f"not a plain pin: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"pinned twice: {name}"
        pins[name] = Version(specs[0].version)
    return pins


def _lock_python() -> tuple[int, int]:
    """The Python (major, minor) the lock was made with, from its header ("Made with Python 3.11.7 on ...")."""
    match = re.search(r"^# Made with Python (\d+)\.(\d+)", _lock_text(), re.MULTILINE)
    assert match, "requirements.lock's header does not say which Python made it"
    return int(match[1]), int(match[2])


def _applies_to_lock(req: Requirement) -> bool:
    """Whether the requirement's marker (e.g. python_version < '3.11') holds for the Python the lock was made with."""
    major, minor = _lock_python()
    return req.marker is None or req.marker.evaluate({"python_version": f"{major}.{minor}", "extra": ""})


def test_runtime_and_dev_dependencies_cover_the_brief():
    project = _pyproject()["project"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert {"torch", "torchvision", "matplotlib", "ipywidgets", "jupyterlab", "tqdm", "safetensors"} <= names
    dev = {dep.split(">")[0].strip().lower() for dep in project["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval", "ruff"} <= dev
    assert project["requires-python"] == ">=3.11"


def test_environment_yml_installs_this_package_with_its_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "prodlab"
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    major, minor = map(int, python.split("=")[1].split(".")[:2])
    assert (major, minor) >= (3, 10)
    assert "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    extras = _pyproject()["project"]["optional-dependencies"]
    assert f'-e ".[{",".join(extras)}]"' in pip_section


def test_readme_commands_exist_in_the_makefile():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("figures", "test", "test-integration", "lab"):
        assert f"make {target}" in readme
        assert f"\n{target}:" in makefile


def test_make_test_leaves_out_the_integration_tier_and_ci_runs_both():
    target = {name: make_recipe(name) for name in ("test", "test-integration")}
    assert '-m "not integration"' in target["test"] and "-m integration tests" in target["test-integration"]
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands.index("make test") < commands.index("make test-integration")  # the README's command first


def test_lock_is_exact_pins_of_everything_but_prodlab():
    pins = _lock()
    assert len(pins) > 50, "requirements.lock should pin the whole environment, transitive packages included"
    assert "prodlab" not in pins
    assert {"torch", "numpy", "jupyter-book", "pip", "setuptools"} <= set(pins), "pip freeze --all, pip included"
    assert "make lock" in _lock_text(), "the lock's header should say how to refresh it"


def test_lock_pins_every_dependency_that_pyproject_names():
    pins = _lock()
    missing = [
        str(req) for req in _direct_requirements() if _applies_to_lock(req) and canonicalize_name(req.name) not in pins
    ]
    assert not missing, f"requirements.lock lacks {missing}: run `make lock`"


def test_lock_pins_satisfy_pyproject_bounds():
    pins = _lock()
    outside = [
        f"{req} (locked {pins[canonicalize_name(req.name)]})"
        for req in _direct_requirements()
        if _applies_to_lock(req)
        and canonicalize_name(req.name) in pins
        and not req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True)
    ]
    assert not outside, f"requirements.lock pins versions pyproject.toml excludes: {outside}; run `make lock`"


def test_installed_direct_dependencies_match_the_lock():
    """The environment running the tests is the locked one (`make setup` reinstalls when the lock changes)."""
    pins = _lock()
    drift = []
    for req in _direct_requirements():
        name = canonicalize_name(req.name)
        if (req.marker is not None and not req.marker.evaluate({"extra": ""})) or name not in pins:
            continue
        try:
            installed = Version(metadata.version(req.name))
        except metadata.PackageNotFoundError:
            drift.append(f"{name} not installed (locked {pins[name]})")
            continue
        if installed != pins[name]:
            drift.append(f"{name} {installed} installed, {pins[name]} locked")
    assert not drift, f"the environment differs from requirements.lock: {drift}; reinstall with `make setup`"


def test_environment_yml_uses_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    # conda writes this list to a requirements file next to environment.yml, so the path is relative to it
    assert pip_section[0] == "-c requirements.lock", "environment.yml's pip list should start with the lock"
    assert (ROOT / "requirements.lock").is_file()
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    assert tuple(map(int, python.split("=")[1].split(".")[:2])) == _lock_python(), "python should be the lock's"


def test_makefile_installs_with_the_lock_and_never_refreshes_it_by_itself():
    makefile = (ROOT / "Makefile").read_text()
    stamp_rule = next(line for line in makefile.splitlines() if line.startswith("$(STAMP):"))
    assert "requirements.lock" in stamp_rule.split(":", 1)[1], "a new lock should reinstall .venv"
    assert 'uv pip install --quiet --compile-bytecode -c requirements.lock -e ".[dev]"' in makefile, (
        "the install should use the lock, and compile the modules once (this machine never writes bytecode itself)")
    assert "pip install --quiet -c requirements.lock uv" in makefile, "uv itself is the locked one"
    assert "\nlock:" in makefile
    for line in makefile.splitlines():
        target, sep, prerequisites = line.partition(":")
        if sep and not line.startswith(("\t", "#", ".PHONY")) and "=" not in target:
            assert "lock" not in prerequisites.split(), f"`make lock` must be run by hand, not by {target}"
    assert "make lock" in (ROOT / "README.md").read_text()
