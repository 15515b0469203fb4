//! Mask construction checks of ORIGINAL §3.4.1 and §10.1, kept as the original kept them at build
//! time: for both orders, the products of the masks are strictly triangular, they differ, and
//! their elementwise product is all zeros.

use proptest::prelude::*;
use vae_flows::{connectivity, made_masks, Error, Mask, MaskOrder};

/// The original's build-time checks for one list of widths; returns both products.
fn check(units: &[usize]) -> (Mask, Mask) {
    let even = made_masks(units, MaskOrder::Natural).unwrap();
    let odd = made_masks(units, MaskOrder::Reversed).unwrap();
    assert_eq!(even.len(), units.len() - 1);
    for (l, (e, o)) in even.iter().zip(&odd).enumerate() {
        assert_eq!((e.n_in(), e.n_out()), (units[l], units[l + 1]));
        assert_ne!(e, o, "even and odd mask {l} of {units:?} are equal");
    }
    let pe = connectivity(&even).unwrap();
    let po = connectivity(&odd).unwrap();
    let d = units[0];
    assert_eq!((pe.n_in(), pe.n_out()), (d, d));
    assert!(
        pe.is_strictly_upper(),
        "{units:?}: even product not strictly upper"
    );
    assert!(
        po.is_strictly_lower(),
        "{units:?}: odd product not strictly lower"
    );
    assert_ne!(pe, po);
    assert_eq!(pe.and(&po).unwrap().count_ones(), 0);
    (pe, po)
}

/// For these widths the dependence is exact: every allowed pair is connected (§3.4.1).
fn check_exact(units: &[usize]) {
    let (pe, po) = check(units);
    let d = units[0];
    for a in 0..d {
        for b in 0..d {
            assert_eq!(pe.get(a, b), a < b, "{units:?} even ({a}, {b})");
            assert_eq!(po.get(a, b), a > b, "{units:?} odd ({a}, {b})");
        }
    }
}

#[test]
fn default_widths_are_exactly_triangular() {
    check_exact(&[64, 1920, 1920, 64]);
}

#[test]
fn small_widths_are_exactly_triangular() {
    check_exact(&[64, 128, 64]);
    check_exact(&[64, 64, 64]);
    check_exact(&[8, 16, 8]);
}

#[test]
fn narrow_hidden_layer_stays_strictly_triangular() {
    // §3.4.1: valid but drops some allowed dependencies.
    let (pe, _) = check(&[64, 32, 64]);
    assert!(pe.count_ones() < 64 * 63 / 2);
}

#[test]
fn first_output_sees_no_latent() {
    let (pe, po) = check(&[64, 1920, 1920, 64]);
    assert!((0..64).all(|a| !pe.get(a, 0)));
    assert!((0..64).all(|a| !po.get(a, 63)));
}

#[test]
fn square_hidden_masks_follow_the_index_rule() {
    let even = made_masks(&[4, 4, 4], MaskOrder::Natural).unwrap();
    let odd = made_masks(&[4, 4, 4], MaskOrder::Reversed).unwrap();
    for i in 0..4 {
        for j in 0..4 {
            assert_eq!(even[0].get(i, j), j >= i);
            assert_eq!(odd[0].get(i, j), j <= i);
            // The last mask is strict.
            assert_eq!(even[1].get(i, j), j > i);
            assert_eq!(odd[1].get(i, j), j < i);
        }
    }
}

#[test]
fn indivisible_widths_name_both_numbers() {
    let err = made_masks(&[64, 100, 64], MaskOrder::Natural).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Indivisible {
                layer: 0,
                n_in: 64,
                n_out: 100
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("64") && msg.contains("100"), "{msg}");
    let err = made_masks(&[64, 128, 96, 64], MaskOrder::Reversed).unwrap_err();
    assert!(matches!(
        err,
        Error::Indivisible {
            layer: 1,
            n_in: 128,
            n_out: 96
        }
    ));
}

#[test]
fn bad_width_lists_are_errors() {
    for units in [&[64, 64][..], &[64], &[], &[64, 0, 64], &[64, 128, 32]] {
        let err = made_masks(units, MaskOrder::Natural).unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { field: "units", .. }),
            "{units:?}: {err:?}"
        );
    }
}

#[test]
fn pairwise_divisible_but_non_autoregressive_widths_are_an_error() {
    // The divisibility rule alone does not guarantee triangular masks: a hidden layer narrower
    // than D followed by a wider one lets latent 1 reach output 1 (see the error's doc).
    let err = made_masks(&[64, 32, 64, 64], MaskOrder::Natural).unwrap_err();
    match err {
        Error::NotAutoregressive { input, output, .. } => assert!(input >= output),
        other => panic!("expected NotAutoregressive, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Hidden widths that are multiples of D from a divisibility chain always give valid masks
    /// (D = 1 is excluded: its even and odd masks coincide).
    #[test]
    fn multiples_of_d_give_triangular_masks(
        d in 2usize..=12,
        factors in proptest::collection::vec(prop_oneof![Just(1usize), Just(2), Just(4)], 1..=3),
    ) {
        let units: Vec<usize> = std::iter::once(d)
            .chain(factors.iter().map(|f| f * d))
            .chain(std::iter::once(d))
            .collect();
        check(&units);
    }

    /// Whatever the widths, made_masks never panics and never returns non-triangular masks.
    #[test]
    fn any_widths_give_triangular_masks_or_an_error(
        d in 1usize..=8,
        hidden in proptest::collection::vec(1usize..=24, 1..=3),
    ) {
        let units: Vec<usize> = std::iter::once(d)
            .chain(hidden)
            .chain(std::iter::once(d))
            .collect();
        for order in [MaskOrder::Natural, MaskOrder::Reversed] {
            if let Ok(masks) = made_masks(&units, order) {
                prop_assert!(connectivity(&masks).unwrap().is_strictly_triangular(order));
            }
        }
    }
}
