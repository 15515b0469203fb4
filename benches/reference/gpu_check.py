#!/usr/bin/env python3
"""The GPU half of `cargo xtask bench`, run by scripts/gpu-check.sh on a machine with a GPU and
torch 2.11 but no Rust: the benchmark rows on CUDA for flowvae (the kit's `vae`, built here with
`--features cuda`) and for the PyTorch reference (flowvae_ref.py with the machine's torch), then
one epoch of the original's ResNet config and IS (k = 1000) on 500 test images.

Prints one JSON summary (also written to $OUT/gpu-results.json when OUT is set); its `bench` part
has the layout of BENCHMARKS.json's runs, so `cargo xtask bench` renders it from
benches/gpu-results.json. Steps run in order of importance and stop being started once the time
budget is spent; what did not run is listed under `skipped`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(HERE, "flowvae_ref.py")

# (key, title, config, (warmup, steps), IS images, (AIS images, schedule points), target of IS
# and AIS, target of the training step): the CUDA rows of xtask/src/bench.rs.
ROWS = [
    ("seed-resnet", "original ResNet (IAF 8×[1920, 1920], 36M parameters)",
     "configs/seed-mnist-resnet.json", (5, 30), 100, (50, 51), 1.0, 0.8),
    ("cpu-default", "CPU default (MLP 2×500, IAF 2×[320, 320], D = 32)",
     "configs/mnist-mlp-iaf-cpu.json", (5, 30), 100, (50, 51), 0.85, 0.85),
    ("seed-mlp", "original MLP (3×1000, IAF 8×[1920, 1920], D = 64)",
     "configs/seed-mnist-mlp.json", (5, 30), 100, (50, 51), 1.0, 1.0),
    ("seed-gatedconv", "original gated conv (IAF 8×[1920, 1920])",
     "configs/seed-mnist-gatedconv.json", (5, 30), 100, (50, 51), 1.0, 1.0),
]

FIGURE = {"train": "median_ms", "is": "ms_per_image", "ais": "ms_per_image_per_100_steps"}


class Clock:
    def __init__(self, budget):
        self.start, self.budget = time.time(), budget

    def left(self):
        return self.budget - (time.time() - self.start)


# As `cargo xtask bench`: both implementations with OpenMP's passive wait policy.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def run(cmd, log, out, timeout):
    """Runs cmd; the JSON it wrote to `out`, or {"error": ...}."""
    t = time.time()
    if os.path.exists(out):
        os.remove(out)
    try:
        with open(log, "w") as f:
            p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                               timeout=max(timeout, 5))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    took = time.time() - t
    print(f"gpu-check: {os.path.basename(log)[:-4]} {took:.1f} s", file=sys.stderr)
    if p.returncode != 0:
        with open(log) as f:
            tail = f.read()[-600:]
        return {"error": f"exit {p.returncode}: {tail}"}
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kit", default="target/gpu-kit")
    ap.add_argument("--budget", type=float, default=450.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--alt-rows", default="seed-resnet",
                    help="rows (comma-separated, or 'all') that also run the KIT/alt builds")
    ap.add_argument("--smoke", action="store_true",
                    help="a seconds-long rehearsal on configs/smoke.json (e.g. with --device cpu)")
    args = ap.parse_args()
    rows_plan, train_config, is_images = ROWS, "configs/seed-mnist-resnet.json", "500"
    if args.smoke:
        rows_plan = [("smoke", "smoke", "configs/smoke.json", (1, 2), 2, (1, 4), 1.0, 1.0)] * 2
        train_config, is_images = "configs/smoke.json", "20"
    clock = Clock(args.budget)
    vae = os.path.abspath(os.path.join(args.kit, "vae"))
    work = tempfile.mkdtemp(prefix="flowvae-gpu-")
    dev = args.device
    skipped = []

    def flowvae(phase, config, extra, d):
        out = os.path.join(d, f"flowvae-{phase}.json")
        cmd = [vae, "bench", "--phase", phase, "--config", config, "--device", dev,
               "--out", out] + extra
        return run(cmd, os.path.join(d, f"flowvae-{phase}.log"), out, clock.left())

    def pytorch(phase, extra, d):
        out = os.path.join(d, f"pytorch-{phase}.json")
        cmd = [sys.executable, REF, "bench", "--phase", phase, "--workdir", d, "--device", dev,
               "--out", out] + extra
        return run(cmd, os.path.join(d, f"pytorch-{phase}.log"), out, clock.left())

    alt_dir = os.path.join(args.kit, "alt")
    alternatives = sorted(
        (n, os.path.abspath(os.path.join(alt_dir, n)))
        for n in (os.listdir(alt_dir) if os.path.isdir(alt_dir) else [])
    )
    mm = ["--matmul-size", "8192" if dev.startswith("cuda") else "1024"]
    matmul = {"flowvae": flowvae("matmul", "configs/smoke.json", mm, work),
              "pytorch": pytorch("matmul", mm, work)}
    rows = []
    train_and_eval = None

    def bench_row(key, title, config, train, is_images, ais, target, target_step,
                  alternatives=(), profile=False):
        d = os.path.join(work, key)
        os.makedirs(d, exist_ok=True)
        targs = ["--warmup", str(train[0]), "--steps", str(train[1]), "--batch", "200"]
        exp = flowvae("export", config,
                      targs + ["--images", str(max(is_images, ais[0])), "--export", d], d)
        row = {"key": key, "title": title, "config": config, "target": target,
               "target_step": target_step}
        if "error" in exp:
            row["error"] = exp["error"]
            return row
        ck = os.path.join(d, "model.safetensors")
        for phase, extra in [
            ("train", targs),
            ("is", ["--images", str(is_images), "--k", "1000"]),
            ("ais", ["--images", str(ais[0]), "--anneal-steps", str(ais[1]), "--chains", "8",
                     "--leapfrog", "10"]),
        ]:
            if clock.left() < 20:
                skipped.append(f"{key} {phase}")
                continue
            ours = flowvae(phase, config, extra + ["--checkpoint", ck], d)
            ref_extra = list(extra)
            if phase == "is":
                ref_extra += ["--max-rows", str(ours.get("max_rows", 20000))]
            if phase == "train" and profile:
                ref_extra += ["--profile"]
            theirs = pytorch(phase, ref_extra, d)
            f = FIGURE[phase]
            if f in ours and f in theirs:
                ours["ratio"] = ours[f] / theirs[f]
            row[phase] = {"flowvae": ours, "pytorch": theirs}
            # Other builds of flowvae in the kit (KIT/alt/NAME, e.g. with a proposed change): the
            # same phase, for a before/after on the same card.
            for name, binary in alternatives:
                if clock.left() < 30:
                    skipped.append(f"{key} {phase} alt {name}")
                    continue
                out = os.path.join(d, f"alt-{name}-{phase}.json")
                cmd = [binary, "bench", "--phase", phase, "--config", config, "--device", dev,
                       "--out", out] + extra + ["--checkpoint", ck]
                alt = run(cmd, os.path.join(d, f"alt-{name}-{phase}.log"), out, clock.left())
                if f in alt and f in theirs:
                    alt["ratio"] = alt[f] / theirs[f]
                row[phase][f"alt:{name}"] = alt
        return row

    def train_eval():
        run_dir = os.path.join(work, "resnet-run")
        t = time.time()
        log = os.path.join(work, "train.log")
        with open(log, "w") as f:
            p = subprocess.run([vae, "train", "--config", train_config,
                                "--set", "train.epochs=1", "--out", run_dir, "--device", dev],
                               stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                               timeout=max(clock.left(), 5))
        res = {"train_exit": p.returncode, "train_seconds": time.time() - t}
        try:
            with open(os.path.join(run_dir, "train.log")) as f:
                res["train_log"] = f.read().strip().splitlines()[-3:]
            with open(os.path.join(run_dir, "results.json")) as f:
                res["results"] = json.load(f)
            with open(os.path.join(run_dir, "manifest.json")) as f:
                m = json.load(f)
                res["ms_per_step"] = m.get("ms_per_step")
        except OSError as e:
            res["train_error"] = str(e)
            with open(log) as f:
                res["train_output_tail"] = f.read()[-800:]
            return res
        t = time.time()
        out = os.path.join(work, "eval-is.json")
        with open(os.path.join(work, "eval.log"), "w") as f:
            p = subprocess.run([vae, "eval", "--run", run_dir, "--method", "is", "--k", "1000",
                                "--n", is_images, "--device", dev, "--out", out],
                               stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                               timeout=max(clock.left(), 5))
        res["eval_exit"] = p.returncode
        res["eval_seconds"] = time.time() - t
        if p.returncode == 0:
            with open(out) as f:
                e = json.load(f)
            res["is"] = {k: e.get(k) for k in ["estimate_nll", "stderr", "images",
                                               "wall_seconds", "ms_per_image", "settings"]}
        return res

    # In order of importance: the ResNet row (the CUDA target), training + IS, the others.
    def alts(key):
        return alternatives if args.alt_rows == "all" or key in args.alt_rows.split(",") else ()

    rows.append(bench_row(*rows_plan[0], alternatives=alts(rows_plan[0][0]), profile=True))
    if not args.skip_train:
        if clock.left() > 60:
            try:
                train_and_eval = train_eval()
            except subprocess.TimeoutExpired:
                train_and_eval = {"error": "out of time"}
        else:
            skipped.append("train and eval")
    for r in rows_plan[1:]:
        if clock.left() > 40:
            rows.append(bench_row(*r, alternatives=alts(r[0])))
        else:
            skipped.append(r[0])

    name = matmul["flowvae"].get("device_name") or matmul["pytorch"].get("device_name", "?")
    summary = {
        "bench": {
            "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "scripts/gpu-check.sh",
            "quick": False,
            "device": dev,
            "device_name": name,
            "threads": matmul["flowvae"].get("threads"),
            "matmul": matmul,
            "rows": rows,
        },
        "train_and_eval": train_and_eval,
        "skipped": skipped,
        "wall_seconds": time.time() - clock.start,
    }
    text = json.dumps(summary, indent=1)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu-results.json"), "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
