#!/usr/bin/env python3
"""PyTorch eager reference of flowvae's models, for `cargo xtask bench` and its ELBO test.

The same networks as the Rust crates (vae-nets: ResNet, gated-conv and MLP encoders/decoders;
vae-flows: cMADE with the block-degree MADE masks, IAF steps, the context predictor; vae-model:
the ELBO and TF-style Adam), written the way one writes them in PyTorch: nn.Modules whose
parameter names are flowvae's checkpoint names, so a flowvae checkpoint
(`model.<name>` tensors plus `meta.json`, see ARCHITECTURE.md) loads with `load_state_dict`.

Commands:
  elbo   --checkpoint CK --inputs IN --out OUT [--double]
         per-example rec and kl for x and eps from IN (eval mode, then train mode), written to OUT;
         the Rust test tests/bench_reference.rs compares them with flowvae's.
  bench  --phase train|is|ais|matmul --workdir DIR ...
         one phase of the benchmark on the checkpoint and batches `vae bench --phase export` wrote;
         prints or writes one JSON object, like `vae bench`.

Only torch and the standard library are needed (safetensors files are parsed here).
"""

import argparse
import json
import math
import os
import struct
import sys
import time
import warnings

# The bench's torch install has no numpy, which torch only warns about.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LN_2PI = math.log(2.0 * math.pi)

# ---------------------------------------------------------------------------------------------
# safetensors without the safetensors package
# ---------------------------------------------------------------------------------------------

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        if end > start:
            t = torch.frombuffer(bytearray(data[base + start : base + end]), dtype=dtype)
        else:
            t = torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        # No numpy in the bench's torch install: through a list (the outputs here are small).
        raw = bytes(t.reshape(-1).view(torch.uint8).tolist()) if t.numel() else b""
        header[name] = {
            "dtype": _NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def load_checkpoint(path):
    """(model config dict, experiment config dict, {name: tensor}) of a flowvae checkpoint."""
    tensors = read_safetensors(path)
    meta = json.loads(bytes(tensors.pop("meta.json").tolist()).decode())
    cfg = meta["config"]
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return cfg["model"], cfg, state


# ---------------------------------------------------------------------------------------------
# layers with TF geometry (vae-nets/src/layers.rs)
# ---------------------------------------------------------------------------------------------


def same_padding(n, k, s):
    out = (n + s - 1) // s
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class BN(nn.Module):
    """TF-contrib batch norm: gamma 1, beta `beta`, running mean 0, variance 1."""

    def __init__(self, c, bn, beta=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.full((c,), beta))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.momentum, self.eps = bn["momentum"], bn["eps"]

    def forward(self, x):
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            self.training, self.momentum, self.eps,
        )


class Dense(nn.Module):
    def __init__(self, n_in, n_out, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Conv(nn.Module):
    """Convolution with TF SAME (asymmetric where odd) or VALID padding."""

    def __init__(self, c_in, c_out, k, s, same, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.k, self.s, self.same = k, s, same

    def forward(self, x):
        if not self.same:
            return F.conv2d(x, self.weight, self.bias, self.s)
        top, bottom = same_padding(x.shape[2], self.k, self.s)
        left, right = same_padding(x.shape[3], self.k, self.s)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.s, (top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.s)


class ConvT(nn.Module):
    """Transposed convolution, the adjoint of `Conv` (SAME: output in·s; VALID: (in−1)·s + k)."""

    def __init__(self, c_in, c_out, k, s, same, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_in, c_out, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.k, self.s, self.same = k, s, same

    def forward(self, x):
        if not self.same:
            return F.conv_transpose2d(x, self.weight, self.bias, self.s)
        oh, ow = x.shape[2] * self.s, x.shape[3] * self.s
        top, bottom = same_padding(oh, self.k, self.s)
        left, right = same_padding(ow, self.k, self.s)
        if top == bottom and left == right:
            return F.conv_transpose2d(x, self.weight, self.bias, self.s, (top, left))
        full = F.conv_transpose2d(x, self.weight, self.bias, self.s)
        return full[:, :, top : top + oh, left : left + ow]


class Gated(nn.Module):
    def __init__(self, layer, c_in, c_out, k, s, same):
        super().__init__()
        self.gate = layer(c_in, c_out, k, s, same, True)
        self.value = layer(c_in, c_out, k, s, same, True)

    def forward(self, x):
        return torch.sigmoid(self.gate(x)) * F.elu(self.value(x))


def nearest_half(x):
    return x[:, :, ::2, ::2]


def nearest_double(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


# ---------------------------------------------------------------------------------------------
# encoders and decoders (vae-nets/src/{resnet,gated,mlp}.rs)
# ---------------------------------------------------------------------------------------------


class EncBlock(nn.Module):
    def __init__(self, c_in, down, bn):
        super().__init__()
        self.bn1 = BN(c_in, bn)
        self.conv1 = Conv(c_in, 64, 3, 2 if down else 1, True, False)
        self.bn2 = BN(64, bn)
        self.conv2 = Conv(64, 64, 3, 1, True, False)
        self.down = down

    def forward(self, x):
        skip = nearest_half(x) if self.down else x
        h = self.conv1(F.elu(self.bn1(x)))
        h = self.conv2(F.elu(self.bn2(h)))
        return skip + h * 0.1


class ResNetEncoder(nn.Module):
    hidden = 450

    def __init__(self, latent, bn):
        super().__init__()
        plan = [(1, False), (64, False), (64, True), (64, False), (64, True), (64, False)]
        for i, (c, d) in enumerate(plan):
            self.add_module(f"block{i + 1}", EncBlock(c, d, bn))
        self.bn_final = BN(64, bn)
        self.fc_hidden = Dense(7 * 7 * 64, 450, False)
        self.bn_hidden = BN(450, bn)
        self.fc_out = Dense(450, 2 * latent, False)
        self.bn_out = BN(2 * latent, bn)

    def forward(self, x):
        h = x
        for i in range(6):
            h = getattr(self, f"block{i + 1}")(h)
        h = self.bn_final(h).permute(0, 2, 3, 1).flatten(1)
        h_last = F.elu(self.bn_hidden(self.fc_hidden(h)))
        return self.bn_out(self.fc_out(h_last)), h_last


class DecBlock(nn.Module):
    def __init__(self, up, bn):
        super().__init__()
        self.bn1 = BN(64, bn)
        self.conv1 = Conv(64, 64, 3, 1, True, False)
        self.bn2 = BN(64, bn)
        if up:
            self.convt2 = ConvT(64, 64, 3, 2, True, False)
        else:
            self.conv2 = Conv(64, 64, 3, 1, True, False)
        self.up = up

    def forward(self, x):
        h = self.conv1(F.elu(self.bn1(x)))
        h = F.elu(self.bn2(h))
        if self.up:
            return nearest_double(x) + self.convt2(h) * 0.1
        return x + self.conv2(h) * 0.1


class ResNetDecoder(nn.Module):
    def __init__(self, latent, bn):
        super().__init__()
        self.proj = ConvT(latent, 64, 7, 1, False, False)
        for i, up in enumerate([False, False, True, False, True, False]):
            self.add_module(f"block{i + 1}", DecBlock(up, bn))
        self.bn_final = BN(64, bn)
        self.logits = Conv(64, 1, 1, 1, True, True)

    def forward(self, z):
        h = F.elu(self.proj(z[:, :, None, None]))
        for i in range(6):
            h = getattr(self, f"block{i + 1}")(h)
        return self.logits(self.bn_final(h))


class GatedEncoder(nn.Module):
    hidden = 256
    plan = [(1, 32, 5, 1, True), (32, 32, 5, 2, True), (32, 64, 5, 1, True),
            (64, 64, 5, 2, True), (64, 64, 5, 1, True), (64, 256, 7, 1, False)]

    def __init__(self, latent, bn):
        super().__init__()
        for i, (ci, co, k, s, same) in enumerate(self.plan):
            self.add_module(f"gconv{i + 1}", Gated(Conv, ci, co, k, s, same))
        self.fc_out = Dense(256, 2 * latent, True)

    def forward(self, x):
        h = x
        for i in range(len(self.plan)):
            h = getattr(self, f"gconv{i + 1}")(h)
        h_last = h.flatten(1)
        return self.fc_out(h_last), h_last


class GatedDecoder(nn.Module):
    plan = [(64, 7, 1, False), (64, 5, 1, True), (32, 5, 2, True),
            (32, 5, 1, True), (32, 5, 2, True), (32, 5, 1, True)]

    def __init__(self, latent, bn):
        super().__init__()
        c = latent
        for i, (co, k, s, same) in enumerate(self.plan):
            self.add_module(f"gconvt{i + 1}", Gated(ConvT, c, co, k, s, same))
            c = co
        self.logits = Conv(c, 1, 1, 1, True, True)

    def forward(self, z):
        h = z[:, :, None, None]
        for i in range(len(self.plan)):
            h = getattr(self, f"gconvt{i + 1}")(h)
        return self.logits(h)


class Hidden(nn.Module):
    def __init__(self, n_in, width, bn):
        super().__init__()
        self.dense = Dense(n_in, width, False)
        self.bn = BN(width, bn)

    def forward(self, h, skip):
        return F.elu(self.bn(self.dense(torch.cat([h, skip], 1))))


class MlpEncoder(nn.Module):
    def __init__(self, hidden, latent, bn):
        super().__init__()
        prev = 784
        for i, w in enumerate(hidden):
            self.add_module(f"hidden{i + 1}", Hidden(prev + 784, w, bn))
            prev = w
        self.n = len(hidden)
        self.hidden = prev
        self.out = nn.Module()
        self.out.dense = Dense(prev + 784, 2 * latent, False)
        self.out.bn = BN(2 * latent, bn)

    def forward(self, x):
        x = x.flatten(1)
        h = x
        for i in range(self.n):
            h = getattr(self, f"hidden{i + 1}")(h, x)
        return self.out.bn(self.out.dense(torch.cat([h, x], 1))), h


class MlpDecoder(nn.Module):
    def __init__(self, hidden, latent, bn):
        super().__init__()
        prev = latent
        for i, w in enumerate(hidden):
            self.add_module(f"hidden{i + 1}", Hidden(prev + latent, w, bn))
            prev = w
        self.n = len(hidden)
        self.logits = Dense(prev + latent, 784, False)

    def forward(self, z):
        h = z
        for i in range(self.n):
            h = getattr(self, f"hidden{i + 1}")(h, z)
        return self.logits(torch.cat([h, z], 1)).view(-1, 1, 28, 28)


def mlp_batch_norm_only(cfg):
    """The reference builds the MLP networks with batch norm only (docs/NORMALIZATION.md §1)."""
    norm = cfg.get("normalization", "batch_norm")
    if norm != "batch_norm":
        raise NotImplementedError(f"the reference has no MLP with normalization {norm!r}")


def build_encoder(cfg, latent, bn):
    kind = cfg["type"]
    if kind == "resnet":
        return ResNetEncoder(latent, bn)
    if kind == "gated_conv":
        return GatedEncoder(latent, bn)
    mlp_batch_norm_only(cfg)
    return MlpEncoder(cfg["hidden"], latent, bn)


def build_decoder(cfg, latent, bn):
    kind = cfg["type"]
    if kind == "resnet":
        return ResNetDecoder(latent, bn)
    if kind == "gated_conv":
        return GatedDecoder(latent, bn)
    mlp_batch_norm_only(cfg)
    return MlpDecoder(cfg["hidden"], latent, bn)


# ---------------------------------------------------------------------------------------------
# the flow (vae-flows: mask.rs, layers.rs, cmade.rs, iaf.rs, flow.rs, context.rs)
# ---------------------------------------------------------------------------------------------


def block_degree(n_in, n_out, natural, last):
    """The original's MADE mask, shape (n_in, n_out) (ORIGINAL §3.4.1)."""
    i = torch.arange(n_in)[:, None]
    j = torch.arange(n_out)[None, :]
    if n_out >= n_in:
        k = n_out // n_in
        if natural:
            m = j >= (i + 1) * k if last else j >= i * k
        else:
            m = j < i * k if last else j < (i + 1) * k
    else:
        k = n_in // n_out
        if natural:
            m = i < j * k if last else i < (j + 1) * k
        else:
            m = i >= (j + 1) * k if last else i >= j * k
    return m


def made_masks(units, natural):
    n = len(units) - 1
    return [block_degree(units[l], units[l + 1], natural, l == n - 1) for l in range(n)]


class MaskedLinear(nn.Module):
    def __init__(self, mask, bias):
        super().__init__()
        n_in, n_out = mask.shape
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.full((n_out,), bias)) if bias is not None else None
        self.register_buffer("mask", mask.t().contiguous(), persistent=False)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def cmade_normalization(flow):
    """The cMADE's normalization (docs/NORMALIZATION.md §1): `normalization`, written when it is
    not batch_norm, else the boolean `batch_norm` of older checkpoints (true unless given)."""
    if "normalization" in flow:
        return flow["normalization"]
    return "batch_norm" if flow.get("batch_norm", True) else "none"


class Cmade(nn.Module):
    def __init__(self, latent, flow, natural, bn):
        super().__init__()
        units = [latent] + list(flow["hidden"]) + [latent]
        masks = made_masks(units, natural)
        norm = cmade_normalization(flow)
        if norm == "weight_norm":
            raise NotImplementedError("the reference has no weight-normalized cMADE")
        use_bn = norm == "batch_norm"
        bias = None if use_bn else 0.0
        self.n = len(masks) - 1
        for l, m in enumerate(masks[:-1]):
            self.add_module(f"l{l}", MaskedLinear(m, bias))
            if use_bn:
                self.add_module(f"bn{l}", BN(m.shape[1], bn))
        self.use_bn = use_bn
        ctx = flow["context_size"]
        self.context = None if ctx == 0 else flow["context"]
        if self.context == "linear":
            self.ctx = Dense(ctx, flow["hidden"][0], False)
        self.m = MaskedLinear(masks[-1], bias)
        if use_bn:
            self.bn_m = BN(latent, bn)
        self.shift_only = flow["shift_only"]
        if not self.shift_only:
            self.s = MaskedLinear(masks[-1], None if use_bn else 2.0)
            if use_bn:
                self.bn_s = BN(latent, bn, 3.0)

    def _bn(self, name, x):
        return getattr(self, name)(x) if self.use_bn else x

    def forward(self, z, c):
        h = self.l0(z)
        if self.context == "linear":
            h = h + self.ctx(c)
        h = F.elu(self._bn("bn0", h))
        if self.context == "snf_like":
            h = h + c
        for l in range(1, self.n):
            h = F.elu(self._bn(f"bn{l}", getattr(self, f"l{l}")(h)))
        m = self._bn("bn_m", self.m(h))
        s = None if self.shift_only else self._bn("bn_s", self.s(h))
        return m, s


class IafStep(nn.Module):
    def __init__(self, latent, flow, natural, bn):
        super().__init__()
        self.made = Cmade(latent, flow, natural, bn)

    def forward(self, z, c):
        m, s = self.made(z, c)
        if s is None:
            return z + m, torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        z_out = torch.sigmoid(s) * z + torch.sigmoid(-s) * m
        return z_out, -F.softplus(-s).sum(-1)


class Flow(nn.Module):
    def __init__(self, latent, flow, bn):
        super().__init__()
        self.layers = flow["layers"] if flow["kind"] == "iaf" else 0
        for t in range(self.layers):
            self.add_module(f"step{t}", IafStep(latent, flow, t % 2 == 0, bn))

    def forward(self, z, c):
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for t in range(self.layers):
            z, ld = getattr(self, f"step{t}")(z, c)
            log_det = log_det + ld
        return z, log_det


class ContextPredictor(nn.Module):
    def __init__(self, n_in, size, bn):
        super().__init__()
        self.fc = Dense(n_in, size, False)
        self.bn = BN(size, bn)

    def forward(self, h):
        return self.bn(self.fc(h))


# ---------------------------------------------------------------------------------------------
# the VAE and its ELBO (vae-model/src/vae.rs)
# ---------------------------------------------------------------------------------------------


class Vae(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.latent = d = cfg["latent"]
        self.offset = cfg["log_sigma_offset"]
        self.likelihood = cfg["likelihood"]
        bn = cfg["batch_norm"]
        self.enc = build_encoder(cfg["encoder"], d, bn)
        self.dec = build_decoder(cfg["decoder"], d, bn)
        flow = cfg.get("flow")
        self.has_flow = flow is not None
        if self.has_flow:
            self.flow = Flow(d, flow, bn)
            if flow["kind"] == "iaf" and flow["context_size"] > 0:
                self.ctx = ContextPredictor(self.enc.hidden, flow["context_size"], bn)

    def encode(self, x):
        out, h = self.enc(x)
        d = self.latent
        mu, log_sigma = out[:, :d], out[:, d:] + self.offset
        c = self.ctx(h) if hasattr(self, "ctx") else None
        return mu, log_sigma, c

    def run_flow(self, z0, c):
        if not self.has_flow:
            return z0, torch.zeros(z0.shape[0], dtype=z0.dtype, device=z0.device)
        return self.flow(z0, c)

    # The sums are in f32 whatever the model's dtype, as in flowvae (`Kind::Float`).
    def rec(self, logits, x):
        b = logits.shape[0]
        if self.likelihood == "logits":
            r = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            return r.view(b, -1).sum(-1, dtype=torch.float32)
        p = torch.sigmoid(logits)
        lik = (x * 2.0 - 1.0) * p - x + 1.0
        return -lik.clamp(1e-10, 1.0 - 1e-10).log().view(b, -1).sum(-1, dtype=torch.float32)

    def elbo_terms(self, x, eps):
        """(rec, kl) per example, as `Vae::elbo_terms_with_noise`."""
        mu, log_sigma, c = self.encode(x)
        z0 = mu + log_sigma.exp() * eps
        zt, log_det = self.run_flow(z0, c)
        rec = self.rec(self.dec(zt), x)
        log_q0 = (-log_sigma - eps.square() * 0.5).sum(-1, dtype=torch.float32)
        log_p = (zt.square() * -0.5).sum(-1, dtype=torch.float32)
        return rec, log_q0 - log_det - log_p

    # vae-model/src/latent_model.rs, with the 2π constants of vae-eval
    def log_joint(self, x, z):
        s, b, d = z.shape
        logits = self.dec(z.flatten(0, 1))
        xt = x.unsqueeze(0).expand(s, *x.shape).flatten(0, 1)
        rec = self.rec(logits, xt).view(s, b)
        return (z.square().sum(-1) * -0.5 - 0.5 * LN_2PI * d) - rec


def build(path, device, dtype=torch.float32):
    model_cfg, cfg, state = load_checkpoint(path)
    vae = Vae(model_cfg)
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{path}: names differ from the reference: missing {missing}, "
                         f"unexpected {unexpected}")
    return vae.to(device=device, dtype=dtype), cfg


# ---------------------------------------------------------------------------------------------
# TF-style Adam over tensors (vae-model/src/adam/update.rs), with PyTorch's multi-tensor kernels
# ---------------------------------------------------------------------------------------------


class TfAdam:
    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.b1, self.b2, self.eps, self.t = beta1, beta2, eps, 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def grads(self):
        return [p.grad for p in self.params]

    @torch.no_grad()
    def step(self, lr):
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        g = self.grads()
        torch._foreach_lerp_(self.m, g, 1 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, g, g, value=1 - self.b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-lr * math.sqrt(c2) / c1)


# ---------------------------------------------------------------------------------------------
# estimators (vae-eval: importance.rs, ais.rs)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def importance_sampling(vae, x, k, max_rows, seed=0):
    """-mean log p(x) by IS with the flow posterior, chunked as vae-eval does."""
    b_total, d = x.shape[0], vae.latent
    ex_chunk, s_chunk = (max_rows // k, k) if k <= max_rows else (1, max_rows)
    out = []
    for b0 in range(0, b_total, ex_chunk):
        bc = min(ex_chunk, b_total - b0)
        xs = x[b0 : b0 + bc]
        mu, log_sigma, c = vae.encode(xs)
        noise = []
        for b in range(b0, b0 + bc):
            torch.manual_seed(hash((seed, b)) & 0x7FFF_FFFF)
            noise.append(torch.randn(k, d, device=x.device, dtype=x.dtype))
        noise = torch.stack(noise, 1)
        log_w = []
        for s0 in range(0, k, s_chunk):
            eps = noise[s0 : s0 + s_chunk]
            sc = eps.shape[0]
            z0 = mu + log_sigma.exp() * eps
            log_q0 = (eps.square() * -0.5 - log_sigma - 0.5 * LN_2PI).sum(-1)
            cc = None if c is None else c.unsqueeze(0).expand(sc, *c.shape).flatten(0, 1)
            zt, log_det = vae.run_flow(z0.flatten(0, 1), cc)
            zt = zt.view(sc, bc, d)
            log_q = log_q0 - log_det.view(sc, bc)
            log_w.append((vae.log_joint(xs, zt).double() - log_q.double()))
        log_w = torch.cat(log_w, 0)
        out.append(torch.logsumexp(log_w, 0) - math.log(k))
    return -torch.cat(out).mean().item()


def sigmoid_betas(n, radius=4.0):
    if n <= 2:
        return [0.0, 1.0]
    sig = lambda t: 1.0 / (1.0 + math.exp(-t))
    s0 = sig(-radius)
    scale = 1.0 - 2.0 * s0
    betas = [0.0] * n
    for i in range(n // 2):
        t = -radius + 2.0 * radius * i / (n - 1)
        betas[i] = (sig(t) - s0) / scale
        betas[n - 1 - i] = 1.0 - betas[i]
    if n % 2 == 1:
        betas[n // 2] = 0.5
    return betas


def value_and_grad(f, z):
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        v = f(z)
        (g,) = torch.autograd.grad(v.sum(), z)
    return v.detach(), g


@torch.no_grad()
def ais(vae, x, chains, steps, leapfrog, seed=0, eps0=0.01):
    """AIS from the prior with HMC moves and global step-size adaptation, as vae-eval's `ais`
    with its defaults (target 0.65, slowness 0.9, step in [1e-4, 0.5], ×1.02 / ×0.98)."""
    torch.manual_seed(seed)
    k, g, d = chains, x.shape[0], vae.latent
    shape = (k, g, d)
    betas = sigmoid_betas(steps)

    def prior(z):
        return z.square().sum(-1) * -0.5 - 0.5 * LN_2PI * d

    def evaluate(z):
        lp0, g0 = value_and_grad(prior, z)
        lf1, g1 = value_and_grad(lambda zz: vae.log_joint(x, zz), z)
        return lp0, lf1, g0, g1

    z = torch.randn(shape, device=x.device, dtype=x.dtype)
    cache = evaluate(z)
    step_size = torch.full((k, g), eps0, dtype=torch.float64, device=x.device)
    avg = torch.full((k, g), 0.65, dtype=torch.float64, device=x.device)
    log_w = torch.zeros((k, g), dtype=torch.float64, device=x.device)
    trace = []
    t_max = len(betas) - 1
    for t in range(1, t_max + 1):
        lp0, lf1, g0, g1 = cache
        log_w += (lf1 - lp0).double() * (betas[t] - betas[t - 1])
        if t == t_max:
            break
        beta = betas[t]
        v0 = torch.randn_like(z)
        e3 = step_size.to(z.dtype).unsqueeze(-1)
        v = v0 + e3 * (g0 * (1 - beta) + g1 * beta) * 0.5
        zp = z
        for l in range(1, leapfrog + 1):
            zp = zp + e3 * v
            prop = evaluate(zp)
            scale = 1.0 if l < leapfrog else 0.5
            v = v + e3 * (prop[2] * (1 - beta) + prop[3] * beta) * scale
        log_pi = lambda c: c[0] * (1 - beta) + c[1] * beta
        h0 = -log_pi(cache).double() + v0.square().sum(-1, dtype=torch.float64) * 0.5
        h1 = -log_pi(prop).double() + v.square().sum(-1, dtype=torch.float64) * 0.5
        log_u = torch.rand(h0.shape, dtype=torch.float64, device=x.device).log()
        accept = (h0 - h1) >= log_u
        a3 = accept.unsqueeze(-1)
        z = torch.where(a3, zp, z)
        cache = (
            torch.where(accept, prop[0], cache[0]),
            torch.where(accept, prop[1], cache[1]),
            torch.where(a3, prop[2], cache[2]),
            torch.where(a3, prop[3], cache[3]),
        )
        acc = accept.double()
        trace.append(torch.stack([acc.mean(), step_size.mean(), step_size.min(), step_size.max()]))
        rate = acc.mean().expand_as(acc)
        factor = (avg > 0.65).double() * (1.02 - 0.98) + 0.98
        step_size = (step_size * factor).clamp(1e-4, 0.5)
        avg = avg * 0.9 + rate * 0.1
    lp = torch.logsumexp(log_w, 0) - math.log(k)
    if trace:
        torch.stack(trace).cpu()
    return -lp.mean().item()


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def cmd_elbo(args):
    dtype = torch.float64 if args.double else torch.float32
    vae, _ = build(args.checkpoint, "cpu", dtype)
    inputs = read_safetensors(args.inputs)
    out = {}
    with torch.no_grad():
        for mode in ["eval", "train"]:
            vae.train(mode == "train")
            rec, kl = vae.elbo_terms(inputs["x"].to(dtype), inputs["eps"].to(dtype))
            out[f"rec_{mode}"], out[f"kl_{mode}"] = rec, kl
    write_safetensors(args.out, out)


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def gpu_memory_mib(device):
    if not device.startswith("cuda"):
        return None
    import subprocess

    def smi(q):
        try:
            return subprocess.run(["nvidia-smi", q, "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None

    apps = smi("--query-compute-apps=pid,used_memory") or ""
    for line in apps.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(os.getpid()):
            return float(parts[1])
    total = smi("--query-gpu=memory.used")
    return float(total.splitlines()[0]) if total else None


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_train(args, vae, cfg, device):
    data = read_safetensors(os.path.join(args.workdir, "data.safetensors"))
    grey = data["train_grey"].to(device)
    b = args.batch
    tcfg = cfg["train"]
    warm_epochs = tcfg["warmup_epochs"]
    w = 1.0 if warm_epochs <= 0 else min(1.0, 0.0 / warm_epochs)
    lr = tcfg["learning_rate"]
    a = tcfg["adam"]
    opt = TfAdam(vae.parameters(), a["beta1"], a["beta2"], a["eps"])
    vae.train(True)
    times = []
    n = args.warmup + args.steps
    if grey.shape[0] < n * b:
        raise SystemExit(f"data.safetensors holds {grey.shape[0]} images, {n * b} needed")

    def one_step(step):
        x = torch.bernoulli(grey[step * b : (step + 1) * b].float().div_(255.0)).view(b, 1, 28, 28)
        eps = torch.randn(b, vae.latent, device=device)
        rec, kl = vae.elbo_terms(x, eps)
        rec, kl = rec.mean(), kl.mean()
        loss = rec + kl * w
        opt.zero_grad()
        loss.backward()
        grads = [g for g in opt.grads() if g is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if math.isfinite(loss.item()) and math.isfinite(norm.item()):
            opt.step(lr)
        rec.item(), kl.item()
        sync(device)

    for step in range(n):
        t0 = time.perf_counter()
        one_step(step)
        times.append((time.perf_counter() - t0) * 1e3)
    profile = profile_steps(one_step, n, device) if args.profile else None
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        x = torch.bernoulli(grey[:b].float() / 255.0).view(b, 1, 28, 28)
        eps = torch.randn(b, vae.latent, device=device)
        with FlopCounterMode(display=False) as counter:
            rec, kl = vae.elbo_terms(x, eps)
            (rec.mean() + kl.mean() * w).backward()
        flops = counter.get_total_flops()
    except Exception as e:  # the counter is a convenience, not part of the timing
        print(f"flop counter: {e}", file=sys.stderr)
    timed = times[args.warmup :]
    med = sorted(timed)[len(timed) // 2] if len(timed) % 2 else 0.5 * (
        sorted(timed)[len(timed) // 2 - 1] + sorted(timed)[len(timed) // 2])
    return {
        "batch": b,
        "warmup_steps": args.warmup,
        "step_ms": timed,
        "warmup_ms": times[: args.warmup],
        "median_ms": med,
        "flops_counted": flops,
        **({"profile": profile} if profile else {}),
    }


def profile_steps(one_step, n, device, steps=3):
    """Where the time of a few more training steps goes (torch.profiler): kernels launched and
    device time per step, and the kernels that take most of it. Compare the device time with the
    step's unprofiled median (the profiler itself inflates `wall_ms_per_step` many times over):
    device time well under it means a launch-bound step, close to it an arithmetic-bound one."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        acts.append(ProfilerActivity.CUDA)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        for i in range(steps):
            one_step(i % n)
    wall = (time.perf_counter() - t0) * 1e3 / steps
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name = {}
    for e in kernels:
        ms, count = by_name.get(e.name, (0.0, 0))
        by_name[e.name] = (ms + e.device_time_total / 1e3, count + 1)
    top = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:12]
    return {
        "steps": steps,
        "wall_ms_per_step": wall,
        "kernels_per_step": len(kernels) / steps,
        "kernel_ms_per_step": sum(ms for ms, _ in by_name.values()) / steps,
        "top_kernels": [{"name": k[:120], "ms_per_step": ms / steps, "per_step": c / steps}
                        for k, (ms, c) in top],
    }


def test_images(args, device):
    data = read_safetensors(os.path.join(args.workdir, "data.safetensors"))
    x = data["test_bin"][: args.images].to(device).float().div_(255.0)
    return x.view(-1, 1, 28, 28)


def bench_is(args, vae, device):
    vae.eval()
    x = test_images(args, device)
    # Warm up at every chunk shape of the timed call (a full chunk and the last, shorter one),
    # as `vae bench` does: on a GPU each new shape pays first-use costs.
    n, k = x.shape[0], args.k
    per_chunk = args.max_rows // k if k <= args.max_rows else 1
    warm = [min(n, per_chunk)] + ([n % per_chunk] if n > per_chunk and n % per_chunk else [])
    for images in warm:
        importance_sampling(vae, x[:images], k, args.max_rows)
    sync(device)
    t0 = time.perf_counter()
    nll = importance_sampling(vae, x, args.k, args.max_rows)
    sync(device)
    ms = (time.perf_counter() - t0) * 1e3
    n = x.shape[0]
    return {"images": n, "k": args.k, "max_rows": args.max_rows, "total_ms": ms,
            "ms_per_image": ms / n, "nll": nll}


def bench_ais(args, vae, device):
    vae.eval()
    x = test_images(args, device)
    ais(vae, x, args.chains, 3, args.leapfrog)  # one move at the timed shapes
    sync(device)
    t0 = time.perf_counter()
    nll = ais(vae, x, args.chains, args.anneal_steps, args.leapfrog)
    sync(device)
    ms = (time.perf_counter() - t0) * 1e3
    n = x.shape[0]
    z = torch.randn(args.chains, n, vae.latent, device=device)
    with torch.no_grad():
        value_and_grad(lambda zz: vae.log_joint(x, zz), z)
        sync(device)
        grad_ms = []
        for _ in range(5):
            t = time.perf_counter()
            value_and_grad(lambda zz: vae.log_joint(x, zz), z)
            sync(device)
            grad_ms.append((time.perf_counter() - t) * 1e3)
    grad = sorted(grad_ms)[2]
    s = args.anneal_steps
    gradients = (s - 2) * args.leapfrog + 1
    return {"images": n, "chains": args.chains, "leapfrog": args.leapfrog, "anneal_steps": s,
            "moves": s - 2, "total_ms": ms,
            "ms_per_image_per_100_steps": ms / n * 100.0 / (s - 1), "gradient_ms": grad,
            "gradient_evaluations": gradients, "pure_gradient_ms": gradients * grad,
            "overhead_ratio": ms / (gradients * grad), "nll": nll}


def bench_matmul(args, device):
    n = args.matmul_size
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    ms = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        sync(device)
        ms.append((time.perf_counter() - t) * 1e3)
    flops = 2.0 * n**3
    return {"size": n, "ms": ms, "peak_gflops_per_s": flops / min(ms) / 1e6}


def cmd_bench(args):
    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase == "matmul":
        out = bench_matmul(args, device)
    else:
        vae, cfg = build(os.path.join(args.workdir, "model.safetensors"), device)
        if args.phase == "train":
            out = bench_train(args, vae, cfg, device)
        elif args.phase == "is":
            out = bench_is(args, vae, device)
        else:
            out = bench_ais(args, vae, device)
        out["config"] = cfg.get("name", os.path.basename(args.workdir))
        out["parameters"] = sum(p.numel() for p in vae.parameters())
    out.update({
        "phase": args.phase,
        "implementation": "pytorch",
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "CPU",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_rss_bytes": peak_rss_bytes(),
        "gpu_memory_mib": gpu_memory_mib(device),
    })
    text = json.dumps(out, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("elbo", help="per-example ELBO terms of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--inputs", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--double", action="store_true")
    b = sub.add_parser("bench", help="one phase of the benchmark")
    b.add_argument("--phase", choices=["train", "is", "ais", "matmul"], required=True)
    b.add_argument("--workdir", default=".")
    b.add_argument("--device", default="cpu")
    b.add_argument("--threads", type=int)
    b.add_argument("--batch", type=int, default=200)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--images", type=int, default=10)
    b.add_argument("--k", type=int, default=1000)
    b.add_argument("--max-rows", type=int, default=20000)
    b.add_argument("--anneal-steps", type=int, default=101)
    b.add_argument("--chains", type=int, default=8)
    b.add_argument("--leapfrog", type=int, default=10)
    b.add_argument("--matmul-size", type=int, default=2048)
    b.add_argument("--profile", action="store_true",
                   help="train: also profile a few steps (kernels, device time) with torch.profiler")
    b.add_argument("--out")
    args = p.parse_args(argv)
    if args.cmd == "elbo":
        cmd_elbo(args)
    else:
        cmd_bench(args)


if __name__ == "__main__":
    main()
