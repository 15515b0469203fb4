//! Annealing schedules: the inverse temperatures `0 = β_0 < β_1 < … < β_{N−1} = 1`.

use serde::{Deserialize, Serialize};

use crate::error::{bad, Result};

/// How the `N` inverse temperatures of AIS are spaced. Every variant gives exactly `N` points
/// (except `N = 1`, which gives `[0, 1]` as the original does), non-decreasing, from exactly `0.0`
/// to exactly `1.0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The original's schedule (ORIGINAL §5.2): `t = linspace(−radius, radius, N)`, `s = σ(t)`,
    /// `β = (s − min s) / (max s − min s)`. Dense near both ends; symmetric, so the midpoint of an
    /// odd `N` is exactly 0.5. The original's radius is 4.
    Sigmoid {
        /// Half-width of the `t` grid, `> 0`. Larger values crowd the points near 0 and 1.
        radius: f64,
    },
    /// `β_0 = 0`, then `N − 1` points spaced geometrically from `min_beta` to 1 (Neal 2001; the
    /// usual choice when `log p(x | z)` is large, since early steps then need tiny increments).
    Geometric {
        /// The first non-zero inverse temperature, in `(0, 1)`.
        min_beta: f64,
    },
    /// Evenly spaced, `β_i = i / (N − 1)`.
    Linear,
}

impl Default for Schedule {
    /// The original's sigmoid schedule with radius 4.
    fn default() -> Self {
        Schedule::Sigmoid { radius: 4.0 }
    }
}

impl Schedule {
    /// Checks the variant's parameter.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Sigmoid { radius } if !(radius.is_finite() && radius > 0.0) => Err(bad(
                "schedule.radius",
                radius,
                "a finite number above 0 (the original uses 4)",
            )),
            Schedule::Geometric { min_beta } if !(min_beta > 0.0 && min_beta < 1.0) => Err(bad(
                "schedule.min_beta",
                min_beta,
                "a number in (0, 1), e.g. 1e-4",
            )),
            _ => Ok(()),
        }
    }

    /// The `N` inverse temperatures (`[0, 1]` for `N = 1`). `N = 0` is an error.
    pub fn betas(&self, n: usize) -> Result<Vec<f64>> {
        self.validate()?;
        if n == 0 {
            return Err(bad(
                "anneal_steps",
                n,
                "at least 1 (the number of schedule points)",
            ));
        }
        if n <= 2 {
            return Ok(vec![0.0, 1.0]);
        }
        Ok(match *self {
            Schedule::Sigmoid { radius } => sigmoid_schedule(n, radius),
            Schedule::Geometric { min_beta } => {
                let mut betas = vec![0.0];
                // Exponents run from 1 down to exactly 0, so the last point is exactly 1.
                let last = (n - 2) as f64;
                betas.extend((0..n - 1).map(|i| min_beta.powf((n - 2 - i) as f64 / last)));
                betas
            }
            Schedule::Linear => {
                let last = (n - 1) as f64;
                (0..n).map(|i| i as f64 / last).collect()
            }
        })
    }
}

/// The original's sigmoid schedule (ORIGINAL §5.2) with `n ≥ 2` points, in f64.
///
/// Computed as the formula says for the lower half, `β_i = (σ(t_i) − σ(−r)) / (1 − 2σ(−r))`
/// (which equals `(s − min s) / (max s − min s)` because `σ(r) = 1 − σ(−r)`), and mirrored,
/// `β_{n−1−i} = 1 − β_i`. Mirroring makes the end points exactly 0 and 1 and the midpoint of an
/// odd `n` exactly 0.5, whatever the rounding.
pub fn sigmoid_schedule(n: usize, radius: f64) -> Vec<f64> {
    assert!(
        n >= 2,
        "a sigmoid schedule needs at least 2 points, got {n}"
    );
    let sigmoid = |t: f64| 1.0 / (1.0 + (-t).exp());
    let s0 = sigmoid(-radius);
    let scale = 1.0 - 2.0 * s0;
    let mut betas = vec![0.0; n];
    for i in 0..n / 2 {
        let t = -radius + 2.0 * radius * i as f64 / (n - 1) as f64;
        let beta = (sigmoid(t) - s0) / scale;
        betas[i] = beta;
        betas[n - 1 - i] = 1.0 - beta;
    }
    if n % 2 == 1 {
        betas[n / 2] = 0.5;
    }
    betas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ORIGINAL §10.6: N points, monotone, exactly 0 to 1, midpoint 0.5 for odd N.
    fn check(schedule: &Schedule, n: usize) {
        let betas = schedule.betas(n).unwrap();
        assert_eq!(betas.len(), n.max(2), "{schedule:?} n={n}");
        assert_eq!(betas[0], 0.0);
        assert_eq!(*betas.last().unwrap(), 1.0);
        for w in betas.windows(2) {
            assert!(w[1] > w[0], "{schedule:?} n={n}: not increasing at {w:?}");
        }
    }

    #[test]
    fn schedules_have_n_points_from_exactly_0_to_1() {
        for schedule in [
            Schedule::default(),
            Schedule::Sigmoid { radius: 0.5 },
            Schedule::Sigmoid { radius: 30.0 },
            Schedule::Geometric { min_beta: 1e-4 },
            Schedule::Linear,
        ] {
            for n in [1, 2, 3, 4, 5, 10, 11, 500, 2000, 2001] {
                check(&schedule, n);
            }
        }
    }

    #[test]
    fn sigmoid_midpoint_symmetry_and_formula() {
        for n in [3, 5, 11, 501, 2001] {
            let betas = sigmoid_schedule(n, 4.0);
            assert_eq!(betas[n / 2], 0.5);
            for i in 0..n {
                assert_eq!(betas[i] + betas[n - 1 - i], 1.0);
            }
        }
        // Against the formula written as the original does: (s − min s) / (max s − min s).
        let n = 500;
        let s: Vec<f64> = (0..n)
            .map(|i| -4.0 + 8.0 * i as f64 / (n - 1) as f64)
            .map(|t: f64| 1.0 / (1.0 + (-t).exp()))
            .collect();
        let betas = sigmoid_schedule(n, 4.0);
        for i in 0..n {
            let direct = (s[i] - s[0]) / (s[n - 1] - s[0]);
            assert!((betas[i] - direct).abs() < 1e-14, "i={i}");
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(Schedule::Sigmoid { radius: 0.0 }.betas(10).is_err());
        assert!(Schedule::Sigmoid { radius: f64::NAN }.betas(10).is_err());
        assert!(Schedule::Geometric { min_beta: 1.0 }.betas(10).is_err());
        assert!(Schedule::Linear.betas(0).is_err());
    }

    #[test]
    fn serde_round_trip_and_unknown_fields() {
        let s: Schedule = serde_json::from_str(r#"{"kind":"sigmoid","radius":4.0}"#).unwrap();
        assert_eq!(s, Schedule::default());
        let g = Schedule::Geometric { min_beta: 0.01 };
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), g);
        assert!(
            serde_json::from_str::<Schedule>(r#"{"kind":"sigmoid","radius":4.0,"r":1}"#).is_err()
        );
    }
}
