"""``python -m bench.commands.train_ccnet``: the CC-Net sanity training of ``methods.train_ccnet`` with its
options; prints the loss and matching accuracy before and after training."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from methods.train_ccnet import sanity_check


def main(argv: Sequence[str] | None = None) -> None:
    from methods.refsr_net import refsr_net, refsr_net_x4

    parser = argparse.ArgumentParser(description="CC-Net sanity training on homography-warped sample photos")
    parser.add_argument("--scale", type=int, choices=(4, 8), default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--crops", type=int, default=1, help="crops per step")
    parser.add_argument("--queries", type=int, default=8, help="k: k x k LR-grid queries per crop")
    parser.add_argument("--radius", type=int, default=8, help="search-map radius r in training (paper: 64)")
    parser.add_argument("--eval-pairs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the trained CC-Net state_dict here")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    method = refsr_net(scale=8) if args.scale == 8 else refsr_net_x4(scale=4)
    summary = sanity_check(
        method,
        steps=args.steps,
        crops_per_step=args.crops,
        queries=args.queries,
        radius_px=args.radius,
        eval_pairs=args.eval_pairs,
        seed=args.seed,
    )
    losses = summary["losses"]
    assert isinstance(losses, list)
    print(
        f"scale x{args.scale}, steps {args.steps}, crops/step {args.crops}, queries {args.queries}^2, "
        f"r {args.radius}, search radius {method.config.search_radius_px}, threads {torch.get_num_threads()}, "
        f"train {summary['train_seconds']:.1f} s"
    )
    print(
        f"loss first 10 mean {np.mean(losses[:10]):.4f}, last 10 mean {np.mean(losses[-10:]):.4f} "
        f"(uniform over the map: {np.log((2 * args.radius + 1) ** 2):.4f})"
    )
    print(f"accuracy before {summary['accuracy_before']}")
    print(f"accuracy after  {summary['accuracy_after']}")
    if args.save:
        torch.save(method.module.ccnet.state_dict(), args.save)


if __name__ == "__main__":
    main()
