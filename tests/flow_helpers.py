"""Tiny flows and random features shared by the flow and training tests."""

import torch

TINY = [(4, 4, 4), (8, 2, 2)]


def inputs(shapes, n=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, *s, generator=g, dtype=dtype) for s in shapes]


def randomise(flow, seed=0):
    """Random weights everywhere (the last convolutions start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow
