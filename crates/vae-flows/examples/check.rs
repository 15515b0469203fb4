//! Builds a flow, prints its parameter count and checks on random inputs that every cMADE is
//! autoregressive (zero Jacobian at and after the diagonal in its order), that the log-det equals
//! `log|det ∂z'/∂z|` from autograd, and that the inverse recovers `z`.
//!
//! ```text
//! cargo run -p vae-flows --example check                 # the original's default flow, D = 64
//! cargo run -p vae-flows --example check -- 8 16,16 2    # D = 8, cMADE [16, 16], 2 layers
//! cargo run -p vae-flows --example check -- 8 16 2 naf   # the same with another kind (FLOWS §1.1)
//! ```

use anyhow::{ensure, Context, Result};
use tch::{nn, Device, Kind, Tensor};
use vae_flows::{BatchNormSettings, Flow, FlowConfig, FlowKind, MaskOrder};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let latent: i64 = match args.first() {
        Some(d) => d.parse().with_context(|| format!("latent size {d}"))?,
        None => 64,
    };
    let mut cfg = FlowConfig::default();
    if let Some(hidden) = args.get(1) {
        cfg.hidden = hidden
            .split(',')
            .map(|h| h.parse().with_context(|| format!("hidden width {h}")))
            .collect::<Result<_>>()?;
        cfg.context_size = cfg.hidden[0];
    }
    if let Some(layers) = args.get(2) {
        cfg.layers = layers.parse().with_context(|| format!("layers {layers}"))?;
    }
    if let Some(kind) = args.get(3) {
        cfg.kind = FlowKind::from_name(kind)
            .with_context(|| format!("kind {kind}: expected one of {}", FlowKind::NAMES))?;
    }

    let start = std::time::Instant::now();
    // Batch 2 is matrix-vector work: extra intra-op threads only spin, badly so on a busy machine.
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(
        &(vs.root() / "flow"),
        latent,
        &cfg,
        BatchNormSettings::default(),
    )?;
    vs.double();
    let params: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    println!(
        "flow: D = {latent}, {} {} layers (MADE {:?}), context {:?} ({:?})",
        cfg.layers,
        cfg.kind,
        cfg.hidden,
        flow.context_size(),
        cfg.context
    );
    println!(
        "trainable parameters: {params} ({} per layer; expected {})",
        cfg.parameters_per_layer(latent),
        cfg.parameter_count(latent)
    );
    ensure!(
        params == cfg.parameter_count(latent),
        "parameter count mismatch"
    );
    println!("built in {:.1?}", start.elapsed());

    let batch = 2;
    let z = Tensor::randn([batch, latent], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let c = flow
        .context_size()
        .map(|c| Tensor::randn([batch, c], (Kind::Double, Device::Cpu)));
    let d = latent as usize;

    // Every step's cMADE: ∂(m, s)_b / ∂z_a must vanish unless a comes before b in its order.
    for (t, step) in flow.steps().iter().enumerate() {
        let (m, s) = step.made().forward_t(&z, c.as_ref(), false);
        let mut outputs = vec![("m", m)];
        outputs.extend(s.map(|s| ("s", s)));
        for (name, y) in outputs {
            let mut worst: f64 = 0.0;
            for b in 0..d {
                let g = Tensor::run_backward(
                    &[y.select(1, b as i64).sum(Kind::Double)],
                    &[&z],
                    true,
                    false,
                )
                .remove(0);
                for a in (0..d).filter(|&a| !step.order().allows(a, b)) {
                    worst = worst.max(g.select(1, a as i64).abs().max().double_value(&[]));
                }
            }
            ensure!(
                worst == 0.0,
                "step {t} {name}: forbidden dependence {worst}"
            );
        }
        println!(
            "step {t} ({}): cMADE Jacobian strictly triangular ({:.1?})",
            match step.order() {
                MaskOrder::Natural => "natural",
                MaskOrder::Reversed => "reversed",
            },
            start.elapsed()
        );
    }

    // The whole stack: log-det against autograd, then the inverse.
    let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), false);
    let rows: Vec<Tensor> = (0..latent)
        .map(|b| {
            Tensor::run_backward(&[z_out.select(1, b).sum(Kind::Double)], &[&z], true, false)
                .remove(0)
        })
        .collect();
    let (_, autograd) = Tensor::linalg_slogdet(&Tensor::stack(&rows, 1));
    let err = (&log_det - &autograd).abs().max().double_value(&[]);
    let values = |t: &Tensor| Vec::<f64>::try_from(t).unwrap_or_default();
    println!(
        "log-det {:.4?} vs autograd {:.4?}: max error {err:.2e}",
        values(&log_det),
        values(&autograd)
    );
    ensure!(err < 1e-4, "log-det mismatch");
    if !flow.has_inverse() {
        println!("inverse: none for {} layers (FLOWS §5.5)", cfg.kind);
        println!("ok");
        return Ok(());
    }
    let back = tch::no_grad(|| flow.inverse(&z_out.detach(), c.as_ref()))?;
    let err = (back - z.detach()).abs().max().double_value(&[]);
    println!("inverse: max error {err:.2e} ({:.1?})", start.elapsed());
    ensure!(err < 1e-5, "inverse mismatch");
    println!("ok");
    Ok(())
}
