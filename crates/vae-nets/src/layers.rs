//! The building blocks, with TensorFlow 1.12 geometry and initialisation (ORIGINAL §2.1–§2.3).
//!
//! Tensors are NCHW as everywhere in libtorch. Weight layouts are PyTorch's, so that checkpoint
//! tensors load by name in Python: dense `[out, in]`, convolution `[out, in, k, k]`, transposed
//! convolution `[in, out, k, k]`.
//!
//! Every layer has a `new(p, ..)` that creates its parameters under `p` with the original's
//! initialisation, and a `from_tensors(..)` that takes given tensors (for tests that need exact
//! weights).

use tch::nn::{self, Init};
use tch::Tensor;

use crate::error::{Error, Result};

/// Batch normalization with the original's constants, shared with vae-flows (see [`vae_nn`]).
pub use vae_nn::BatchNorm;

/// Glorot/Xavier uniform initialiser: `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))`
/// (ORIGINAL §2.2). For (transposed) convolutions the fans are `k * k * in_channels` and
/// `k * k * out_channels`.
pub fn glorot_uniform(fan_in: i64, fan_out: i64) -> Init {
    let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform { lo: -a, up: a }
}

/// Creates a trainable parameter, refusing a name the store already holds (tch would silently
/// rename it to `name__N`).
pub(crate) fn new_var(p: &nn::Path, name: &str, dims: &[i64], init: Init) -> Result<Tensor> {
    if p.get(name).is_some() {
        return Err(Error::DuplicateParameter { path: p.path(name) });
    }
    Ok(p.f_var(name, dims, init)?)
}

/// Panics with a useful message if `x` does not have `rank` dimensions.
pub(crate) fn expect_rank(x: &Tensor, rank: usize, what: &str) {
    assert!(
        x.dim() == rank,
        "{what}: expected a tensor of rank {rank}, got shape {:?}",
        x.size()
    );
}

/// `ELU(a) = a` for `a > 0`, else `exp(a) - 1`.
pub fn elu(x: &Tensor) -> Tensor {
    x.elu()
}

/// TF "SAME" padding along one axis (ORIGINAL §2.3): `(before, after)` for input length `input`,
/// kernel `k` and stride `s`. The output length is `ceil(input / s)`, the total padding
/// `max((out - 1) * s + k - input, 0)`, and the smaller half goes first (top/left).
pub fn same_padding(input: i64, k: i64, s: i64) -> (i64, i64) {
    let out = (input + s - 1) / s;
    let total = ((out - 1) * s + k - input).max(0);
    (total / 2, total - total / 2)
}

/// Padding mode of a convolution, as in TF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TF "SAME": output `ceil(in / stride)` (convolution) or `in * stride` (transposed), with
    /// asymmetric padding where the total is odd (ORIGINAL §2.3).
    Same,
    /// TF "VALID": no padding.
    Valid,
}

/// A fully connected layer `y = x W^T (+ b)`, weight `[out, in]`.
#[derive(Debug)]
pub struct Dense {
    /// Weight, `[out, in]`.
    pub ws: Tensor,
    /// Bias, `[out]`, if any.
    pub bs: Option<Tensor>,
}

impl Dense {
    /// Creates `weight` (Glorot uniform, fans `in` and `out`) and, with `bias`, `bias` (zeros)
    /// under `p`.
    pub fn new(p: &nn::Path, input: i64, output: i64, bias: bool) -> Result<Self> {
        let ws = new_var(p, "weight", &[output, input], glorot_uniform(input, output))?;
        let bs = if bias {
            Some(new_var(p, "bias", &[output], Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Dense { ws, bs })
    }

    /// Wraps given tensors: weight `[out, in]`, bias `[out]`.
    pub fn from_tensors(ws: Tensor, bs: Option<Tensor>) -> Self {
        Dense { ws, bs }
    }

    /// `[B, in]` → `[B, out]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.ws, self.bs.as_ref())
    }
}

/// A 2-D convolution with TF padding semantics, weight `[out, in, k, k]`.
///
/// With [`Padding::Same`] the padding is computed from the input size at each call; where the
/// total is odd (e.g. 3×3 stride 2 on 28 → 14: 0 before, 1 after) the input is zero-padded
/// explicitly at the bottom/right instead of using libtorch's symmetric padding (ORIGINAL §2.3).
#[derive(Debug)]
pub struct Conv2d {
    /// Weight, `[out, in, k, k]`.
    pub ws: Tensor,
    /// Bias, `[out]`, if any.
    pub bs: Option<Tensor>,
    stride: i64,
    padding: Padding,
}

impl Conv2d {
    /// Creates a `k`×`k` convolution `input` → `output` channels under `p`: `weight` Glorot
    /// uniform with fans `k*k*input` and `k*k*output`, and `bias` zeros if `bias`.
    pub fn new(
        p: &nn::Path,
        input: i64,
        output: i64,
        k: i64,
        stride: i64,
        padding: Padding,
        bias: bool,
    ) -> Result<Self> {
        let ws = new_var(
            p,
            "weight",
            &[output, input, k, k],
            glorot_uniform(k * k * input, k * k * output),
        )?;
        let bs = if bias {
            Some(new_var(p, "bias", &[output], Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Conv2d {
            ws,
            bs,
            stride,
            padding,
        })
    }

    /// Wraps given tensors: weight `[out, in, k, k]`, bias `[out]`.
    pub fn from_tensors(ws: Tensor, bs: Option<Tensor>, stride: i64, padding: Padding) -> Self {
        Conv2d {
            ws,
            bs,
            stride,
            padding,
        }
    }

    /// `[B, in, H, W]` → `[B, out, H', W']` with `H' = ceil(H / s)` (SAME) or
    /// `H' = (H - k) / s + 1` (VALID).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        expect_rank(x, 4, "Conv2d input");
        let k = self.ws.size()[2];
        let s = self.stride;
        match self.padding {
            Padding::Valid => x.conv2d(&self.ws, self.bs.as_ref(), [s, s], [0, 0], [1, 1], 1),
            Padding::Same => {
                let size = x.size();
                let (top, bottom) = same_padding(size[2], k, s);
                let (left, right) = same_padding(size[3], k, s);
                if top == bottom && left == right {
                    x.conv2d(&self.ws, self.bs.as_ref(), [s, s], [top, left], [1, 1], 1)
                } else {
                    // constant_pad_nd takes (left, right, top, bottom) for the last two axes.
                    let padded = x.constant_pad_nd([left, right, top, bottom]);
                    padded.conv2d(&self.ws, self.bs.as_ref(), [s, s], [0, 0], [1, 1], 1)
                }
            }
        }
    }
}

/// A 2-D transposed convolution with TF geometry, weight `[in, out, k, k]`.
///
/// TF's SAME transposed convolution is the adjoint of the SAME convolution with the same kernel
/// and stride, and maps `in` to `in * stride`. It is computed here as libtorch's transposed
/// convolution with padding 0 (output `(in - 1) * s + k`) followed by a crop of the forward
/// convolution's padding: `before` rows/columns at the top/left and `after` at the bottom/right,
/// as [`same_padding`] gives them for the output size. For 3×3 stride 2 that is "padding 0,
/// then crop the trailing row and column" (ORIGINAL §2.3). VALID maps `in` to
/// `(in - 1) * s + k` (7×7 on 1×1 gives 7×7).
#[derive(Debug)]
pub struct ConvTranspose2d {
    /// Weight, `[in, out, k, k]`.
    pub ws: Tensor,
    /// Bias, `[out]`, if any.
    pub bs: Option<Tensor>,
    stride: i64,
    padding: Padding,
}

impl ConvTranspose2d {
    /// Creates a `k`×`k` transposed convolution `input` → `output` channels under `p`: `weight`
    /// Glorot uniform with fans `k*k*input` and `k*k*output`, and `bias` zeros if `bias`.
    ///
    /// SAME needs `k >= stride` (true of every layer in ORIGINAL §3.2).
    pub fn new(
        p: &nn::Path,
        input: i64,
        output: i64,
        k: i64,
        stride: i64,
        padding: Padding,
        bias: bool,
    ) -> Result<Self> {
        if padding == Padding::Same && k < stride {
            return Err(Error::bad(
                p.path("weight"),
                format!("kernel {k} with stride {stride}"),
                "a kernel at least as large as the stride for a SAME transposed convolution",
            ));
        }
        let ws = new_var(
            p,
            "weight",
            &[input, output, k, k],
            glorot_uniform(k * k * input, k * k * output),
        )?;
        let bs = if bias {
            Some(new_var(p, "bias", &[output], Init::Const(0.0))?)
        } else {
            None
        };
        Ok(ConvTranspose2d {
            ws,
            bs,
            stride,
            padding,
        })
    }

    /// Wraps given tensors: weight `[in, out, k, k]`, bias `[out]`. SAME needs `k >= stride`.
    pub fn from_tensors(ws: Tensor, bs: Option<Tensor>, stride: i64, padding: Padding) -> Self {
        ConvTranspose2d {
            ws,
            bs,
            stride,
            padding,
        }
    }

    /// `[B, in, H, W]` → `[B, out, H * s, W * s]` (SAME) or `[B, out, (H-1)*s + k, ..]` (VALID).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        expect_rank(x, 4, "ConvTranspose2d input");
        let k = self.ws.size()[2];
        let s = self.stride;
        let size = x.size();
        if self.padding == Padding::Valid && size[2] == 1 && size[3] == 1 {
            // On a 1x1 input the transposed convolution is a dense layer D -> C·k·k (the first
            // layer of both decoders): one matrix product instead of a convolution call.
            let (c_in, c_out) = (self.ws.size()[0], self.ws.size()[1]);
            let out = x
                .view([size[0], c_in])
                .matmul(&self.ws.view([c_in, c_out * k * k]))
                .view([size[0], c_out, k, k]);
            return match &self.bs {
                Some(b) => out + b.view([1, c_out, 1, 1]),
                None => out,
            };
        }
        match self.padding {
            Padding::Valid => x.conv_transpose2d(
                &self.ws,
                self.bs.as_ref(),
                [s, s],
                [0, 0],
                [0, 0],
                1,
                [1, 1],
            ),
            Padding::Same => {
                let (out_h, out_w) = (size[2] * s, size[3] * s);
                let (top, bottom) = same_padding(out_h, k, s);
                let (left, right) = same_padding(out_w, k, s);
                if top == bottom && left == right {
                    x.conv_transpose2d(
                        &self.ws,
                        self.bs.as_ref(),
                        [s, s],
                        [top, left],
                        [0, 0],
                        1,
                        [1, 1],
                    )
                } else {
                    let full = x.conv_transpose2d(
                        &self.ws,
                        self.bs.as_ref(),
                        [s, s],
                        [0, 0],
                        [0, 0],
                        1,
                        [1, 1],
                    );
                    full.narrow(2, top, out_h).narrow(3, left, out_w)
                }
            }
        }
    }
}

/// TF 1.12 nearest-neighbour resize by one half (ORIGINAL §2.3): source index
/// `floor(dst * in / out)`, i.e. keeps rows and columns 0, 2, 4, …. `[B, C, H, W]` →
/// `[B, C, ceil(H/2), ceil(W/2)]`. (For odd sizes TF would keep `floor(dst * in / out)` with
/// `out = ceil(in / 2)`; only the even sizes 28 and 14 occur here.)
pub fn nearest_half(x: &Tensor) -> Tensor {
    expect_rank(x, 4, "nearest_half input");
    x.slice(2, 0, None, 2).slice(3, 0, None, 2)
}

/// TF 1.12 nearest-neighbour resize by two (ORIGINAL §2.3): each pixel repeated 2×2.
/// `[B, C, H, W]` → `[B, C, 2H, 2W]`.
pub fn nearest_double(x: &Tensor) -> Tensor {
    expect_rank(x, 4, "nearest_double input");
    x.repeat_interleave_self_int(2, Some(2), None)
        .repeat_interleave_self_int(2, Some(3), None)
}

/// Flattens `[B, C, H, W]` in TF's NHWC order (row-major over H, W, C) to `[B, H*W*C]`, so that
/// a dense layer's input index `(h*W + w)*C + c` means what it meant in the original
/// (ORIGINAL §3.1.1 row 8).
pub fn flatten_nhwc(x: &Tensor) -> Tensor {
    expect_rank(x, 4, "flatten_nhwc input");
    x.permute([0, 2, 3, 1]).flatten(1, -1)
}

/// Gated convolution `σ(Conv_g(x)) ⊙ ELU(Conv_h(x))`, two independent convolutions with biases
/// (ORIGINAL §3.1.2). Parameters under `p / "gate"` and `p / "value"`.
#[derive(Debug)]
pub struct GatedConv2d {
    /// The gate branch, `Conv_g`.
    pub gate: Conv2d,
    /// The value branch, `Conv_h` (followed by an ELU, as in the original).
    pub value: Conv2d,
}

impl GatedConv2d {
    /// Creates both branches, `input` → `output` channels, kernel `k`, with biases.
    pub fn new(
        p: &nn::Path,
        input: i64,
        output: i64,
        k: i64,
        stride: i64,
        padding: Padding,
    ) -> Result<Self> {
        Ok(GatedConv2d {
            gate: Conv2d::new(&(p / "gate"), input, output, k, stride, padding, true)?,
            value: Conv2d::new(&(p / "value"), input, output, k, stride, padding, true)?,
        })
    }

    /// `[B, in, H, W]` → `[B, out, H', W']`.
    ///
    /// Both branches read the same input, so they run as one convolution with both weights
    /// stacked along the output channels (one call, the input read once), then split.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let c = self.gate.ws.size()[0];
        let both = Conv2d {
            ws: Tensor::cat(&[&self.gate.ws, &self.value.ws], 0),
            bs: stacked_bias(&self.gate.bs, &self.value.bs),
            stride: self.gate.stride,
            padding: self.gate.padding,
        }
        .forward(x);
        gate_and_value(&both, c)
    }
}

/// The two branches' biases stacked like their weights.
fn stacked_bias(gate: &Option<Tensor>, value: &Option<Tensor>) -> Option<Tensor> {
    match (gate, value) {
        (Some(g), Some(v)) => Some(Tensor::cat(&[g, v], 0)),
        _ => None,
    }
}

/// `σ(gate) ⊙ ELU(value)` from both branches stacked along the channels (`c` each).
fn gate_and_value(both: &Tensor, c: i64) -> Tensor {
    both.narrow(1, 0, c).sigmoid() * elu(&both.narrow(1, c, c))
}

/// Gated transposed convolution `σ(ConvT_g(x)) ⊙ ELU(ConvT_h(x))`, with biases
/// (ORIGINAL §3.2.2). Parameters under `p / "gate"` and `p / "value"`.
#[derive(Debug)]
pub struct GatedConvTranspose2d {
    /// The gate branch.
    pub gate: ConvTranspose2d,
    /// The value branch (followed by an ELU).
    pub value: ConvTranspose2d,
}

impl GatedConvTranspose2d {
    /// Creates both branches, `input` → `output` channels, kernel `k`, with biases.
    pub fn new(
        p: &nn::Path,
        input: i64,
        output: i64,
        k: i64,
        stride: i64,
        padding: Padding,
    ) -> Result<Self> {
        Ok(GatedConvTranspose2d {
            gate: ConvTranspose2d::new(&(p / "gate"), input, output, k, stride, padding, true)?,
            value: ConvTranspose2d::new(&(p / "value"), input, output, k, stride, padding, true)?,
        })
    }

    /// `[B, in, H, W]` → `[B, out, H', W']`, both branches as one transposed convolution.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let c = self.gate.ws.size()[1];
        let both = ConvTranspose2d {
            ws: Tensor::cat(&[&self.gate.ws, &self.value.ws], 1),
            bs: stacked_bias(&self.gate.bs, &self.value.bs),
            stride: self.gate.stride,
            padding: self.gate.padding,
        }
        .forward(x);
        gate_and_value(&both, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn same_padding_matches_tf() {
        // ORIGINAL §2.3: 3x3 stride 2 on 28 and 14 pads 0 before, 1 after.
        assert_eq!(same_padding(28, 3, 2), (0, 1));
        assert_eq!(same_padding(14, 3, 2), (0, 1));
        assert_eq!(same_padding(28, 3, 1), (1, 1));
        assert_eq!(same_padding(28, 5, 1), (2, 2));
        // 5x5 stride 2 on 28: out 14, total 13*2 + 5 - 28 = 3.
        assert_eq!(same_padding(28, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
    }

    /// A 3x3 stride-2 SAME conv on 28x28 equals an explicit TF-style computation: pad one zero
    /// row/column at the bottom/right only, then a VALID conv. Output pixel (0, 0) sees input
    /// rows/cols 0..3 (no padding at the top/left).
    #[test]
    fn stride2_same_conv_pads_bottom_right() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Conv2d::new(&vs.root(), 2, 3, 3, 2, Padding::Same, false).unwrap();
        let x = Tensor::randn([1, 2, 28, 28], (Kind::Float, Device::Cpu));
        let y = conv.forward(&x);
        assert_eq!(y.size(), [1, 3, 14, 14]);
        let top_left = (x.narrow(2, 0, 3).narrow(3, 0, 3).unsqueeze(1) * conv.ws.unsqueeze(0))
            .sum_dim_intlist([2, 3, 4].as_slice(), false, Kind::Float);
        let diff = (y.select(2, 0).select(2, 0) - top_left)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
        // The bottom-right output sees rows/cols 26, 27 and the zero padding.
        let br = (x.narrow(2, 26, 2).narrow(3, 26, 2).unsqueeze(1)
            * conv.ws.narrow(2, 0, 2).narrow(3, 0, 2).unsqueeze(0))
        .sum_dim_intlist([2, 3, 4].as_slice(), false, Kind::Float);
        let diff = (y.select(2, 13).select(2, 13) - br)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
    }

    /// The SAME transposed convolution is the exact adjoint of the SAME convolution with the same
    /// kernel: <conv(x), y> = <x, convT(y)> (ORIGINAL §2.3), for 3x3 and 5x5 at strides 1, 2.
    #[test]
    fn transposed_conv_is_adjoint_of_conv() {
        tch::manual_seed(2);
        for (k, s, n) in [
            (3, 2, 14),
            (3, 2, 28),
            (5, 2, 14),
            (5, 2, 28),
            (3, 1, 7),
            (5, 1, 7),
        ] {
            let ws = Tensor::randn([4, 3, k, k], (Kind::Double, Device::Cpu));
            // Conv weight [out=4, in=3]; the adjoint maps 4 → 3 channels with the same tensor,
            // which libtorch's transposed layout [in=4, out=3] reads directly.
            let conv = Conv2d::from_tensors(ws.shallow_clone(), None, s, Padding::Same);
            let convt = ConvTranspose2d::from_tensors(ws, None, s, Padding::Same);
            let x = Tensor::randn([2, 3, n, n], (Kind::Double, Device::Cpu));
            let cx = conv.forward(&x);
            let y = Tensor::randn(cx.size(), (Kind::Double, Device::Cpu));
            let cty = convt.forward(&y);
            assert_eq!(cty.size(), x.size(), "k{k} s{s} n{n}");
            let lhs = (&cx * &y).sum(Kind::Double).double_value(&[]);
            let rhs = (&x * &cty).sum(Kind::Double).double_value(&[]);
            assert!(
                (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
                "k{k} s{s} n{n}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn nearest_resizes_match_tf() {
        let x = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
        let half = nearest_half(&x);
        assert_eq!(
            Vec::<f32>::try_from(half.flatten(0, -1)).unwrap(),
            [0.0, 2.0, 8.0, 10.0]
        );
        let y = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 1, 2, 2]);
        let double = nearest_double(&y);
        assert_eq!(
            Vec::<f32>::try_from(double.flatten(0, -1)).unwrap(),
            [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
        );
    }

    #[test]
    fn flatten_is_nhwc() {
        // [1, C=2, H=1, W=2]: NHWC order is (w0,c0), (w0,c1), (w1,c0), (w1,c1).
        let x = Tensor::from_slice(&[1.0f32, 2.0, 10.0, 20.0]).view([1, 2, 1, 2]);
        assert_eq!(
            Vec::<f32>::try_from(flatten_nhwc(&x).flatten(0, -1)).unwrap(),
            [1.0, 10.0, 2.0, 20.0]
        );
    }

    #[test]
    fn glorot_bounds() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d = Dense::new(&vs.root(), 300, 100, false).unwrap();
        let a = (6.0f64 / 400.0).sqrt();
        let max = d.ws.abs().max().double_value(&[]);
        assert!(max <= a * (1.0 + 1e-6) && max > 0.95 * a, "{max} vs {a}");
        let c = Conv2d::new(&(vs.root() / "c"), 16, 32, 3, 1, Padding::Same, true).unwrap();
        let a = (6.0f64 / (9.0 * 48.0)).sqrt();
        let max = c.ws.abs().max().double_value(&[]);
        assert!(max <= a * (1.0 + 1e-6) && max > 0.95 * a, "{max} vs {a}");
        assert_eq!(c.bs.unwrap().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let vs = nn::VarStore::new(Device::Cpu);
        Dense::new(&(vs.root() / "fc"), 3, 2, true).unwrap();
        let err = Dense::new(&(vs.root() / "fc"), 3, 2, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter `fc.weight` already exists in the variable store: build each network under its own path segment"
        );
    }
}
