"""Glass box: show the package's own code in a notebook, and walk a model's layers on a real input.

Every chapter shows the code that matters from the package itself (issue "Open the box"): :func:`show` renders the
source of a function or class with ``inspect.getsource``, syntax-highlighted by ``IPython.display.Code``, so what
the reader sees *is* the code that runs and can never drift from it. :func:`shape_walk` runs a module on an input
and lists each layer's output shape (input -> each layer -> output), as the model chapters (02, 03) show them.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from IPython.display import Code
from torch import nn


def source(*objs: Any) -> str:
    """The source code of each object (function, class, method, module), separated by a blank line."""
    return "\n\n".join(inspect.getsource(obj).rstrip() for obj in objs) + "\n"


def show(*objs: Any) -> Code:
    """Syntax-highlighted source of ``objs`` from the installed package (put it last in a cell to display it).

    ``Code`` carries ``text/html`` (highlighted) and ``text/plain``, so it renders in JupyterLab, in nbconvert's HTML
    and in a static book alike.
    """
    return Code(source(*objs), language="python")


class LayerShape(NamedTuple):
    name: str  # dotted path inside the model, e.g. "net.0"
    kind: str  # the layer's class name
    shape: tuple[tuple[int, ...], ...]  # one shape per tensor the layer returned
    params: int  # its own trainable parameters


def _shapes(out: Any) -> tuple[tuple[int, ...], ...]:
    """Shapes of a layer output: a tensor, or a tuple/list of tensors (e.g. an encoder's ``(mu, logvar)``)."""
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape),)
    if isinstance(out, (tuple, list)):
        return tuple(s for item in out for s in _shapes(item))
    return ()


def layer_shapes(model: nn.Module, *inputs: Any, **kwargs: Any) -> list[LayerShape]:
    """Run ``model(*inputs, **kwargs)`` without gradients and record every leaf layer's output, in call order.

    A leaf layer is a module without children (Conv2d, BatchNorm2d, LeakyReLU, ...); a layer called twice (a shared
    discriminator on real and fake) appears twice. The model's mode (train/eval) is left as it was.
    """
    rows: list[LayerShape] = []
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]

    def hook_for(name: str):
        def hook(module: nn.Module, _inputs: Any, out: Any) -> None:
            own = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
            rows.append(LayerShape(name, type(module).__name__, _shapes(out), own))
        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in leaves]
    try:
        with torch.no_grad():
            model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def _fmt(shape: tuple[tuple[int, ...], ...]) -> str:
    return ", ".join("x".join(map(str, s)) for s in shape) or "-"


def shape_walk(model: nn.Module, *inputs: Any, **kwargs: Any) -> list[LayerShape]:
    """Print input -> each leaf layer -> output shape of ``model`` on ``inputs``, and return the rows."""
    rows = layer_shapes(model, *inputs, **kwargs)
    width = max([len(r.name) for r in rows] + [5])
    kind_width = max([len(r.kind) for r in rows] + [5])
    print(f"{'input':{width}s}  {'':{kind_width}s}  {_fmt(_shapes(list(inputs)))}")
    for r in rows:
        params = f"{r.params:,} params" if r.params else ""
        print(f"{r.name:{width}s}  {r.kind:{kind_width}s}  {_fmt(r.shape):18s} {params}".rstrip())
    return rows
