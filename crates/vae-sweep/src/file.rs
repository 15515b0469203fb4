//! The sweep file as serde reads it: structs with `deny_unknown_fields`, and leaf types whose
//! own checks give the messages of the file format ("expected an integer >= 1, found 0").
//!
//! [`crate::spec`] parses through `serde_path_to_error`, which puts the key's path in front of
//! each message (`seeds[1]`, `variants[0].set.model latent`), and turns the raw structs into a
//! checked [`crate::Sweep`]. Every value that holds other values (the top level, `variants`,
//! `eval`, `slurm`, each `set` and `grid`) is read with `deserialize_any`, so that a value of the
//! wrong type is reported as "expected ..., found an array" rather than by serde's defaults, and
//! an object is never accepted in serde's array form. Duplicate keys are refused everywhere:
//! serde's own check for the structs' fields, [`Overrides`] and [`Grid`] for config keys.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// How a value is named in "found ..." messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The visitor methods of every JSON type but the ones a visitor accepts, each refusing its
/// value with "expected {self.expected()}, found {type}".
macro_rules! refuse {
    ($($method:ident ($($arg:ty)?) => $found:literal),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self $(, _: $arg)?) -> Result<Self::Value, E> {
                Err(E::custom(format_args!("expected {}, found {}", self.expected(), $found)))
            }
        )*
    };
}

/// For a `deserialize_with`: the key, when present, must hold a valid value (`null` included:
/// `"name": null` is refused, not taken as absent).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A non-empty string without control characters. A line break in `name` or a `slurm` value
/// would end its `#SBATCH` or comment line and run the rest as a command in the Slurm script
/// (found by fuzz/ `sweep`), so every string of a sweep file is refused with one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s.chars().any(char::is_control) => Err(de::Error::custom(
                format_args!("{s:?} contains a control character such as a line break"),
            )),
            Value::String(s) if !s.is_empty() => Ok(Text(s)),
            other => Err(de::Error::custom(format_args!(
                "expected a non-empty string, found {}",
                type_name(&other)
            ))),
        }
    }
}

/// An integer of at least `MIN`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UInt<const MIN: u64>(pub u64);

impl<'de, const MIN: u64> Deserialize<'de> for UInt<MIN> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v.as_u64() {
            Some(n) if n >= MIN => Ok(UInt(n)),
            _ => Err(de::Error::custom(format_args!(
                "expected an integer >= {MIN}, found {v}"
            ))),
        }
    }
}

/// A [`Text`] without whitespace: a `#SBATCH` value or option, which a space would split into
/// two words for sbatch (the second silently read as something else).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Word(pub String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(s) = Text::deserialize(d)?;
        if s.chars().any(char::is_whitespace) {
            return Err(de::Error::custom(format_args!(
                "{s:?} contains a space: a Slurm option is one word (e.g. \"--account=ml\")"
            )));
        }
        Ok(Word(s))
    }
}

/// Local runs at a time: at least 1, at most [`MAX_JOBS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Jobs(pub u64);

/// The most `jobs` a sweep file may ask for: each is a process with its own libtorch threads
/// and memory, and thousands would exhaust the machine's process limits before any result.
pub(crate) const MAX_JOBS: u64 = 256;

impl<'de> Deserialize<'de> for Jobs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v.as_u64() {
            Some(n) if (1..=MAX_JOBS).contains(&n) => Ok(Jobs(n)),
            _ => Err(de::Error::custom(format_args!(
                "expected an integer from 1 to {MAX_JOBS}, found {v}"
            ))),
        }
    }
}

/// Any JSON number, as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => Ok(Number(n.as_f64().unwrap_or(f64::NAN))),
            other => Err(de::Error::custom(format_args!(
                "expected a number, found {}",
                type_name(&other)
            ))),
        }
    }
}

/// `eval.method`: an estimator that gives a test NLL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Method(pub String);

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(m) = Text::deserialize(d)?;
        if m != "is" && m != "ais" {
            return Err(de::Error::custom(format_args!(
                "expected \"is\" or \"ais\" (a test NLL estimate), found {m:?}"
            )));
        }
        Ok(Method(m))
    }
}

/// An entry of `slurm.extra`: an sbatch option.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SbatchOption(pub String);

impl<'de> Deserialize<'de> for SbatchOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Word(e) = Word::deserialize(d)?;
        if !e.starts_with('-') {
            return Err(de::Error::custom(format_args!(
                "expected an sbatch option like \"--account=ml\", found {e:?}"
            )));
        }
        Ok(SbatchOption(e))
    }
}

/// A dotted config path like `train.epochs`.
struct ConfigKey(String);

impl<'de> Deserialize<'de> for ConfigKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let k = String::deserialize(d)?;
        let ok = !k.is_empty()
            && k.split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !ok {
            return Err(de::Error::custom(format_args!(
                "`{k}` is not a config key (expected a dotted path like `train.epochs`)"
            )));
        }
        Ok(ConfigKey(k))
    }
}

/// What a list holds, for its messages, and whether it may be empty.
pub(crate) trait ListKind {
    /// E.g. `a non-empty array of integers`.
    const EXPECTED: &'static str;
    /// Whether `[]` is refused.
    const NON_EMPTY: bool;
}

/// A JSON array of `T`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct List<T, K>(pub Vec<T>, PhantomData<K>);

impl<'de, T: Deserialize<'de>, K: ListKind> Deserialize<'de> for List<T, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData::<(T, K)>))
            .map(|v| List(v, PhantomData))
    }
}

struct ListVisitor<T, K>(PhantomData<(T, K)>);

impl<T, K: ListKind> ListVisitor<T, K> {
    fn expected(&self) -> &'static str {
        K::EXPECTED
    }
}

impl<'de, T: Deserialize<'de>, K: ListKind> Visitor<'de> for ListVisitor<T, K> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(K::EXPECTED)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        if K::NON_EMPTY && out.is_empty() {
            return Err(de::Error::custom(format_args!(
                "expected {}, found an empty array",
                K::EXPECTED
            )));
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Vec<T>, A::Error> {
        Err(de::Error::custom(format_args!(
            "expected {}, found an object",
            K::EXPECTED
        )))
    }

    refuse! {
        visit_bool(bool) => "a boolean",
        visit_i64(i64) => "a number",
        visit_u64(u64) => "a number",
        visit_f64(f64) => "a number",
        visit_str(&str) => "a string",
        visit_unit() => "null",
    }
}

/// An object type of the sweep file, for the messages of [`Obj`].
pub(crate) trait Described {
    /// E.g. `an object like {"method": "is", "k": 1000} or null`.
    const EXPECTED: &'static str;
}

/// A JSON object read into `T` (a struct deriving `Deserialize`); anything else, an array
/// included, is refused with [`Described::EXPECTED`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de> + Described> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(PhantomData::<T>)).map(Obj)
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<T: Described> ObjVisitor<T> {
    fn expected(&self) -> &'static str {
        T::EXPECTED
    }
}

impl<'de, T: Deserialize<'de> + Described> Visitor<'de> for ObjVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(de::Error::custom(format_args!(
            "expected {}, found an array",
            T::EXPECTED
        )))
    }

    refuse! {
        visit_bool(bool) => "a boolean",
        visit_i64(i64) => "a number",
        visit_u64(u64) => "a number",
        visit_f64(f64) => "a number",
        visit_str(&str) => "a string",
        visit_unit() => "null",
    }
}

/// What a config-key map holds: `set` maps keys to values, `grid` to non-empty arrays of values.
trait KeyMap: Sized {
    const EXPECTED: &'static str;
    type Item;
    fn value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Self::Item, A::Error>;
}

/// Reads an object of config keys, in alphabetical order (JSON objects have none), refusing a
/// key given twice.
fn key_map<'de, D: Deserializer<'de>, M: KeyMap>(
    d: D,
) -> Result<BTreeMap<String, M::Item>, D::Error> {
    struct V<M>(PhantomData<M>);
    impl<M: KeyMap> V<M> {
        fn expected(&self) -> &'static str {
            M::EXPECTED
        }
    }
    impl<'de, M: KeyMap> Visitor<'de> for V<M> {
        type Value = BTreeMap<String, M::Item>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(M::EXPECTED)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(ConfigKey(k)) = map.next_key()? {
                if out.contains_key(&k) {
                    return Err(de::Error::custom(format_args!(
                        "the key `{k}` is given twice"
                    )));
                }
                let v = M::value(&mut map)?;
                out.insert(k, v);
            }
            Ok(out)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(de::Error::custom(format_args!(
                "expected {}, found an array",
                M::EXPECTED
            )))
        }

        refuse! {
            visit_bool(bool) => "a boolean",
            visit_i64(i64) => "a number",
            visit_u64(u64) => "a number",
            visit_f64(f64) => "a number",
            visit_str(&str) => "a string",
            visit_unit() => "null",
        }
    }
    d.deserialize_any(V::<M>(PhantomData))
}

/// A `set` object: config keys and their values.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Overrides(pub BTreeMap<String, Value>);

impl KeyMap for Overrides {
    const EXPECTED: &'static str =
        "an object of config keys and values, e.g. {\"train.epochs\": 10}";
    type Item = Value;
    fn value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Value, A::Error> {
        map.next_value()
    }
}

impl<'de> Deserialize<'de> for Overrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        key_map::<D, Overrides>(d).map(Overrides)
    }
}

/// The values of one grid key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GridValues;

impl ListKind for GridValues {
    const EXPECTED: &'static str = "a non-empty array of values";
    const NON_EMPTY: bool = true;
}

/// `grid`: config keys and the values each takes.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Grid(pub BTreeMap<String, Vec<Value>>);

impl KeyMap for Grid {
    const EXPECTED: &'static str = "an object mapping config keys to arrays of values";
    type Item = Vec<Value>;
    fn value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Vec<Value>, A::Error> {
        struct Seed;
        impl<'de> DeserializeSeed<'de> for Seed {
            type Value = Vec<Value>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
                List::<Value, GridValues>::deserialize(d).map(|l| l.0)
            }
        }
        map.next_value_seed(Seed)
    }
}

impl<'de> Deserialize<'de> for Grid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        key_map::<D, Grid>(d).map(Grid)
    }
}

/// `variants`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VariantList;

impl ListKind for VariantList {
    const EXPECTED: &'static str = "a non-empty array of {\"label\", \"x\", \"set\"} objects";
    const NON_EMPTY: bool = true;
}

/// `seeds`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeedList;

impl ListKind for SeedList {
    const EXPECTED: &'static str = "a non-empty array of integers";
    const NON_EMPTY: bool = true;
}

/// `eval.args`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArgList;

impl ListKind for ArgList {
    const EXPECTED: &'static str = "an array of strings";
    const NON_EMPTY: bool = false;
}

/// `slurm.extra`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OptionList;

impl ListKind for OptionList {
    const EXPECTED: &'static str = "an array of sbatch options";
    const NON_EMPTY: bool = false;
}

/// The sweep file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSweep {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub base: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub set: Option<Overrides>,
    #[serde(default, deserialize_with = "present")]
    pub variants: Option<List<Obj<RawVariant>, VariantList>>,
    #[serde(default, deserialize_with = "present")]
    pub grid: Option<Grid>,
    #[serde(default, deserialize_with = "present")]
    pub seeds: Option<List<UInt<0>, SeedList>>,
    /// `null` means no evaluation, as an absent key does.
    #[serde(default)]
    pub eval: Option<Obj<RawEval>>,
    #[serde(default, deserialize_with = "present")]
    pub device: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub jobs: Option<Jobs>,
    #[serde(default, deserialize_with = "present")]
    pub x_key: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub x_label: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub slurm: Option<Obj<RawSlurm>>,
}

impl Described for RawSweep {
    const EXPECTED: &'static str = "a JSON object at the top level";
}

/// One entry of `variants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariant {
    #[serde(default, deserialize_with = "present")]
    pub label: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub x: Option<Number>,
    #[serde(default, deserialize_with = "present")]
    pub set: Option<Overrides>,
}

impl Described for RawVariant {
    const EXPECTED: &'static str =
        "an object like {\"label\": \"iaf2\", \"x\": 2, \"set\": {\"model.flow.layers\": 2}}";
}

/// `eval`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEval {
    #[serde(default, deserialize_with = "present")]
    pub method: Option<Method>,
    #[serde(default, deserialize_with = "present")]
    pub k: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub n: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub args: Option<List<Text, ArgList>>,
    #[serde(default, deserialize_with = "present")]
    pub shards: Option<crate::eval::ShardCount>,
}

impl Described for RawEval {
    const EXPECTED: &'static str = "an object like {\"method\": \"is\", \"k\": 1000} or null";
}

/// `slurm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlurm {
    #[serde(default, deserialize_with = "present")]
    pub partition: Option<Word>,
    #[serde(default, deserialize_with = "present")]
    pub cpus_per_task: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub mem: Option<Word>,
    #[serde(default, deserialize_with = "present")]
    pub time: Option<Word>,
    #[serde(default, deserialize_with = "present")]
    pub gpus: Option<UInt<0>>,
    #[serde(default, deserialize_with = "present")]
    pub extra: Option<List<SbatchOption, OptionList>>,
}

impl Described for RawSlurm {
    const EXPECTED: &'static str = "an object";
}
