"""Cost of one training step of the chapter-2 models on this machine (``make bench``).

Times forward + backward + Adam on a batch of 512 points of ``default_gmm2d()`` for
* RealNVP (8 affine coupling layers, 128 hidden units): the discrete flow;
* a CNF (MLP vector field, 64 hidden units, RK4 with 8 steps) with the exact 2-D trace;
* the same CNF with Hutchinson's estimator (one Rademacher probe);
and sampling 2000 points from each. One CPU thread (the models are tiny; more threads
only add overhead). Writes ``bench/results/flows.json``. Not a test: numbers depend on the
machine. Run: ``.venv/bin/python bench/bench_flows.py``.
"""

from __future__ import annotations

import os
import platform

import torch

import dmlib
from dmlib.cnf import CNF, VectorField, cnf_nll_loss
from dmlib.data import default_gmm2d
from dmlib.flows import RealNVP, flow_nll_loss

from _common import RESULTS, timeit, write_json  # noqa: E402  (bench/ is on sys.path)

OUT = RESULTS / "flows.json"


def main() -> dict:
    torch.set_num_threads(1)
    dmlib.seed_everything(0)
    x = default_gmm2d().sample(512, generator=0)
    flow = RealNVP(2, n_layers=8, hidden=128)
    cnf = CNF(VectorField(2, hidden=64, depth=2), n_steps=8, method="rk4")

    def hutch(model, batch, generator=None):
        return -model.log_prob(batch, trace="hutchinson").mean()

    results = {}
    for name, model, loss_fn in [("realnvp", flow, flow_nll_loss), ("cnf_exact", cnf, cnf_nll_loss),
                                 ("cnf_hutchinson", cnf, hutch)]:
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model, x).backward()
            opt.step()
        results[name] = {"train_step_ms": 1e3 * timeit(step),
                         "params": sum(p.numel() for p in model.parameters())}
    results["realnvp"]["sample_2000_ms"] = 1e3 * timeit(lambda: flow.sample(2000))
    results["cnf_exact"]["sample_2000_ms"] = 1e3 * timeit(lambda: cnf.sample(2000))
    info = {"machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": 1, "batch": 512,
            "results": results}
    write_json(OUT, info)
    for name, r in results.items():
        extra = f", sample 2000: {r['sample_2000_ms']:.1f} ms" if "sample_2000_ms" in r else ""
        print(f"{name:15s} {r['params']:6d} params  train step {r['train_step_ms']:7.1f} ms{extra}")
    return info


if __name__ == "__main__":
    main()
