"""A small PyTorch VAE, trained for about a minute on MNIST and exported for `vae eval --model`.

    python examples/torchscript/train_and_export.py [--data-dir DIR] [--seconds 60] [--out DIR]

It reads MNIST from flowvae's data folder (`cargo xtask bootstrap` puts it in
~/.cache/flowvae/data/mnist), trains a Bernoulli VAE with a Gaussian encoder (784-300-2x16,
16-300-784) on dynamically binarized digits, and writes, into --out (default: this folder):

- vae.pt: the model as TorchScript, with the methods `vae eval --model` calls:
  log_likelihood(x, z), propose(x, k), sample_data(z) (the prior is the default N(0, I));
- test_x.npy: the 10 000 test digits as uint8 grey levels, for `--binarize fixed`.

Then:

    vae eval --model examples/torchscript/vae.pt --data examples/torchscript/test_x.npy \
        --binarize fixed --n 1000 --k 1000

Only `import torch` and numpy are needed (pip install torch==2.11.0 numpy).
"""

import argparse
import gzip
import math
import os
import time
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

LATENT = 16
HALF_LOG_2PI = 0.9189385332046727  # TorchScript reads a global float only as a literal


def read_idx_images(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    n, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)


class Vae(torch.nn.Module):
    def __init__(self, latent: int = LATENT, hidden: int = 300):
        super().__init__()
        self.latent = latent
        self.enc = torch.nn.Sequential(
            torch.nn.Linear(784, hidden), torch.nn.Softplus(), torch.nn.Linear(hidden, 2 * latent)
        )
        self.dec = torch.nn.Sequential(
            torch.nn.Linear(latent, hidden), torch.nn.Softplus(), torch.nn.Linear(hidden, 784)
        )

    def forward(self, x):
        return self.enc(x)

    @torch.jit.export
    def log_likelihood(self, x, z):
        """log p(x | z) per row: x [N, 784] in {0, 1}, z [N, latent] -> [N]."""
        logits = self.dec(z)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    @torch.jit.export
    def propose(self, x, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """k draws of q(z | x) for each row of x, and their log-density: [k, N, latent], [k, N]."""
        h = self.enc(x)
        mu, log_sigma = h[:, : self.latent], h[:, self.latent :]
        eps = torch.randn(k, x.shape[0], self.latent)
        z = mu + log_sigma.exp() * eps
        log_q = (-0.5 * eps * eps - log_sigma - 0.9189385332046727).sum(-1)  # log sqrt(2 pi)
        return z, log_q

    @torch.jit.export
    def sample_data(self, z):
        return torch.bernoulli(torch.sigmoid(self.dec(z)))

    def elbo(self, x):
        z, log_q = self.propose(x, 1)
        z, log_q = z[0], log_q[0]
        log_p = (-0.5 * z * z - HALF_LOG_2PI).sum(-1)
        return self.log_likelihood(x, z) + log_p - log_q


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = os.environ.get("FLOWVAE_CACHE", os.path.expanduser("~/.cache/flowvae"))
    p.add_argument("--data-dir", default=os.environ.get("FLOWVAE_DATA", os.path.join(cache, "data")))
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--out", default=here)
    args = p.parse_args()
    mnist = os.path.join(args.data_dir, "mnist")
    find = lambda stem: next(
        os.path.join(mnist, f) for f in sorted(os.listdir(mnist)) if f.startswith(stem)
    )
    train = torch.from_numpy(read_idx_images(find("train-images")).astype(np.float32) / 255.0)
    test = read_idx_images(find("t10k-images"))
    torch.manual_seed(0)
    vae = Vae()
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    start, step = time.time(), 0
    while time.time() - start < args.seconds:
        idx = torch.randint(0, train.shape[0], (100,))
        x = torch.bernoulli(train[idx])
        loss = -vae.elbo(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            print(f"step {step}: -ELBO {loss.item():.2f} nats")
    vae.eval()
    os.makedirs(args.out, exist_ok=True)
    torch.jit.save(torch.jit.script(vae), os.path.join(args.out, "vae.pt"))
    np.save(os.path.join(args.out, "test_x.npy"), test)
    print(f"trained {step} steps; wrote vae.pt and test_x.npy to {args.out}")


if __name__ == "__main__":
    main()
