//! Training-step profile of the nanoGPT character-level CPU configuration (4 layers, 4 heads,
//! width 128, context 64, batch 12, no biases, AdamW): forward + loss, backward and the optimizer
//! timed separately, median over the measured steps.
//!
//! `cargo bench --bench step_profile -- [--steps N] [--warmup N] [--graph | --stock] [--gemm] [--attention]`
//! By default it times the trainer's path, the whole-model step (`Gpt2::fused_training_step`).
//! `--graph` runs the fused ops as nodes of candle's graph with candle's backward, `--stock`
//! candle's plain ops (the unfused reference); `--gemm` and `--attention` time the step's matmul
//! shapes and one layer's attention alone.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use glassbox::kernels::WeightLayout;
use glassbox::model::config::{Architecture, FamilyConfig, GptConfig, ModelConfig};
use glassbox::model::{Model, ModelInput, Prefix};
use glassbox::train::optim::{AdamW, AdamWSettings, Param};
use rand::{Rng, SeedableRng};

const BATCH: usize = 12;
const CONTEXT: usize = 64;
const VOCAB: usize = 65;

/// Which implementation of the step to time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The trainer's: `Gpt2::fused_training_step`, one hand-written forward and backward.
    Whole,
    /// The fused ops as candle graph nodes, with candle's backward.
    Graph,
    /// candle's plain ops: the unfused reference.
    Stock,
}

struct Args {
    steps: usize,
    warmup: usize,
    path: Path,
    gemm: bool,
    attention: bool,
    inference: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        steps: 30,
        warmup: 5,
        path: Path::Whole,
        gemm: false,
        attention: false,
        inference: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => args.steps = it.next().unwrap_or_default().parse()?,
            "--warmup" => args.warmup = it.next().unwrap_or_default().parse()?,
            "--stock" => args.path = Path::Stock,
            "--graph" => args.path = Path::Graph,
            "--gemm" => args.gemm = true,
            "--attention" => args.attention = true,
            "--inference" => args.inference = true,
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
            let y =
                glassbox::kernels::linear(x.as_tensor(), w.as_tensor(), None, WeightLayout::InOut)?;
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
        let y = glassbox::kernels::attention(
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

/// The benchmark's GPT (random init) with plain, untracked weights, as an inference model has.
fn inference_model() -> anyhow::Result<Model> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let config = benchmark_config();
    Model::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
        &config,
        Prefix::Standard,
    )?;
    let tensors: std::collections::HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    Ok(Model::new(
        VarBuilder::from_tensors(tensors, DType::F32, &device),
        &config,
        Prefix::Standard,
    )?)
}

/// Inference (the trace-off forward) at batch 1 and 12, context 64: the fused ops against
/// candle's plain ops.
fn inference_profile() -> anyhow::Result<()> {
    let model = inference_model()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for batch in [1, BATCH] {
        let ids: Vec<u32> = (0..batch * CONTEXT)
            .map(|_| rng.random_range(0..VOCAB as u32))
            .collect();
        let ids = Tensor::from_vec(ids, (batch, CONTEXT), &Device::Cpu)?;
        let time = |fused: bool| -> anyhow::Result<f64> {
            glassbox::kernels::set_enabled(fused);
            let input = ModelInput::new(&ids);
            let mut ms = Vec::new();
            for i in 0..120 {
                let t = Instant::now();
                let logits = model.forward(input, None)?.logits;
                std::hint::black_box(logits);
                if i >= 20 {
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            glassbox::kernels::set_enabled(true);
            Ok(median(&mut ms))
        };
        let fused = time(true)?;
        let stock = time(false)?;
        println!(
            "  inference [{batch}x{CONTEXT}]: fused {fused:.3} ms, stock {stock:.3} ms, {:.2}x faster (median)",
            stock / fused
        );
    }
    Ok(())
}

fn benchmark_config() -> ModelConfig {
    ModelConfig {
        family: FamilyConfig::Gpt2(GptConfig {
            vocab_size: VOCAB,
            n_positions: CONTEXT,
            n_embd: 128,
            n_layer: 4,
            n_head: 4,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            // As the recipe (and nanoGPT): exact GELU.
            activation_function: "gelu".into(),
            bias: false,
        }),
        architecture: Architecture::Gpt2LmHead,
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // As the app and the trainer do: the step's buffers stay in the heap, off fresh mmaps.
    glassbox::kernels::tune_allocator();
    if args.gemm {
        return gemm_profile();
    }
    if args.attention {
        return attention_profile();
    }
    if args.inference {
        return inference_profile();
    }
    glassbox::kernels::set_enabled(args.path != Path::Stock);
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let config = benchmark_config();
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
    let settings = AdamWSettings {
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    // The trainer's optimizer: fused in place, or plain ops when the fused kernels are off.
    let mut optimizer = AdamW::new(params.clone(), settings)?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(1337);
    let mut fwd = Vec::new();
    let mut bwd = Vec::new();
    let mut opt = Vec::new();
    let mut total = Vec::new();
    let mut last_loss = 0f32;
    for step_index in 0..args.warmup + args.steps {
        let ids: Vec<u32> = (0..BATCH * (CONTEXT + 1))
            .map(|_| rng.random_range(0..VOCAB as u32))
            .collect();
        let data = Tensor::from_vec(ids, (BATCH, CONTEXT + 1), &device)?;
        let input_ids = data.narrow(1, 0, CONTEXT)?.contiguous()?;
        let targets = data.narrow(1, 1, CONTEXT)?.flatten_all()?.contiguous()?;

        let fused_step = match &model {
            Model::Gpt2(gpt) if args.path == Path::Whole => {
                gpt.fused_training_step(&input_ids, &targets)?
            }
            _ => None,
        };
        if let Some(mut step) = fused_step {
            // The whole-model step times its own forward and backward.
            let t2 = Instant::now();
            let mut grads = step.gradients_for(params.iter().map(|p| p.var.as_tensor()));
            let norm = optimizer.grad_norm(&grads)?;
            optimizer.clip_and_step(&mut grads, 1e-3, norm, 1.0)?;
            let optimizer_ms = t2.elapsed().as_secs_f64() * 1e3;
            last_loss = step.loss;
            if step_index >= args.warmup {
                fwd.push(step.forward_seconds * 1e3);
                bwd.push(step.backward_seconds * 1e3);
                opt.push(optimizer_ms);
                total.push((step.forward_seconds + step.backward_seconds) * 1e3 + optimizer_ms);
            }
            continue;
        }
        let t0 = Instant::now();
        let output = model.forward(ModelInput::new(&input_ids), None)?;
        let logits = output
            .logits
            .ok_or_else(|| anyhow::anyhow!("no logits"))?
            .reshape((BATCH * CONTEXT, VOCAB))?;
        let loss = if args.path == Path::Stock {
            candle_nn::loss::cross_entropy(&logits, &targets)?
        } else {
            glassbox::kernels::cross_entropy(&logits, &targets)?
        };
        last_loss = loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let mut store = loss.backward()?;
        let mut grads: Vec<Option<Tensor>> = params
            .iter()
            .map(|p| store.remove(p.var.as_tensor()))
            .collect();
        let t2 = Instant::now();
        let norm = optimizer.grad_norm(&grads)?;
        optimizer.clip_and_step(&mut grads, 1e-3, norm, 1.0)?;
        let t3 = Instant::now();
        if step_index >= args.warmup {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            fwd.push(ms(t0, t1));
            bwd.push(ms(t1, t2));
            opt.push(ms(t2, t3));
            total.push(ms(t0, t3));
        }
    }
    println!(
        "step_profile ({}) threads={} steps={} loss={last_loss:.4}",
        match args.path {
            Path::Whole => "whole-model step",
            Path::Graph => "fused ops in candle's graph",
            Path::Stock => "stock candle ops",
        },
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
