"""Small torch helpers: device resolution, seeding without global side effects, and pickling through the CPU."""

import contextlib
import copy
import warnings

import numpy as np
import torch


def resolve_device(device):
    """Turn the ``device`` parameter into a concrete ``torch.device``.

    ``'auto'`` picks CUDA when it is available, else the CPU. The estimator
    stores the result in a fitted attribute and leaves its parameter alone, so
    that ``clone`` and ``get_params`` keep the user's choice.
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'."
        )
    return resolved


def seed_from(random_state):
    """A 31-bit integer seed drawn from a scikit-learn ``random_state``."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def torch_seed(seed):
    """Seed torch's CPU generator inside the block and restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n):
    """Run with ``n`` torch threads, as a Dask worker does with one thread
    (distributed sets OMP_NUM_THREADS=1). The backbone's convolutions sum in an
    order that depends on the thread count, so comparing results bit for bit
    needs the same count on both sides."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchStateMixin:
    """Pickle torch modules through the CPU, so that a model fitted on a GPU
    loads on a machine without one (the skorch approach)."""

    _torch_attributes = ()

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never alter the live estimator
        for name in self._torch_attributes:
            if name in state:
                state[name] = copy.deepcopy(state[name]).cpu()
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "device_" in state:
            if self.device_.type == "cuda" and not torch.cuda.is_available():
                warnings.warn("the model was fitted on CUDA, which is not available here; using the CPU.",
                              stacklevel=2)
                self.device_ = torch.device("cpu")
            for name in self._torch_attributes:
                if name in state:
                    getattr(self, name).to(self.device_)
