//! A user's examples from an array file, for evaluating a model flowvae did not train
//! (`vae eval --model FILE.pt --data FILE`): `.npy` (through `npyz`), `.safetensors` (through
//! `safetensors`; the tensor named `x`, or the only one) and IDX (through vae-io).
//!
//! Every format gives `[N, ...]` examples as f32: float32 and float64 values as they are, and
//! unsigned bytes divided by 255 (grey levels in `[0, 1]`, as flowvae reads MNIST). Fixed
//! binarization draws `x = 1` with probability `x` from a recorded seed, example `i` keyed by
//! `(seed, i)` as flowvae's own fixed splits are, so the same file and seed always give the same
//! binary data.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::binarize::{draw_key, ONCE};

/// Examples read from an array file: `shape[0]` examples of `shape[1..]` values each.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayExamples {
    /// Row-major values.
    pub values: Vec<f32>,
    /// `[N, ...]`, at least one dimension.
    pub shape: Vec<usize>,
    /// Where they came from, for messages and summaries: the file, and for safetensors the
    /// tensor's name.
    pub source: String,
}

/// Why an array file cannot be read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArrayFileError {
    /// The file cannot be read.
    #[error("{path}: cannot read it: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Its content is not what its extension promises, or holds what cannot be examples.
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong and what would be valid.
        reason: String,
    },
}

fn bad(path: &Path, reason: impl Into<String>) -> ArrayFileError {
    ArrayFileError::Bad {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads the examples in `path`, by its extension: `.npy`, `.safetensors`, or IDX (`.idx`,
/// `-ubyte`, `.gz` of either).
pub fn read_examples(path: &Path) -> Result<ArrayExamples, ArrayFileError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    vae_io::require_regular_file(path).map_err(|source| ArrayFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let read = || {
        std::fs::read(path).map_err(|source| ArrayFileError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let out = if name.ends_with(".npy") {
        read_npy(path, &read()?)?
    } else if name.ends_with(".safetensors") {
        read_safetensors(path, &read()?)?
    } else if name.ends_with(".idx") || name.contains("-ubyte") || name.ends_with(".idx.gz") {
        let images = vae_io::idx::read_images(path).map_err(|e| bad(path, e.to_string()))?;
        ArrayExamples {
            values: images.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            shape: vec![images.count, images.rows, images.cols],
            source: path.display().to_string(),
        }
    } else {
        return Err(bad(
            path,
            "unknown format: expected a .npy, .safetensors or IDX (.idx, *-ubyte, .gz) file",
        ));
    };
    if out.shape.first().copied().unwrap_or(0) == 0 {
        return Err(bad(path, format!("no examples (shape {:?})", out.shape)));
    }
    if let Some(i) = out.values.iter().position(|v| !v.is_finite()) {
        return Err(bad(
            path,
            format!("value {i} is not finite ({})", out.values[i]),
        ));
    }
    Ok(out)
}

fn read_npy(path: &Path, bytes: &[u8]) -> Result<ArrayExamples, ArrayFileError> {
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(path, format!("not a .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(bad(
            path,
            "Fortran (column-major) order: save a C-ordered array (np.ascontiguousarray)",
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let descr = dtype.descr();
    let values: Vec<f32> = match &dtype {
        npyz::DType::Plain(ts) => match (ts.type_char(), ts.size_field()) {
            (npyz::TypeChar::Float, 4) => npy.into_vec::<f32>(),
            (npyz::TypeChar::Float, 8) => npy
                .into_vec::<f64>()
                .map(|v| v.into_iter().map(|x| x as f32).collect()),
            (npyz::TypeChar::Uint, 1) => npy
                .into_vec::<u8>()
                .map(|v| v.into_iter().map(|x| x as f32 / 255.0).collect()),
            _ => return Err(unsupported(path, &descr)),
        },
        _ => return Err(unsupported(path, &descr)),
    }
    .map_err(|e| bad(path, format!("reading the data: {e}")))?;
    Ok(ArrayExamples {
        values,
        shape,
        source: path.display().to_string(),
    })
}

fn unsupported(path: &Path, dtype: &str) -> ArrayFileError {
    bad(
        path,
        format!("dtype {dtype}: expected float32, float64 or uint8 (grey levels 0..255)"),
    )
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<ArrayExamples, ArrayFileError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a .safetensors file: {e:?}")))?;
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    let name = if names.iter().any(|n| n == "x") {
        "x".to_string()
    } else if names.len() == 1 {
        names[0].clone()
    } else {
        return Err(bad(
            path,
            format!(
                "{} tensors ({}) and none named `x`: name the examples `x`",
                names.len(),
                names.join(", ")
            ),
        ));
    };
    let t = st
        .tensor(&name)
        .map_err(|e| bad(path, format!("tensor `{name}`: {e:?}")))?;
    let data = t.data();
    let values: Vec<f32> = match t.dtype() {
        safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        safetensors::Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| {
                f64::from_le_bytes(c.try_into().expect("chunks_exact(8) yields 8-byte slices"))
                    as f32
            })
            .collect(),
        safetensors::Dtype::U8 => data.iter().map(|&p| p as f32 / 255.0).collect(),
        other => {
            return Err(bad(
                path,
                format!("tensor `{name}` has dtype {other:?}: expected F32, F64 or U8"),
            ))
        }
    };
    Ok(ArrayExamples {
        values,
        shape: t.shape().to_vec(),
        source: format!("{} (tensor `{name}`)", path.display()),
    })
}

impl ArrayExamples {
    /// Number of examples, `shape[0]`.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether there are none (never, for what [`read_examples`] returns).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per example.
    pub fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// The first `n` examples (all if fewer).
    pub fn truncated(mut self, n: usize) -> ArrayExamples {
        let n = n.min(self.len());
        self.values.truncate(n * self.row_len());
        self.shape[0] = n;
        self
    }

    /// Binarizes in place: each value `p` becomes 1 with probability `p`, else 0, example `i`
    /// drawn from `(seed, i)` (flowvae's fixed binarization). Errors name the first value
    /// outside `[0, 1]`.
    pub fn binarize_fixed(&mut self, seed: u64) -> Result<(), String> {
        if let Some(i) = self.values.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(format!(
                "{}: value {i} is {}, outside [0, 1]: fixed binarization reads values as \
                 probabilities (use --binarize none for data that are already what the model \
                 expects)",
                self.source, self.values[i]
            ));
        }
        let row = self.row_len().max(1);
        for (i, chunk) in self.values.chunks_mut(row).enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(draw_key(seed, ONCE, i));
            for v in chunk.iter_mut() {
                let u: f32 = rng.gen();
                *v = if u < *v { 1.0 } else { 0.0 };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1.0 .npy file of `shape` holding `data` with dtype `descr`.
    fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let shape = if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn npy_float32_float64_and_uint8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let f: Vec<u8> = [0.5f32, 1.0, 0.0, 0.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&p, npy("<f4", &[2, 2], &f)).unwrap();
        let a = read_examples(&p).unwrap();
        assert_eq!(
            (a.values.clone(), a.shape.clone()),
            (vec![0.5, 1.0, 0.0, 0.25], vec![2, 2])
        );
        let d: Vec<u8> = [0.5f64, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, npy("<f8", &[2], &d)).unwrap();
        assert_eq!(read_examples(&p).unwrap().values, vec![0.5, 1.0]);
        std::fs::write(&p, npy("|u1", &[1, 3], &[0, 51, 255])).unwrap();
        assert_eq!(read_examples(&p).unwrap().values, vec![0.0, 0.2, 1.0]);
        std::fs::write(&p, npy("<i4", &[1], &[0, 0, 0, 0])).unwrap();
        let e = read_examples(&p).unwrap_err().to_string();
        assert!(e.contains("expected float32, float64 or uint8"), "{e}");
        std::fs::write(&p, b"not numpy").unwrap();
        assert!(read_examples(&p)
            .unwrap_err()
            .to_string()
            .contains("not a .npy file"));
    }

    #[test]
    fn safetensors_by_name_or_alone() {
        use safetensors::tensor::{serialize, Dtype, TensorView};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let bytes: Vec<u8> = [1.0f32, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let x = TensorView::new(Dtype::F32, vec![1, 2], &bytes).unwrap();
        let y = TensorView::new(Dtype::F32, vec![2, 1], &bytes).unwrap();
        std::fs::write(&p, serialize([("x", &x), ("y", &y)], &None).unwrap()).unwrap();
        let a = read_examples(&p).unwrap();
        assert_eq!(
            (a.shape.clone(), a.values.clone()),
            (vec![1, 2], vec![1.0, 0.0])
        );
        std::fs::write(&p, serialize([("images", &y)], &None).unwrap()).unwrap();
        assert_eq!(read_examples(&p).unwrap().shape, vec![2, 1]);
        std::fs::write(&p, serialize([("a", &x), ("b", &y)], &None).unwrap()).unwrap();
        let e = read_examples(&p).unwrap_err().to_string();
        assert!(e.contains("none named `x`"), "{e}");
    }

    #[test]
    fn fixed_binarization_is_reproducible_and_checks_its_input() {
        let mut a = ArrayExamples {
            values: vec![0.5; 400],
            shape: vec![4, 100],
            source: "t".into(),
        };
        let mut b = a.clone();
        a.binarize_fixed(7).unwrap();
        b.binarize_fixed(7).unwrap();
        assert_eq!(a, b);
        assert!(a.values.iter().all(|&v| v == 0.0 || v == 1.0));
        // About half ones: 400 draws of p = 0.5 have sd 10.
        let ones = a.values.iter().filter(|&&v| v == 1.0).count();
        assert!((150..=250).contains(&ones), "{ones}");
        let mut c = ArrayExamples {
            values: vec![2.0],
            shape: vec![1, 1],
            source: "t".into(),
        };
        assert!(c.binarize_fixed(0).unwrap_err().contains("outside [0, 1]"));
        assert_eq!(a.clone().truncated(2).shape, vec![2, 100]);
    }
}
