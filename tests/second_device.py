"""A second device on a CPU-only machine, for tests: catches the device mismatches a GPU run would
hit (a tensor on the GPU meeting one on the host) without a GPU.

Inside `second_device()`, tensors created on the device "meta" (or moved there with .to) are CPU
tensors in a wrapper that reports device "meta" and computes for real. An operation that mixes
such a tensor with a host tensor of one or more dimensions raises, as CUDA does; host 0-dim
tensors and host index tensors of indexing (which CUDA accepts) pass. So a computation whose
parameter stack lives on "meta" gives the very numbers it gives on the host, or fails where a GPU
would.

>>> import torch
>>> with second_device() as dev:
...     x = torch.ones(3, device=dev)
...     (x * 2).sum().item(), (x + 1).device.type, (x * 2).cpu().device.type
(6.0, 'meta', 'cpu')
>>> with second_device() as dev:
...     torch.ones(3, device=dev) + torch.ones(3)
Traceback (most recent call last):
RuntimeError: aten.add.Tensor mixes a tensor on meta with host tensors of shapes [(3,)]
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")
aten = torch.ops.aten
# CUDA moves host index tensors itself; copies between devices are what .to() is for
HOST_OPERANDS_OK = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default,
                    aten._to_copy.default, aten.copy_.default}


class OnDevice(torch.Tensor):
    """A host tensor `elem` that reports device DEVICE."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        out = torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(), dtype=elem.dtype,
                                                  device=DEVICE, requires_grad=elem.requires_grad,
                                                  storage_offset=elem.storage_offset())
        out.elem = elem
        return out

    def __repr__(self):
        return f"OnDevice({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func} on a second-device tensor outside second_device()")


def _is_device(d) -> bool:
    return isinstance(d, torch.device | str) and torch.device(d).type == DEVICE.type


class _Mode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        on, host = [], []

        def unwrap(x):
            if isinstance(x, OnDevice):
                on.append(x)
                return x.elem
            if isinstance(x, torch.Tensor) and x.dim() > 0:
                host.append(x)
            return x

        args, kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        if on and host and func not in HOST_OPERANDS_OK:
            raise RuntimeError(f"{func} mixes a tensor on {DEVICE.type} with host tensors of shapes "
                               f"{[tuple(t.shape) for t in host]}")
        target = kwargs.get("device")
        kwargs = tree_map(lambda d: torch.device("cpu") if _is_device(d) else d, kwargs)
        out = func(*args, **kwargs)
        if func is aten._local_scalar_dense.default:   # .item(): a Python number
            return out
        wrap = _is_device(target) if target is not None else bool(on) and func is not aten.copy_.default
        if func is aten.copy_.default:   # copying into a tensor keeps its device
            wrap = bool(on) and isinstance(args[0], torch.Tensor) and any(o.elem is args[0] for o in on)
            return OnDevice(out) if wrap else out
        return tree_map(lambda t: OnDevice(t) if wrap and isinstance(t, torch.Tensor) else t, out)


@contextlib.contextmanager
def second_device():
    """Yields the stand-in device (module docstring)."""
    with _Mode():
        yield DEVICE
