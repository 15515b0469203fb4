//! The optimizer state that checkpoints store: the moments and the step count as named
//! tensors (`adam.m.<var>`, `adam.v.<var>`, `adam.step`), and their restoration, which checks
//! every tensor before it copies any, so that a refused checkpoint leaves the optimizer as it
//! was.
//!
//! Apart from the update rules and the storage because its contract is the checkpoint format,
//! which the trainer writes and reads and fuzz/ feeds with outside input: these names and checks
//! must stay as they are when the arithmetic or the layout changes.

use std::collections::HashMap;

use tch::Tensor;

use super::Adam;
use crate::error::{Error, Result};

impl Adam {
    /// The state as named tensors: `adam.m.<var>`, `adam.v.<var>` and `adam.step`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len() + 1);
        for (i, name) in self.names.iter().enumerate() {
            out.push((format!("adam.m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("adam.v.{name}"), self.v[i].shallow_clone()));
        }
        out.push(("adam.step".into(), Tensor::from_slice(&[self.step_count()])));
        out
    }

    /// Restores the state written by [`state_tensors`](Self::state_tensors); `path` names the
    /// checkpoint in errors.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        path: &std::path::Path,
    ) -> Result<()> {
        let err = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let step = tensors
            .get("adam.step")
            .ok_or_else(|| err("no adam.step tensor".into()))?;
        // Checked before anything is copied: a 0-dim or empty step made `int64_value` panic
        // (found by fuzz/ `checkpoint`), and `step` needs a count that fits its `i32` power.
        let step = match step.size().as_slice() {
            [1] => step.f_int64_value(&[0]).ok(),
            _ => None,
        }
        .filter(|s| (0..=i64::from(i32::MAX)).contains(s))
        .ok_or_else(|| {
            err(format!(
                "adam.step (shape {:?}) is not a step count in 0..={}",
                step.size(),
                i32::MAX
            ))
        })?;
        let mut loaded = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            let mut pair = Vec::with_capacity(2);
            for which in ["m", "v"] {
                let key = format!("adam.{which}.{name}");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| err(format!("no {key} tensor")))?;
                if t.size() != self.params[i].size() {
                    return Err(err(format!(
                        "{key} has shape {:?}, the model's {name} has {:?}",
                        t.size(),
                        self.params[i].size()
                    )));
                }
                pair.push(
                    t.to_device(self.params[i].device())
                        .to_kind(self.params[i].kind()),
                );
            }
            loaded.push(pair);
        }
        tch::no_grad(|| {
            for (i, pair) in loaded.into_iter().enumerate() {
                self.m[i].copy_(&pair[0]);
                self.v[i].copy_(&pair[1]);
            }
        });
        self.step = step;
        self.device_step = None;
        Ok(())
    }
}
