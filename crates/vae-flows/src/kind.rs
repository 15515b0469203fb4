//! Which flow each layer is: [`FlowKind`], its config names and its serde form (FLOWS §1).
//!
//! In a config, `kind` is either one name, for `layers` layers of that kind, or a list of names,
//! one per layer (FLOWS §1.2): `"kind": "planar"` or `"kind": ["naf", "householder", "naf"]`.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::config::FlowConfig;
use crate::error::Error;

/// The largest value of a kind's count setting (`householder_reflections`, `sylvester_vectors`,
/// `sylvester_reflections`, `orthogonal_iterations`, `naf_units`) that
/// [`FlowConfig::validate`] accepts (FLOWS §1.4).
pub const MAX_KIND_SETTING: usize = 4096;

/// Which flow refines the posterior (the original's `flow_type`, ORIGINAL §3.4; the kinds after
/// [`Identity`](Self::Identity) are flowvae's, FLOWS §2–§6).
///
/// "No flow" (`flow_params = None`) is not a kind: callers hold an `Option<FlowConfig>`.
///
/// Every single kind is written in configs by its snake_case name ([`name`](Self::name)).
/// [`PerLayer`](Self::PerLayer) is written as a list of names and gives each layer its own kind;
/// its length must equal [`FlowConfig::layers`](crate::FlowConfig::layers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FlowKind {
    /// The gated IAF (`"IAF"`), or its shift-only variant when
    /// [`FlowConfig::shift_only`](crate::FlowConfig::shift_only) is set (ORIGINAL §3.4.3).
    Iaf,
    /// `layers` identity layers (`"IDENTITY_FLOW"`): output = input, log-det = 0. A debugging
    /// aid with no parameters; it consumes no context (fixes D21).
    Identity,
    /// Planar flow `z' = z + û tanh(wᵀz + b)` with `wᵀû > −1` (FLOWS §2).
    Planar,
    /// Radial flow `z' = z + β (z − z0) / (α + ‖z − z0‖)` with `β > −α` (FLOWS §3).
    Radial,
    /// Volume-preserving Householder flow `z' = H_K ⋯ H_1 z` (FLOWS §4).
    Householder,
    /// Sylvester flow with `Q` made orthonormal by iteration (FLOWS §5, §5.1).
    SylvesterOrthogonal,
    /// Sylvester flow with `Q` a product of Householder reflections (FLOWS §5, §5.2).
    SylvesterHouseholder,
    /// Sylvester flow with `Q` the identity or the reversal permutation, alternating between
    /// layers (FLOWS §5, §5.3).
    SylvesterTriangular,
    /// Neural autoregressive flow with the deep sigmoidal transformer (FLOWS §6).
    Naf,
    /// One kind per layer, in forward order; the entries are single kinds (lists do not nest).
    PerLayer(Vec<FlowKind>),
}

impl FlowKind {
    /// Every single kind, in the order error messages list them.
    pub const SINGLE: [FlowKind; 9] = [
        FlowKind::Iaf,
        FlowKind::Identity,
        FlowKind::Planar,
        FlowKind::Radial,
        FlowKind::Householder,
        FlowKind::SylvesterOrthogonal,
        FlowKind::SylvesterHouseholder,
        FlowKind::SylvesterTriangular,
        FlowKind::Naf,
    ];

    /// The valid names, as a config writes them.
    pub const NAMES: &'static str = "iaf, identity, planar, radial, householder, \
         sylvester_orthogonal, sylvester_householder, sylvester_triangular, naf";

    /// The config name of a single kind (`"sylvester_orthogonal"`); `"per_layer"` for a list.
    pub fn name(&self) -> &'static str {
        match self {
            FlowKind::Iaf => "iaf",
            FlowKind::Identity => "identity",
            FlowKind::Planar => "planar",
            FlowKind::Radial => "radial",
            FlowKind::Householder => "householder",
            FlowKind::SylvesterOrthogonal => "sylvester_orthogonal",
            FlowKind::SylvesterHouseholder => "sylvester_householder",
            FlowKind::SylvesterTriangular => "sylvester_triangular",
            FlowKind::Naf => "naf",
            FlowKind::PerLayer(_) => "per_layer",
        }
    }

    /// The single kind called `name` (exact, snake_case), `None` for anything else.
    pub fn from_name(name: &str) -> Option<FlowKind> {
        FlowKind::SINGLE.into_iter().find(|k| k.name() == name)
    }

    /// Whether this is one kind rather than a [`PerLayer`](Self::PerLayer) list.
    pub fn is_single(&self) -> bool {
        !matches!(self, FlowKind::PerLayer(_))
    }

    /// Whether the kind is one of the three Sylvester flows.
    pub fn is_sylvester(&self) -> bool {
        matches!(
            self,
            FlowKind::SylvesterOrthogonal
                | FlowKind::SylvesterHouseholder
                | FlowKind::SylvesterTriangular
        )
    }

    /// Whether the kind's layers have a MADE conditioner and thus use `hidden` and `context`
    /// (IAF and NAF).
    pub fn uses_made(&self) -> bool {
        matches!(self, FlowKind::Iaf | FlowKind::Naf)
    }

    /// Whether [`crate::Flow::inverse`] can undo a layer of this single kind: every kind except
    /// the Sylvester flows (FLOWS §5.5).
    pub fn has_inverse(&self) -> bool {
        !self.is_sylvester()
    }
}

impl fmt::Display for FlowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowKind::PerLayer(kinds) => {
                f.write_str("[")?;
                for (i, k) in kinds.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}")?;
                }
                f.write_str("]")
            }
            k => f.write_str(k.name()),
        }
    }
}

impl Serialize for FlowKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FlowKind::PerLayer(kinds) => {
                let mut seq = s.serialize_seq(Some(kinds.len()))?;
                for k in kinds {
                    seq.serialize_element(k)?;
                }
                seq.end()
            }
            k => s.serialize_str(k.name()),
        }
    }
}

impl<'de> Deserialize<'de> for FlowKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor { in_list: false })
    }
}

/// Reads a kind name, or (at the top level only) a list of names.
struct KindVisitor {
    in_list: bool,
}

fn unknown<E: de::Error>(name: &str) -> E {
    E::custom(format!(
        "unknown flow kind `{name}` in `kind`: expected one of {} (or a list of them, one per \
         layer)",
        FlowKind::NAMES
    ))
}

impl<'de> Visitor<'de> for KindVisitor {
    type Value = FlowKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_list {
            write!(
                f,
                "a flow kind name in the `kind` list ({})",
                FlowKind::NAMES
            )
        } else {
            write!(
                f,
                "a flow kind name ({}) or a list of them, one per layer",
                FlowKind::NAMES
            )
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FlowKind, E> {
        FlowKind::from_name(v).ok_or_else(|| unknown(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FlowKind, A::Error> {
        if self.in_list {
            return Err(de::Error::custom(
                "a `kind` list holds kind names, not lists (lists do not nest)",
            ));
        }
        let mut kinds = Vec::new();
        while let Some(k) = seq.next_element::<ListEntry>()? {
            kinds.push(k.0);
        }
        Ok(FlowKind::PerLayer(kinds))
    }
}

/// One entry of a `kind` list: a name only.
struct ListEntry(FlowKind);

impl<'de> Deserialize<'de> for ListEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor { in_list: true })
            .map(ListEntry)
    }
}

impl FlowConfig {
    /// The kind of every layer in forward order: `layers` copies of a single `kind`, or the
    /// `kind` list as given (which [`validate`](Self::validate) checks has `layers` entries).
    /// Allocates one entry per layer; the config's own checks and counts use
    /// [`kind_runs`](Self::kind_runs) and never do.
    pub fn layer_kinds(&self) -> Vec<FlowKind> {
        self.kind_runs()
            .into_iter()
            .flat_map(|(k, n)| std::iter::repeat_n(k.clone(), n))
            .collect()
    }

    /// The layers as runs `(kind, number of layers)` in forward order: one run of `layers` for
    /// a single kind, one run of 1 per entry of a list. Its size does not grow with `layers`.
    pub(crate) fn kind_runs(&self) -> Vec<(&FlowKind, usize)> {
        match &self.kind {
            FlowKind::PerLayer(kinds) => kinds.iter().map(|k| (k, 1)).collect(),
            k => vec![(k, self.layers)],
        }
    }

    /// Checks a `kind` list: not empty, not nested, `layers` entries.
    pub(crate) fn check_kind_list(&self) -> crate::Result<()> {
        if let FlowKind::PerLayer(kinds) = &self.kind {
            if kinds.is_empty() {
                return Err(Error::InvalidConfig {
                    field: "kind",
                    value: "[]".into(),
                    expected: "a kind name, or a list of kind names with one entry per layer",
                });
            }
            if let Some(nested) = kinds.iter().find(|k| !k.is_single()) {
                return Err(Error::InvalidConfig {
                    field: "kind",
                    value: format!("a list holding {nested}"),
                    expected: "a list of kind names (lists do not nest)",
                });
            }
            if kinds.len() != self.layers {
                return Err(Error::LayersMismatch {
                    layers: self.layers,
                    kinds: kinds.len(),
                });
            }
        }
        Ok(())
    }

    /// Checks the kind-specific settings of the kinds some layer has (FLOWS §1.4); settings no
    /// layer uses are not checked. Counts are capped at [`MAX_KIND_SETTING`] so that no size
    /// computed from them overflows.
    pub(crate) fn validate_kind_settings(&self) -> crate::Result<()> {
        let runs = self.kind_runs();
        let uses = |k: FlowKind| runs.iter().any(|(kind, n)| **kind == k && *n > 0);
        let at_least_one = |field: &'static str, value: usize, expected: &'static str| {
            if value == 0 || value > MAX_KIND_SETTING {
                Err(Error::InvalidConfig {
                    field,
                    value: value.to_string(),
                    expected,
                })
            } else {
                Ok(())
            }
        };
        if uses(FlowKind::Householder) {
            at_least_one(
                "householder_reflections",
                self.householder_reflections,
                "1 to 4096 reflections per householder layer",
            )?;
        }
        if uses(FlowKind::SylvesterOrthogonal) || uses(FlowKind::SylvesterHouseholder) {
            if let Some(m) = self.sylvester_vectors {
                at_least_one(
                    "sylvester_vectors",
                    m,
                    "null (M = latent size) or 1 to the latent size (at most 4096 here)",
                )?;
            }
        }
        if uses(FlowKind::SylvesterOrthogonal) {
            at_least_one(
                "orthogonal_iterations",
                self.orthogonal_iterations,
                "1 to 4096 orthogonalization updates",
            )?;
        }
        if uses(FlowKind::SylvesterHouseholder) {
            at_least_one(
                "sylvester_reflections",
                self.sylvester_reflections,
                "1 to 4096 reflections to build Q",
            )?;
        }
        if uses(FlowKind::Naf) {
            at_least_one(
                "naf_units",
                self.naf_units,
                "1 to 4096 sigmoid units per latent",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in FlowKind::SINGLE {
            assert_eq!(FlowKind::from_name(k.name()), Some(k.clone()));
            assert!(FlowKind::NAMES.contains(k.name()));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<FlowKind>(&json).unwrap(), k);
        }
        let mixed = FlowKind::PerLayer(vec![FlowKind::Naf, FlowKind::Planar]);
        let json = serde_json::to_string(&mixed).unwrap();
        assert_eq!(json, r#"["naf","planar"]"#);
        assert_eq!(serde_json::from_str::<FlowKind>(&json).unwrap(), mixed);
        assert_eq!(mixed.to_string(), "[naf, planar]");
    }

    #[test]
    fn bad_kinds_name_the_value_and_the_valid_ones() {
        for (json, needle) in [
            (r#""plnar""#, "`plnar`"),
            (r#"["naf", "Planar"]"#, "`Planar`"),
            (r#"[["naf"]]"#, "do not nest"),
            ("3", "a flow kind name"),
        ] {
            let err = serde_json::from_str::<FlowKind>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
            assert!(
                err.contains("sylvester_triangular") || needle == "do not nest",
                "{err}"
            );
        }
    }
}
