//! JSON text to a `serde_json::Value` with every key given at most once per object.
//!
//! `serde_json::Value` keeps the last of two equal keys, so `{"epochs": 10, "epochs": 1000}`
//! would silently train for 1000 epochs. Config files are read through [`parse`] first; the
//! typed structs behind them then refuse unknown keys as usual. Written by hand (a visitor of a
//! few dozen lines) because serde_json has no option for it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a text is not strict JSON: the message, with the key's dotted path (`train.epochs`) for
/// a duplicate and serde_json's line and column.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StrictJsonError {
    /// The message.
    pub message: String,
}

/// The start of a duplicate key's message, written by the visitor and recognised by
/// [`StrictJsonError::is_duplicate_key`].
const DUPLICATE: &str = "duplicate key `";

impl StrictJsonError {
    /// Whether the text is JSON but gives one key twice (rather than not being JSON at all).
    pub fn is_duplicate_key(&self) -> bool {
        self.message.starts_with(DUPLICATE)
    }
}

/// Parses `text` as JSON, refusing an object that gives one key twice: the error names the
/// key's path, e.g. "duplicate key `train.epochs` at line 3 column 14".
///
/// ```
/// let v = vae_io::strict_json::parse(r#"{"a": {"b": 1}}"#).unwrap();
/// assert_eq!(v["a"]["b"], 1);
/// let e = vae_io::strict_json::parse(r#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
/// assert!(e.to_string().starts_with("duplicate key `a.b`"), "{e}");
/// ```
pub fn parse(text: &str) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictSeed {
        path: String::new(),
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v))
    .map_err(|e| StrictJsonError {
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Reads one value; `path` is its dotted key path, for messages.
struct StrictSeed {
    path: String,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(StrictSeed { path })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "{DUPLICATE}{path}` (each key may be given once)"
                )));
            }
            let value = map.next_value_seed(StrictSeed { path })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_and_duplicates() {
        let text = r#"{"name": "a", "x": [1, 2.5, {"k": null}], "t": {"e": true}}"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        for (text, path) in [
            (r#"{"name": "a", "name": "b"}"#, "name"),
            (r#"{"train": {"epochs": 1, "epochs": 2}}"#, "train.epochs"),
            (r#"{"x": [{"k": 1}, {"k": 1, "k": 1}]}"#, "x[1].k"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("duplicate key `{path}`")), "{e}");
            assert!(parse(text).unwrap_err().is_duplicate_key());
            assert!(e.contains("line 1 column"), "{e}");
        }
        assert!(!parse("{} x").unwrap_err().is_duplicate_key());
        assert!(
            parse(&"[".repeat(100_000)).is_err(),
            "deep nesting is an error"
        );
    }
}
