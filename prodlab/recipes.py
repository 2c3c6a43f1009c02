"""Recipes as data: frozen dataclasses that say how a model is trained, overridable from the command line.

A *recipe* is one frozen dataclass instance (``GANRecipe``, ``VAERecipe``, ``ClassifierRecipe``) and nothing else:
the command line that ran it is the *command*, a short text for a table is a *label*. This module is generic: it
turns ``--set key=value`` strings into a new recipe, with every value checked against the field's type (nanoGPT's
configurator, without ``exec``), and converts a recipe to JSON and back, so a checkpoint carries its recipe whole
(``checkpoints.save``) and ``recipe_from_json(recipe_to_json(r)) == r``. The named recipes themselves are in
``prodlab.training.registry``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import types
import typing
from typing import Any

import prodlab
from prodlab import config


class RecipeError(ValueError):
    """A ``--set`` override with an unknown key or a value of the wrong type; the message names the valid keys."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _parse(text: str, hint: Any) -> Any:
    """``text`` as a value of type ``hint`` (int, float, bool, str, tuples of those, ``X | None``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if text.strip().lower() == "none" and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(text, inner)
    if origin is tuple:
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        variadic = len(args) == 2 and args[1] is Ellipsis  # tuple[float, ...]
        inner = [args[0]] * len(parts) if variadic else list(args)
        if len(inner) != len(parts):
            raise ValueError(f"{text!r} needs {len(args)} comma-separated values")
        return tuple(_parse(p.strip(), h) for p, h in zip(parts, inner, strict=True))
    if hint is bool:
        return _parse_bool(text)
    if hint in (int, float, str):
        return hint(text)
    raise ValueError(f"fields of type {hint} cannot be set from the command line")


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def valid_keys(recipe: Any) -> str:
    """``key=default (type)`` for every field of ``recipe``'s dataclass, for error messages and ``recipes NAME``."""
    types_ = _field_types(type(recipe))
    return ", ".join(f"{k}={getattr(recipe, k)!r} ({_describe(h)})" for k, h in types_.items())


def override(recipe: Any, assignments: list[str]) -> Any:
    """A copy of ``recipe`` with ``key=value`` assignments applied, each value checked against the field's type.

    ``RecipeError`` (one line, naming the valid keys) for a malformed assignment, an unknown key or a bad value.
    """
    types_ = _field_types(type(recipe))
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep:
            raise RecipeError(f"--set {assignment!r}: expected key=value; keys of {type(recipe).__name__}: "
                              f"{', '.join(types_)}")
        if key not in types_:
            raise RecipeError(f"--set {key}: no such key in {type(recipe).__name__}; valid keys: {', '.join(types_)}")
        try:
            changes[key] = _parse(text, types_[key])
        except ValueError as err:
            raise RecipeError(f"--set {key}={text}: not a valid {_describe(types_[key])} ({err}); "
                              f"valid keys: {valid_keys(recipe)}") from None
    return dataclasses.replace(recipe, **changes)


def recipe_to_json(name: str, recipe: Any) -> dict[str, Any]:
    """The recipe as JSON: its registry name, its dataclass and every field (tuples become lists)."""
    return {"name": name, "type": type(recipe).__name__, "fields": dataclasses.asdict(recipe)}


def recipe_from_json(obj: dict[str, Any], cls: type) -> Any:
    """The inverse of :func:`recipe_to_json` for a recipe of dataclass ``cls`` (lists become tuples again)."""
    if obj.get("type") != cls.__name__:
        raise RecipeError(f"recipe of type {obj.get('type')!r}, expected {cls.__name__}")
    return from_json(cls, obj["fields"])


def _tuples(value: Any) -> Any:
    """JSON lists back to the (nested) tuples they were."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def from_json(cls: type, fields: dict[str, Any]) -> Any:
    """A frozen dataclass from the JSON of ``dataclasses.asdict``: nested dataclasses (a config's image spec, a
    latent prior's first stage) rebuilt by their field's type, lists turned back into tuples. A missing field
    takes its default; an unknown one is a ``RecipeError``."""
    if not isinstance(fields, dict):
        raise RecipeError(f"{cls.__name__}: expected a JSON object, got {type(fields).__name__}")
    types_ = _field_types(cls)
    unknown = sorted(set(fields) - set(types_))
    if unknown:
        raise RecipeError(f"fields {unknown} do not belong to {cls.__name__}")
    values = {}
    for key, value in fields.items():
        hint = types_[key]
        nested = hint if dataclasses.is_dataclass(hint) else None
        values[key] = from_json(nested, value) if nested is not None else _tuples(value)
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{cls.__name__}: {err}") from err


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, the commit and whether the tree had uncommitted changes."""
    version: dict[str, Any] = {"package": prodlab.__version__}
    try:
        run = {"cwd": config.REPO_ROOT, "capture_output": True, "text": True, "timeout": 10, "check": True}
        version["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        version["git_dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--", "prodlab"], **run).stdout)
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed package): the package version is all there is
    return version
