"""Time of a training step of the flow: FrEIA's ``AllInOneBlock`` against ``FlowStep``.

``FlowStep`` computes the same function as FrEIA's block with fewer passes
over the data. Both are timed on the same flow (the Lite0 preset's feature
shapes at 256×256, a batch of four, random non-zero weights), alternating
between them so that the machine's load falls on both alike; each run is the
mean of 15 steps after 3 of warm-up, and the table shows the median and the
fastest of 12 runs. Writes its table into ``docs/benchmarks/speed.rst``.

Usage: ``python benchmarks/bench_flow_step.py``
"""

import statistics
import time

import FrEIA.modules as Fm
import torch

from _report import write_table
from sklearn_uflow.flow import FlowStep, build_uflow
from sklearn_uflow.training import negative_log_likelihood

SHAPES = [(24, 64, 64), (40, 32, 32), (112, 16, 16)]  # Lite0 at 256x256, finest first
FORWARDS = {"FrEIA's AllInOneBlock": Fm.AllInOneBlock.forward, "FlowStep": FlowStep.forward}


def main(runs=12, steps=15):
    flow = build_uflow(SHAPES, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # weights like a trained flow's, not the identity it starts as
        for p in flow.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    optimizer = torch.optim.SGD(flow.parameters(), lr=0.0)  # the weights stay as they are
    features = [torch.randn(4, *shape, generator=generator) for shape in SHAPES]

    def step():
        latents, log_det = flow(features)
        optimizer.zero_grad()
        negative_log_likelihood(latents, log_det).mean().backward()
        optimizer.step()

    times = {name: [] for name in FORWARDS}
    try:
        for _ in range(runs):
            for name, forward in FORWARDS.items():
                FlowStep.forward = forward
                for _ in range(3):
                    step()
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                times[name].append((time.perf_counter() - start) / steps * 1000)
    finally:
        FlowStep.forward = FORWARDS["FlowStep"]
    reference = statistics.median(times["FrEIA's AllInOneBlock"])
    rows = [[name, f"{statistics.median(t):.1f}", f"{min(t):.1f}", f"{statistics.median(t) / reference:.2f}"]
            for name, t in times.items()]
    for row in rows:
        print(row, flush=True)
    write_table("bench_flow_step", "A training step of the flow",
                ["forward pass of the steps", "ms per step (median)", "ms per step (fastest)", "relative"], rows,
                notes="Forward, backward and optimiser step of the flow on the Lite0 preset's feature shapes at "
                      "256×256 (a batch of four), alternating between the two forward passes, 12 runs of 15 steps "
                      "(``benchmarks/bench_flow_step.py``). The inverse runs FrEIA's code in both.")


if __name__ == "__main__":
    main()
