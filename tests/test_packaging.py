"""pyproject.toml is the one list of truth; environment.yml, the Makefile and CI must agree with it."""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import yaml

from prodlab import config

ROOT = config.REPO_ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_and_dev_dependencies_cover_the_brief():
    project = _pyproject()["project"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert {"torch", "torchvision", "matplotlib", "ipywidgets", "jupyterlab", "tqdm", "safetensors"} <= names
    dev = {dep.split(">")[0].strip().lower() for dep in project["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval", "ruff"} <= dev
    assert project["requires-python"] == ">=3.10"


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
    assert pip_section == [f'-e ".[{",".join(extras)}]"']


def test_readme_commands_exist_in_the_makefile():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("figures", "test", "lab"):
        assert f"make {target}" in readme
        assert f"\n{target}:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
