"""Choosing a torch device, with one clear error when the installed build cannot use it."""

from __future__ import annotations

from .errors import UserError


def resolve_device(name: str):
    """`torch.device(name)`, checked to be usable here before any output is written."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    build = f"torch {torch.__version__}"
    if device.type == "cuda":
        if torch.version.cuda is None:
            raise UserError(f"--device {name}: the installed {build} is a CPU-only build; install a CUDA build of "
                            "torch (the set-up's TORCH=... option, see the README) or use --device cpu")
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: {build} (CUDA {torch.version.cuda}) finds no GPU on this machine; "
                            "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), "
                            f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {name}: {build} has no usable MPS backend here; use --device cpu")
    elif device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except Exception as e:  # any backend failure is the same fact for the user
            raise UserError(f"--device {name}: not usable with {build} ({type(e).__name__}); use --device cpu") from None
    return device
