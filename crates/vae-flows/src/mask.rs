//! cMADE masks by the original's block-degree rule (ORIGINAL §3.4.1), in plain Rust.
//!
//! A [`Mask`] has shape `(n_in, n_out)`, as in the spec: entry `[i, j]` is `true` when input unit
//! `i` feeds output unit `j`, and a layer computes `y = x · (M ⊙ W)` for a row vector `x`. (The
//! tensors in [`crate::MaskedLinear`] store the transpose, `[n_out, n_in]`, as tch's `Linear`
//! does.)
//!
//! **Architecture Invariant:** for the widths that [`made_masks`] accepts, the boolean product
//! `M_0 · M_1 · … · M_L` is strictly upper triangular in [`MaskOrder::Natural`] order (output `b`
//! sees only latents `a < b`) and strictly lower triangular in [`MaskOrder::Reversed`] order
//! (only `a > b`), so `∂out_b/∂z_a = 0` for every latent `a` at or after `b` in the layer's
//! order. [`made_masks`] checks this and returns [`Error::NotAutoregressive`] otherwise.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The autoregressive direction of one flow layer. The latent vector is never permuted; only the
/// direction flips from layer to layer (ORIGINAL §3.4.1, "Ordering across layers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskOrder {
    /// The original's "even" masks, used by flow layers 0, 2, 4, …: output `b` depends on `z_a`
    /// for `a < b`.
    Natural,
    /// The original's "odd" masks, used by flow layers 1, 3, 5, …: output `b` depends on `z_a`
    /// for `a > b`.
    Reversed,
}

impl MaskOrder {
    /// The order of flow layer `t`: [`Natural`](Self::Natural) for even `t`,
    /// [`Reversed`](Self::Reversed) for odd `t`.
    pub fn for_layer(t: usize) -> MaskOrder {
        if t.is_multiple_of(2) {
            MaskOrder::Natural
        } else {
            MaskOrder::Reversed
        }
    }

    /// The other order.
    pub fn flipped(self) -> MaskOrder {
        match self {
            MaskOrder::Natural => MaskOrder::Reversed,
            MaskOrder::Reversed => MaskOrder::Natural,
        }
    }

    /// Whether latent `input` may influence latent `output` in this order (`input < output` for
    /// natural, `input > output` for reversed).
    pub fn allows(self, input: usize, output: usize) -> bool {
        match self {
            MaskOrder::Natural => input < output,
            MaskOrder::Reversed => input > output,
        }
    }
}

/// A boolean connectivity matrix of shape `(n_in, n_out)`, stored row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    n_in: usize,
    n_out: usize,
    bits: Vec<bool>,
}

impl Mask {
    /// Builds a mask from a row-major `n_in × n_out` slice of booleans.
    ///
    /// Returns [`Error::InvalidConfig`] when the length is not `n_in * n_out`.
    pub fn from_rows(n_in: usize, n_out: usize, bits: Vec<bool>) -> Result<Mask> {
        if bits.len() != n_in * n_out {
            return Err(Error::InvalidConfig {
                field: "mask",
                value: format!("{} entries for {n_in}x{n_out}", bits.len()),
                expected: "n_in * n_out row-major entries",
            });
        }
        Ok(Mask { n_in, n_out, bits })
    }

    /// One mask of the block-degree rule (ORIGINAL §3.4.1). `last` selects the final
    /// hidden → latent rule, which is strict; the others are not.
    ///
    /// The caller guarantees that the larger of `n_in`, `n_out` is a multiple of the smaller.
    fn block_degree(n_in: usize, n_out: usize, order: MaskOrder, last: bool) -> Mask {
        let mut bits = vec![false; n_in * n_out];
        for i in 0..n_in {
            for j in 0..n_out {
                let on = if n_out >= n_in {
                    let k = n_out / n_in;
                    match (order, last) {
                        (MaskOrder::Natural, false) => j >= i * k,
                        (MaskOrder::Natural, true) => j >= (i + 1) * k,
                        (MaskOrder::Reversed, false) => j < (i + 1) * k,
                        (MaskOrder::Reversed, true) => j < i * k,
                    }
                } else {
                    // The spec writes this case as M[r, i] with r the input and i the output.
                    let k = n_in / n_out;
                    let (r, i) = (i, j);
                    match (order, last) {
                        (MaskOrder::Natural, false) => r < (i + 1) * k,
                        (MaskOrder::Natural, true) => r < i * k,
                        (MaskOrder::Reversed, false) => r >= i * k,
                        (MaskOrder::Reversed, true) => r >= (i + 1) * k,
                    }
                };
                bits[i * n_out + j] = on;
            }
        }
        Mask { n_in, n_out, bits }
    }

    /// The identity mask `I_n`.
    pub fn identity(n: usize) -> Mask {
        let mut bits = vec![false; n * n];
        for i in 0..n {
            bits[i * n + i] = true;
        }
        Mask {
            n_in: n,
            n_out: n,
            bits,
        }
    }

    /// Number of input units (rows).
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Number of output units (columns).
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// Whether input `i` feeds output `j`. Panics when out of range.
    pub fn get(&self, i: usize, j: usize) -> bool {
        assert!(
            i < self.n_in && j < self.n_out,
            "mask index ({i}, {j}) out of range for {}x{}",
            self.n_in,
            self.n_out
        );
        self.bits[i * self.n_out + j]
    }

    /// The entries, row-major (`[i * n_out + j]`).
    pub fn as_slice(&self) -> &[bool] {
        &self.bits
    }

    /// The entries as 0/1 bytes, row-major.
    pub fn to_u8(&self) -> Vec<u8> {
        self.bits.iter().map(|&b| u8::from(b)).collect()
    }

    /// The transpose, `(n_out, n_in)`, row-major: the layout of a tch `Linear` weight.
    pub fn transposed(&self) -> Mask {
        let mut bits = vec![false; self.bits.len()];
        for i in 0..self.n_in {
            for j in 0..self.n_out {
                bits[j * self.n_in + i] = self.bits[i * self.n_out + j];
            }
        }
        Mask {
            n_in: self.n_out,
            n_out: self.n_in,
            bits,
        }
    }

    /// Number of `true` entries (connections kept).
    pub fn count_ones(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }

    /// Boolean matrix product `self · other` (is there a path from input `i` to output `j`?).
    ///
    /// Returns [`Error::MaskShapes`] when `self.n_out() != other.n_in()`.
    pub fn product(&self, other: &Mask) -> Result<Mask> {
        if self.n_out != other.n_in {
            return Err(Error::MaskShapes {
                left_out: self.n_out,
                right_in: other.n_in,
            });
        }
        let words = other.n_out.div_ceil(64);
        // Rows of `other` as bitsets: result row i is the OR of other's rows k with self[i, k].
        let mut rows = vec![0u64; other.n_in * words];
        for k in 0..other.n_in {
            for j in 0..other.n_out {
                if other.bits[k * other.n_out + j] {
                    rows[k * words + j / 64] |= 1 << (j % 64);
                }
            }
        }
        let mut bits = vec![false; self.n_in * other.n_out];
        let mut acc = vec![0u64; words];
        for i in 0..self.n_in {
            acc.fill(0);
            for k in 0..self.n_out {
                if self.bits[i * self.n_out + k] {
                    for (a, r) in acc.iter_mut().zip(&rows[k * words..(k + 1) * words]) {
                        *a |= r;
                    }
                }
            }
            for j in 0..other.n_out {
                bits[i * other.n_out + j] = acc[j / 64] >> (j % 64) & 1 == 1;
            }
        }
        Ok(Mask {
            n_in: self.n_in,
            n_out: other.n_out,
            bits,
        })
    }

    /// Elementwise AND of two masks of the same shape.
    ///
    /// Returns [`Error::MaskShapes`] when the shapes differ.
    pub fn and(&self, other: &Mask) -> Result<Mask> {
        if (self.n_in, self.n_out) != (other.n_in, other.n_out) {
            return Err(Error::MaskShapes {
                left_out: self.n_out,
                right_in: other.n_in,
            });
        }
        let bits = self
            .bits
            .iter()
            .zip(&other.bits)
            .map(|(a, b)| *a && *b)
            .collect();
        Ok(Mask {
            n_in: self.n_in,
            n_out: self.n_out,
            bits,
        })
    }

    /// Whether every `true` entry `[i, j]` has `i < j` (square masks only; `false` otherwise).
    pub fn is_strictly_upper(&self) -> bool {
        self.first_violation(MaskOrder::Natural).is_none() && self.n_in == self.n_out
    }

    /// Whether every `true` entry `[i, j]` has `i > j` (square masks only; `false` otherwise).
    pub fn is_strictly_lower(&self) -> bool {
        self.first_violation(MaskOrder::Reversed).is_none() && self.n_in == self.n_out
    }

    /// Whether this square connectivity matrix respects `order`: strictly upper triangular for
    /// [`MaskOrder::Natural`], strictly lower triangular for [`MaskOrder::Reversed`].
    pub fn is_strictly_triangular(&self, order: MaskOrder) -> bool {
        match order {
            MaskOrder::Natural => self.is_strictly_upper(),
            MaskOrder::Reversed => self.is_strictly_lower(),
        }
    }

    /// The first `(input, output)` connection that `order` forbids, if any.
    fn first_violation(&self, order: MaskOrder) -> Option<(usize, usize)> {
        (0..self.n_in)
            .flat_map(|i| (0..self.n_out).map(move |j| (i, j)))
            .find(|&(i, j)| self.bits[i * self.n_out + j] && !order.allows(i, j))
    }
}

/// The masks of one cMADE, `units = [D, h1, …, hL, D]` (ORIGINAL §3.4.1): one mask per
/// consecutive pair, the last one with the strict "last" rule. Both output heads (`m` and `s`)
/// share the last mask.
///
/// Errors, all without panicking:
/// - [`Error::InvalidConfig`] when there are fewer than three widths (the cMADE needs a hidden
///   layer), a width is zero, or the first and last widths differ;
/// - [`Error::Indivisible`] when a consecutive pair does not divide (e.g. `[64, 100, 64]`);
/// - [`Error::NotAutoregressive`] when the product of the masks is not strictly triangular in
///   `order` (the original's build-time check; it fails e.g. for `[64, 32, 64, 64]`).
pub fn made_masks(units: &[usize], order: MaskOrder) -> Result<Vec<Mask>> {
    if units.len() < 3 {
        return Err(Error::InvalidConfig {
            field: "units",
            value: format!("{units:?}"),
            expected: "[D, h1, .., D] with at least one hidden width",
        });
    }
    if units.contains(&0) {
        return Err(Error::InvalidConfig {
            field: "units",
            value: format!("{units:?}"),
            expected: "positive widths",
        });
    }
    if units[0] != units[units.len() - 1] {
        return Err(Error::InvalidConfig {
            field: "units",
            value: format!("{units:?}"),
            expected: "the same latent width first and last",
        });
    }
    for (layer, pair) in units.windows(2).enumerate() {
        let (n_in, n_out) = (pair[0], pair[1]);
        if !n_in.max(n_out).is_multiple_of(n_in.min(n_out)) {
            return Err(Error::Indivisible { layer, n_in, n_out });
        }
    }
    let last = units.len() - 2;
    let masks: Vec<Mask> = units
        .windows(2)
        .enumerate()
        .map(|(l, pair)| Mask::block_degree(pair[0], pair[1], order, l == last))
        .collect();
    let product = connectivity(&masks)?;
    if let Some((input, output)) = product.first_violation(order) {
        return Err(Error::NotAutoregressive {
            units: units.to_vec(),
            order,
            input,
            output,
        });
    }
    Ok(masks)
}

/// Which latent inputs reach which latent outputs: `I_D · M_0 · M_1 · … · M_L` as a boolean
/// `(D, D)` mask.
///
/// Returns [`Error::MaskShapes`] when consecutive masks do not chain, and
/// [`Error::InvalidConfig`] for an empty list.
pub fn connectivity(masks: &[Mask]) -> Result<Mask> {
    let (first, rest) = masks.split_first().ok_or_else(|| Error::InvalidConfig {
        field: "masks",
        value: "[]".into(),
        expected: "at least one mask",
    })?;
    rest.iter().try_fold(first.clone(), |acc, m| acc.product(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_hidden_masks_are_index_wise() {
        let even = Mask::block_degree(4, 4, MaskOrder::Natural, false);
        let odd = Mask::block_degree(4, 4, MaskOrder::Reversed, false);
        for i in 0..4 {
            for j in 0..4 {
                assert_eq!(even.get(i, j), j >= i);
                assert_eq!(odd.get(i, j), j <= i);
            }
        }
    }

    #[test]
    fn transpose_round_trips() {
        let m = Mask::block_degree(2, 6, MaskOrder::Natural, false);
        let t = m.transposed();
        assert_eq!((t.n_in(), t.n_out()), (6, 2));
        assert_eq!(t.transposed(), m);
        assert_eq!(t.get(4, 1), m.get(1, 4));
    }

    #[test]
    fn product_shape_mismatch_is_an_error() {
        let err = Mask::identity(3).product(&Mask::identity(4)).unwrap_err();
        assert!(matches!(
            err,
            Error::MaskShapes {
                left_out: 3,
                right_in: 4
            }
        ));
    }
}
