//! Amortized flow parameters: one linear head per parameter group on the encoder's context
//! vector, or a plain learned vector without a context (FLOWS §1.3).

use tch::{nn, Tensor};

use crate::error::Result;

/// A parameter group of `size` values per example: `θ = W c + b` (`W [size, C]`, `b [size]`)
/// when the flow has a context of width `C > 0`, else `θ = b`, the same for every example. The
/// second case is the first with an empty context, so both store `b` as `<p>.bias` and the first
/// adds `<p>.weight`.
///
/// `W` is initialised `U(−1/√C, 1/√C)` (a PyTorch `Linear`'s default, as the Sylvester-flow
/// paper's amortized layers), `b` with the initialiser the flow gives.
#[derive(Debug)]
pub(crate) struct Amortized {
    weight: Option<Tensor>,
    bias: Tensor,
    size: i64,
}

impl Amortized {
    /// Creates `<p>.bias` (`[size]`, `init`) and, when `context_size > 0`, `<p>.weight`
    /// (`[size, context_size]`).
    pub(crate) fn new(
        p: &nn::Path,
        size: i64,
        context_size: i64,
        init: nn::Init,
    ) -> Result<Amortized> {
        let weight = if context_size > 0 {
            let a = 1.0 / (context_size as f64).sqrt();
            Some(p.f_var(
                "weight",
                &[size, context_size],
                nn::Init::Uniform { lo: -a, up: a },
            )?)
        } else {
            None
        };
        let bias = p.f_var("bias", &[size], init)?;
        Ok(Amortized { weight, bias, size })
    }

    /// The dtype of the values (follows `VarStore::double` and friends).
    pub(crate) fn kind(&self) -> tch::Kind {
        self.bias.kind()
    }

    /// The device of the values.
    pub(crate) fn device(&self) -> tch::Device {
        self.bias.device()
    }

    /// Trainable values of a group of `size` values: `size · (context_size + 1)`.
    pub(crate) fn parameter_count(size: i64, context_size: i64) -> i64 {
        size * (context_size.max(0) + 1)
    }

    /// The values for a batch of `batch` examples, `[batch, size]`: `context [B, C]` through the
    /// head, or the shared vector expanded (no copy).
    ///
    /// Panics when a context is given to a head without one, or missing, or not `[batch, C]`:
    /// the flow checks this once per pass and passes the context it was built for.
    pub(crate) fn forward(&self, context: Option<&Tensor>, batch: i64) -> Tensor {
        match (&self.weight, context) {
            (Some(w), Some(c)) => {
                let width = w.size()[1];
                assert!(
                    c.size() == [batch, width],
                    "flow expects a context of shape [{batch}, {width}], got {:?}",
                    c.size()
                );
                c.linear(w, Some(&self.bias))
            }
            (None, None) => self.bias.unsqueeze(0).expand([batch, self.size], false),
            (Some(w), None) => panic!(
                "this flow was built with context_size {} but got no context",
                w.size()[1]
            ),
            (None, Some(c)) => panic!(
                "this flow was built without a context but got one of shape {:?}",
                c.size()
            ),
        }
    }
}
