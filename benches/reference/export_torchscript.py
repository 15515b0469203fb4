#!/usr/bin/env python3
"""Exports a flowvae checkpoint through this folder's PyTorch reference as a TorchScript module
with the interface of `vae eval --model` (README, "Evaluate your own model"), so that one model can
be evaluated both ways: natively (`vae eval --run`) and as any PyTorch model would be.

    python export_torchscript.py CHECKPOINT OUT.pt [--data DATA.safetensors --data-out X.npy]

The module has `log_likelihood(x, z)` (the decoder's Bernoulli log-likelihood), the prior left to
the default N(0, I) as in flowvae, and `propose_from_noise(x, eps)` (the encoder's Gaussian and
the IAF flow applied to the estimator's noise; with it `vae eval --model` gives the same noise to
the same image as `vae eval --run`). It is traced (torch.jit.trace_module) in eval mode: batch
norm uses its running statistics. A traced module cannot tell its latent size (no
`sample_prior` or `propose`), so give it: `vae eval --model OUT.pt --latent-dim D ...`.

`--data` converts the `test_bin` tensor that `vae bench --phase export` writes (the run's
fixed-binarized test images, uint8 0 or 255) into a .npy file for `vae eval --data`.
"""

import argparse
import os
import sys
from typing import Tuple

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flowvae_ref  # noqa: E402

HALF_LN_2PI = 0.5 * flowvae_ref.LN_2PI


class Exported(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x):
        return x

    def log_likelihood(self, x, z):
        logits = self.vae.dec(z)
        return -self.vae.rec(logits, x.view(logits.shape))

    def propose_from_noise(self, x, eps) -> Tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma, c = self.vae.encode(x.view(-1, 1, 28, 28))
        k, n, d = eps.shape
        z0 = mu + log_sigma.exp() * eps
        log_q0 = (eps.square() * -0.5 - log_sigma - HALF_LN_2PI).sum(-1)
        cc = None if c is None else c.unsqueeze(0).expand(k, n, c.shape[-1]).flatten(0, 1)
        zt, log_det = self.vae.run_flow(z0.flatten(0, 1), cc)
        return zt.view(k, n, d), log_q0 - log_det.view(k, n)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--data", help="data.safetensors of `vae bench --phase export`")
    p.add_argument("--data-out", help="where to write its test_bin as .npy")
    args = p.parse_args()
    vae, _ = flowvae_ref.build(args.checkpoint, torch.device("cpu"))
    vae.eval()
    for q in vae.parameters():
        q.requires_grad_(False)
    model = Exported(vae).eval()
    d = vae.latent
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    traced = torch.jit.trace_module(
        model,
        {
            "forward": (x,),
            "log_likelihood": (x, torch.randn(3, d)),
            "propose_from_noise": (x, torch.randn(2, 3, d)),
        },
        check_trace=False,
    )
    # Shapes other than the example's: a different batch and sample count must agree with eager.
    x2, z2, e2 = torch.bernoulli(torch.full((5, 784), 0.5)), torch.randn(5, d), torch.randn(4, 5, d)
    with torch.no_grad():
        assert torch.allclose(traced.log_likelihood(x2, z2), model.log_likelihood(x2, z2), atol=1e-4)
        a, b = traced.propose_from_noise(x2, e2), model.propose_from_noise(x2, e2)
        assert all(torch.allclose(u, v, atol=1e-4) for u, v in zip(a, b))
    traced.save(args.out)
    print(f"wrote {args.out} (latent size {d})")
    if args.data:
        import numpy as np

        data = flowvae_ref.read_safetensors(args.data)
        test = data["test_bin"].numpy().astype(np.uint8)
        np.save(args.data_out, test)
        print(f"wrote {args.data_out}: {test.shape[0]} test images")


if __name__ == "__main__":
    main()
