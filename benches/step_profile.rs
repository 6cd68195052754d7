//! Training-step profile of the nanoGPT character-level CPU configuration (4 layers, 4 heads,
//! width 128, context 64, batch 12, no biases, AdamW): forward + loss, backward and the optimizer
//! timed separately, median over the measured steps.
//!
//! `cargo bench --bench step_profile -- [--steps N] [--warmup N] [--stock] [--gemm] [--attention]`
//! `--stock` runs candle's plain ops (the unfused reference path) for comparison; `--gemm` and
//! `--attention` time the step's matmul shapes and one layer's attention alone.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use glassbox::model::config::{Architecture, FamilyConfig, GptConfig, ModelConfig};
use glassbox::model::{Model, ModelInput, Prefix};
use glassbox::train::optim::{AdamW, AdamWSettings, Param, clip_grads, global_grad_norm};
use rand::{Rng, SeedableRng};

const BATCH: usize = 12;
const CONTEXT: usize = 64;
const VOCAB: usize = 65;

struct Args {
    steps: usize,
    warmup: usize,
    stock: bool,
    gemm: bool,
    attention: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        steps: 30,
        warmup: 5,
        stock: false,
        gemm: false,
        attention: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => args.steps = it.next().unwrap_or_default().parse()?,
            "--warmup" => args.warmup = it.next().unwrap_or_default().parse()?,
            "--stock" => args.stock = true,
            "--gemm" => args.gemm = true,
            "--attention" => args.attention = true,
            // `cargo bench` passes `--bench`; ignore anything else.
            _ => {}
        }
    }
    args.steps = args.steps.max(1);
    Ok(args)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// GFLOP/s of the step's matmul shapes through the fused linear (forward and backward).
fn gemm_profile() -> anyhow::Result<()> {
    let device = Device::Cpu;
    let rows = BATCH * CONTEXT;
    for (inp, out) in [(128, 384), (128, 128), (128, 512), (512, 128)] {
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, inp), &device)?)?;
        let w = candle_core::Var::from_tensor(&Tensor::randn(0f32, 0.02, (inp, out), &device)?)?;
        let dy = Tensor::randn(0f32, 1.0, (rows, out), &device)?;
        let reps = 50;
        let mut fwd = Vec::new();
        let mut bwd = Vec::new();
        for _ in 0..reps {
            let t0 = Instant::now();
            let y = glassbox::model::fused::linear(x.as_tensor(), w.as_tensor(), None, true)?;
            let t1 = Instant::now();
            let _g = (y * &dy)?.sum_all()?.backward()?;
            let t2 = Instant::now();
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
        }
        let flops = 2.0 * (rows * inp * out) as f64;
        let f = median(&mut fwd);
        let b = median(&mut bwd);
        println!(
            "  [{rows}x{inp}]·[{inp}x{out}]: forward {:.3} ms ({:.0} GFLOP/s), backward {:.3} ms ({:.0} GFLOP/s incl. mul/sum)",
            f * 1e3,
            flops / f / 1e9,
            b * 1e3,
            2.0 * flops / b / 1e9
        );
    }
    Ok(())
}

/// Time of the step's causal attention (one layer: 4 heads of 32 over `[12, 64, 128]`) through
/// the fused kernel, forward and backward.
fn attention_profile() -> anyhow::Result<()> {
    // As the first fused op of a training step would (keeps the buffers off fresh mmaps).
    glassbox::model::fused::tune_allocator();
    let device = Device::Cpu;
    let (heads, width) = (4, 128);
    let shape = (BATCH, CONTEXT, width);
    let var = || -> anyhow::Result<candle_core::Var> {
        Ok(candle_core::Var::from_tensor(&Tensor::randn(
            0f32, 1.0, shape, &device,
        )?)?)
    };
    let (q, k, v) = (var()?, var()?, var()?);
    let mask: Vec<f32> = (0..CONTEXT * CONTEXT)
        .map(|n| {
            if n % CONTEXT > n / CONTEXT {
                f32::MIN
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (1, 1, CONTEXT, CONTEXT), &device)?;
    let dy = Tensor::randn(0f32, 1.0, shape, &device)?;
    let mut fwd = Vec::new();
    let mut bwd = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        let y = glassbox::model::fused::attention(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            heads,
            Some(&mask),
        )?;
        let t1 = Instant::now();
        let _g = (y * &dy)?.sum_all()?.backward()?;
        let t2 = Instant::now();
        fwd.push((t1 - t0).as_secs_f64() * 1e3);
        bwd.push((t2 - t1).as_secs_f64() * 1e3);
    }
    println!(
        "  attention [{BATCH}x{CONTEXT}x{width}], {heads} heads, causal: forward {:.3} ms, backward {:.3} ms (incl. mul/sum; median)",
        median(&mut fwd),
        median(&mut bwd)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.gemm {
        return gemm_profile();
    }
    if args.attention {
        return attention_profile();
    }
    glassbox::model::fused::set_enabled(!args.stock);
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let config = ModelConfig {
        family: FamilyConfig::Gpt2(GptConfig {
            vocab_size: VOCAB,
            n_positions: CONTEXT,
            n_embd: 128,
            n_layer: 4,
            n_head: 4,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            activation_function: "gelu_new".into(),
            bias: false,
        }),
        architecture: Architecture::Gpt2LmHead,
    };
    let model = Model::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
        &config,
        Prefix::Standard,
    )?;
    let mut named: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let params: Vec<Param> = named.into_iter().map(|(n, v)| Param::new(n, v)).collect();
    let vars: Vec<candle_core::Var> = params.iter().map(|p| p.var.clone()).collect();
    let settings = AdamWSettings {
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut optimizer = AdamW::new(params.clone(), settings)?;
    let mut fused_adamw = glassbox::model::fused::AdamW::new(
        vars.clone(),
        glassbox::model::fused::AdamWConfig {
            beta1: settings.beta1,
            beta2: settings.beta2,
            eps: settings.eps,
            weight_decay: settings.weight_decay,
        },
    )?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(1337);
    let mut fwd = Vec::new();
    let mut bwd = Vec::new();
    let mut opt = Vec::new();
    let mut total = Vec::new();
    let mut last_loss = 0f32;
    for step in 0..args.warmup + args.steps {
        let ids: Vec<u32> = (0..BATCH * (CONTEXT + 1))
            .map(|_| rng.random_range(0..VOCAB as u32))
            .collect();
        let data = Tensor::from_vec(ids, (BATCH, CONTEXT + 1), &device)?;
        let input_ids = data.narrow(1, 0, CONTEXT)?.contiguous()?;
        let targets = data.narrow(1, 1, CONTEXT)?.flatten_all()?.contiguous()?;

        let t0 = Instant::now();
        let output = model.forward(ModelInput::new(&input_ids), None)?;
        let logits = output
            .logits
            .ok_or_else(|| anyhow::anyhow!("no logits"))?
            .reshape((BATCH * CONTEXT, VOCAB))?;
        let loss = if args.stock {
            candle_nn::loss::cross_entropy(&logits, &targets)?
        } else {
            glassbox::model::fused::cross_entropy(&logits, &targets)?
        };
        last_loss = loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let mut store = loss.backward()?;
        let mut grads: Vec<Option<Tensor>> = params
            .iter()
            .map(|p| store.remove(p.var.as_tensor()))
            .collect();
        let t2 = Instant::now();
        if args.stock {
            let norm = global_grad_norm(&grads)?;
            clip_grads(&mut grads, norm, 1.0)?;
            optimizer.step(&grads, 1e-3)?;
        } else {
            fused_adamw.step(&grads, 1e-3, Some(1.0))?;
        }
        let t3 = Instant::now();
        if step >= args.warmup {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            fwd.push(ms(t0, t1));
            bwd.push(ms(t1, t2));
            opt.push(ms(t2, t3));
            total.push(ms(t0, t3));
        }
    }
    println!(
        "step_profile ({}) threads={} steps={} loss={last_loss:.4}",
        if args.stock { "stock" } else { "fused" },
        candle_core::utils::get_num_threads(),
        args.steps
    );
    println!(
        "  forward+loss {:7.2} ms\n  backward     {:7.2} ms\n  optimizer    {:7.2} ms\n  total        {:7.2} ms/step (median; min {:.2})",
        median(&mut fwd),
        median(&mut bwd),
        median(&mut opt),
        median(&mut total.clone()),
        total.iter().copied().fold(f64::INFINITY, f64::min),
    );
    Ok(())
}
