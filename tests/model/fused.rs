//! Every fused kernel against the plain-op reference path it replaces: forward values and the
//! gradients of every input (through `Var`s and `backward()` on a scalar loss), for several shapes,
//! strided inputs and masks; then whole models (GPT-2, BERT with padding, DistilBERT) fused vs
//! unfused, and the fused AdamW against the textbook update.
//!
//! The fused/unfused switch is process-wide, so the tests here take one lock while they use it.

use std::sync::Mutex;

use crate::common::fixture;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use glassbox::kernels;
use glassbox::model::checkpoint::load_dir;
use glassbox::model::layers::{
    Activation, AttentionMask, LayerNorm, Linear, attention_from_qkv, scaled_dot_product_attention,
    softmax_last_dim,
};
use glassbox::model::trace::{LayerField, Trace};
use glassbox::model::{Model, ModelInput};
use glassbox::train::optim::{AdamW, AdamWSettings, Param};

static SWITCH: Mutex<()> = Mutex::new(());

/// Runs `f` with the fused paths on or off, holding the switch lock.
fn with_fused<R>(on: bool, f: impl FnOnce() -> R) -> R {
    kernels::set_enabled(on);
    let r = f();
    kernels::set_enabled(true);
    r
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SWITCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deterministic pseudo-random values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(values(n, seed, scale), shape, &Device::Cpu).unwrap()
}

fn var(shape: &[usize], seed: u64, scale: f32) -> Var {
    Var::from_tensor(&tensor(shape, seed, scale)).unwrap()
}

/// `max |a - b| <= tol · max(1, max |b|)`.
fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        a.iter().all(|v| v.is_finite()),
        "{what}: non-finite values in the fused result"
    );
    assert!(
        worst <= tol * scale,
        "{what}: max difference {worst} (scale {scale}, tolerance {tol})"
    );
}

/// A scalar loss with a non-trivial upstream gradient: Σ y ⊙ r for a fixed random r.
fn weighted_sum(y: &Tensor, seed: u64) -> Tensor {
    let r = tensor(y.dims(), seed, 1.0);
    (y * r).unwrap().sum_all().unwrap()
}

/// Runs `build` fused and unfused and compares its output and the gradients of `vars`.
fn check(what: &str, vars: &[&Var], tol: f32, build: impl Fn() -> Tensor) {
    let run = |on: bool| {
        with_fused(on, || {
            let y = build();
            let grads = weighted_sum(&y, 99).backward().unwrap();
            let g: Vec<Tensor> = vars
                .iter()
                .map(|v| {
                    grads
                        .get(v.as_tensor())
                        .cloned()
                        .unwrap_or_else(|| panic!("{what}: no gradient"))
                })
                .collect();
            (y, g)
        })
    };
    let (y_fused, g_fused) = run(true);
    let (y_ref, g_ref) = run(false);
    assert_close(&format!("{what} forward"), &y_fused, &y_ref, tol);
    for (i, (a, b)) in g_fused.iter().zip(&g_ref).enumerate() {
        assert_close(&format!("{what} gradient {i}"), a, b, tol);
    }
}

fn linear_layer(in_dim: usize, out_dim: usize, bias: bool, transposed: bool) -> (VarMap, Linear) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let layer = if transposed {
        Linear::conv1d(vb, in_dim, out_dim, bias, 0.3).unwrap()
    } else {
        Linear::with_init(vb, in_dim, out_dim, bias, 0.3).unwrap()
    };
    // Non-zero biases, so their gradient and forward role are tested.
    if let Some(b) = &layer.bias {
        let v = varmap.data().lock().unwrap();
        for var in v.values() {
            if var.as_tensor().id() == b.id() {
                var.set(&tensor(&[out_dim], 5, 0.5)).unwrap();
            }
        }
    }
    (varmap, layer)
}

fn vars_of(varmap: &VarMap) -> Vec<Var> {
    let mut v: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, v)| v).collect()
}

#[test]
fn linear_matches_reference() {
    let _g = lock();
    for &(shape, out_dim) in &[
        (&[7usize, 5][..], 3usize),
        (&[2, 3, 8][..], 6),
        (&[4, 16, 128][..], 384),
        (&[1, 1, 1][..], 1),
    ] {
        let in_dim = *shape.last().unwrap();
        for bias in [false, true] {
            for transposed in [false, true] {
                let (varmap, layer) = linear_layer(in_dim, out_dim, bias, transposed);
                let x = var(shape, 1, 1.0);
                let params = vars_of(&varmap);
                let mut all: Vec<&Var> = vec![&x];
                all.extend(params.iter());
                let what = format!("linear {shape:?}->{out_dim} bias={bias} conv1d={transposed}");
                check(&what, &all, 1e-5, || layer.forward(x.as_tensor()).unwrap());
            }
        }
    }
}

#[test]
fn linear_accepts_strided_input() {
    let _g = lock();
    let (varmap, layer) = linear_layer(6, 4, true, false);
    let x = var(&[6, 5], 2, 1.0);
    let params = vars_of(&varmap);
    let mut all: Vec<&Var> = vec![&x];
    all.extend(params.iter());
    // [6, 5]ᵀ = [5, 6], not contiguous; and a column slice of a wider matrix.
    check("linear on a transpose", &all, 1e-5, || {
        layer.forward(&x.as_tensor().t().unwrap()).unwrap()
    });
    let wide = var(&[3, 10], 3, 1.0);
    let mut all: Vec<&Var> = vec![&wide];
    all.extend(params.iter());
    check("linear on a narrow", &all, 1e-5, || {
        layer
            .forward(&wide.as_tensor().narrow(1, 2, 6).unwrap())
            .unwrap()
    });
}

#[test]
fn layer_norm_matches_reference() {
    let _g = lock();
    for shape in [
        &[4usize, 16][..],
        &[2, 3, 128][..],
        &[12, 64, 128][..],
        &[3, 1][..],
    ] {
        let h = *shape.last().unwrap();
        for bias in [false, true] {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let ln = LayerNorm::new(vb, h, 1e-5, bias).unwrap();
            for v in varmap.all_vars() {
                v.set(&tensor(v.dims(), 7, 1.0)).unwrap();
            }
            let params = vars_of(&varmap);
            let x = var(shape, 4, 3.0);
            let mut all: Vec<&Var> = vec![&x];
            all.extend(params.iter());
            check(
                &format!("layer_norm {shape:?} bias={bias}"),
                &all,
                2e-5,
                || {
                    // Shift so the mean is far from 0, as in a residual stream.
                    ln.forward(&(x.as_tensor() + 2.0).unwrap()).unwrap()
                },
            );
        }
    }
    // Strided input: LayerNorm over the last dim of a transposed tensor.
    let varmap = VarMap::new();
    let ln = LayerNorm::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        8,
        1e-5,
        true,
    )
    .unwrap();
    let params = vars_of(&varmap);
    let x = var(&[8, 5], 8, 1.0);
    let mut all: Vec<&Var> = vec![&x];
    all.extend(params.iter());
    check("layer_norm on a transpose", &all, 2e-5, || {
        ln.forward(&x.as_tensor().t().unwrap()).unwrap()
    });
}

#[test]
fn gelu_matches_reference() {
    let _g = lock();
    for act in [Activation::GeluTanh, Activation::GeluErf] {
        // 40 000 elements run on several threads; 37 leaves a vector tail.
        for shape in [
            &[37usize][..],
            &[3, 5, 7][..],
            &[40_000][..],
            &[768, 512][..],
        ] {
            let x = var(shape, 11, 6.0);
            check(&format!("{act:?} {shape:?}"), &[&x], 2e-5, || {
                act.forward(x.as_tensor()).unwrap()
            });
        }
        let x = var(&[9, 4], 12, 4.0);
        check(&format!("{act:?} on a transpose"), &[&x], 2e-5, || {
            act.forward(&x.as_tensor().t().unwrap()).unwrap()
        });
    }
}

#[test]
fn softmax_matches_reference() {
    let _g = lock();
    for shape in [
        &[3usize, 7][..],
        &[2, 4, 65][..],
        &[12, 4, 64, 64][..],
        &[5, 1][..],
    ] {
        let x = var(shape, 13, 8.0);
        check(&format!("softmax {shape:?}"), &[&x], 2e-5, || {
            softmax_last_dim(x.as_tensor()).unwrap()
        });
    }
    let x = var(&[6, 3, 4], 14, 5.0);
    check("softmax on a transpose", &[&x], 2e-5, || {
        softmax_last_dim(&x.as_tensor().transpose(1, 2).unwrap()).unwrap()
    });
}

/// Attention on Q, K, V sliced from one packed projection (as GPT-2 does), or on three separate
/// tensors (as BERT does).
fn check_attention(
    what: &str,
    b: usize,
    s: usize,
    h: usize,
    heads: usize,
    mask: Option<&AttentionMask>,
) {
    let qkv = var(&[b, s, 3 * h], 21, 1.5);
    check(&format!("{what} packed"), &[&qkv], 3e-5, || {
        let t = qkv.as_tensor();
        let q = t.narrow(2, 0, h).unwrap();
        let k = t.narrow(2, h, h).unwrap();
        let v = t.narrow(2, 2 * h, h).unwrap();
        scaled_dot_product_attention(&q, &k, &v, heads, mask, None).unwrap()
    });
    // The same, through the QKV entry point GPT-2 uses (one gradient for the projection).
    check(&format!("{what} qkv"), &[&qkv], 3e-5, || {
        attention_from_qkv(qkv.as_tensor(), heads, mask, None).unwrap()
    });
    let (q, k, v) = (
        var(&[b, s, h], 22, 1.5),
        var(&[b, s, h], 23, 1.5),
        var(&[b, s, h], 24, 1.5),
    );
    check(&format!("{what} separate"), &[&q, &k, &v], 3e-5, || {
        scaled_dot_product_attention(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            heads,
            mask,
            None,
        )
        .unwrap()
    });
}

#[test]
fn attention_matches_reference() {
    let _g = lock();
    let cpu = Device::Cpu;
    // Causal (GPT), as in the nanoGPT benchmark and smaller.
    for &(b, s, h, heads) in &[
        (12usize, 64usize, 128usize, 4usize),
        (2, 7, 12, 3),
        (1, 1, 4, 1),
    ] {
        let mask = AttentionMask::build(s, true, None, &cpu).unwrap();
        check_attention(
            &format!("causal {b}x{s}x{h}/{heads}"),
            b,
            s,
            h,
            heads,
            Some(&mask),
        );
    }
    // Bidirectional without a mask, and with padding (BERT); the last row is all padding but
    // its first token, the third causal with padding.
    check_attention("unmasked", 3, 9, 16, 2, None);
    let padding = vec![
        vec![1, 1, 1, 1, 1, 0, 0],
        vec![1, 1, 1, 1, 1, 1, 1],
        vec![1, 0, 0, 0, 0, 0, 0],
    ];
    let mask = AttentionMask::build(7, false, Some(&padding), &cpu).unwrap();
    check_attention("padded", 3, 7, 8, 2, Some(&mask));
    let mask = AttentionMask::build(7, true, Some(&padding), &cpu).unwrap();
    check_attention("causal padded", 3, 7, 8, 2, Some(&mask));
    // A sequence that is padding only: every key blocked, the plain softmax averages them all.
    let padding = vec![vec![0u32; 5], vec![1, 1, 0, 0, 0]];
    let mask = AttentionMask::build(5, false, Some(&padding), &cpu).unwrap();
    check_attention("all padding", 2, 5, 8, 2, Some(&mask));
}

#[test]
fn attention_with_trace_records_the_same_context() {
    let _g = lock();
    let cpu = Device::Cpu;
    let mask = AttentionMask::build(6, true, None, &cpu).unwrap();
    let (q, k, v) = (
        tensor(&[2, 6, 8], 31, 1.0),
        tensor(&[2, 6, 8], 32, 1.0),
        tensor(&[2, 6, 8], 33, 1.0),
    );
    let fast = scaled_dot_product_attention(&q, &k, &v, 2, Some(&mask), None).unwrap();
    let mut layer = glassbox::model::trace::LayerTrace::default();
    let traced =
        scaled_dot_product_attention(&q, &k, &v, 2, Some(&mask), Some(&mut layer)).unwrap();
    assert_close("context with and without trace", &fast, &traced, 1e-5);
    for field in LayerField::ALL {
        let recorded = field.of(&layer).unwrap();
        let expected = !matches!(
            field,
            LayerField::Input
                | LayerField::LnAttention
                | LayerField::AttentionOutput
                | LayerField::ResidualAfterAttention
                | LayerField::LnMlp
                | LayerField::MlpHidden
                | LayerField::MlpOutput
                | LayerField::Output
        );
        assert_eq!(recorded.is_some(), expected, "trace and {}", field.name());
    }
}

#[test]
fn cross_entropy_matches_candle_nn() {
    let _g = lock();
    for &(rows, classes) in &[(768usize, 65usize), (5, 3), (1, 1), (300, 1000)] {
        let logits = var(&[rows, classes], 41, 4.0);
        let ids: Vec<u32> = (0..rows).map(|i| ((i * 7 + 3) % classes) as u32).collect();
        let targets = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
        let fused_loss = kernels::cross_entropy(logits.as_tensor(), &targets).unwrap();
        let ref_loss = candle_nn::loss::cross_entropy(logits.as_tensor(), &targets).unwrap();
        assert_close("cross_entropy value", &fused_loss, &ref_loss, 1e-5);
        let g1 = (fused_loss * 3.0).unwrap().backward().unwrap();
        let g2 = (ref_loss * 3.0).unwrap().backward().unwrap();
        assert_close(
            "cross_entropy gradient",
            g1.get(logits.as_tensor()).unwrap(),
            g2.get(logits.as_tensor()).unwrap(),
            1e-5,
        );
        // i64 targets give the same.
        let t64 = targets.to_dtype(DType::I64).unwrap();
        let l64 = kernels::cross_entropy(logits.as_tensor(), &t64).unwrap();
        assert_close(
            "cross_entropy i64",
            &l64,
            &ref_loss_of(&logits, &targets),
            1e-5,
        );
    }
    // Out-of-range targets are an error, not a panic.
    let logits = tensor(&[2, 3], 1, 1.0);
    let bad = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    assert!(kernels::cross_entropy(&logits, &bad).is_err());
}

fn ref_loss_of(logits: &Var, targets: &Tensor) -> Tensor {
    candle_nn::loss::cross_entropy(logits.as_tensor(), targets).unwrap()
}

/// The textbook AdamW (torch.optim.AdamW) with plain tensor ops.
#[allow(clippy::too_many_arguments)]
fn reference_adamw(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    lr: f64,
    wd: f64,
    t: i32,
    scale: f64,
) -> (Tensor, Tensor, Tensor) {
    let (b1, b2, eps) = (0.9, 0.99, 1e-8);
    let g = (g * scale).unwrap();
    let m = ((m * b1).unwrap() + (&g * (1.0 - b1)).unwrap()).unwrap();
    let v = ((v * b2).unwrap() + (g.sqr().unwrap() * (1.0 - b2)).unwrap()).unwrap();
    let decayed = (p * (1.0 - lr * wd)).unwrap();
    let denom = ((v.sqrt().unwrap() / (1.0 - b2.powi(t)).sqrt()).unwrap() + eps).unwrap();
    let update = ((&m / denom).unwrap() * (lr / (1.0 - b1.powi(t)))).unwrap();
    ((decayed - update).unwrap(), m, v)
}

#[test]
fn adamw_matches_reference_over_steps() {
    let _g = lock();
    let shapes: [&[usize]; 4] = [&[128, 512], &[128], &[65, 128], &[3]];
    let vars: Vec<Var> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| var(s, 50 + i as u64, 0.5))
        .collect();
    // The trainer's optimizer; fused kernels are on, so it takes the in-place fused update.
    let settings = AdamWSettings {
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let params: Vec<Param> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| Param::new(format!("p{i}"), v.clone()))
        .collect();
    let mut opt = AdamW::new(params, settings).unwrap();
    let moments = |opt: &AdamW, i: usize| {
        let state = opt.state_tensors();
        (
            state[&format!("exp_avg.p{i}")].clone(),
            state[&format!("exp_avg_sq.p{i}")].clone(),
        )
    };
    let mut reference: Vec<(Tensor, Tensor, Tensor)> = vars
        .iter()
        .map(|v| {
            let t = v.as_tensor().copy().unwrap();
            (t.clone(), t.zeros_like().unwrap(), t.zeros_like().unwrap())
        })
        .collect();
    for step in 1..=5 {
        let grads: Vec<Option<Tensor>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Some(tensor(s, 100 * step + i as u64, 2.0)))
            .collect();
        let lr = 1e-3 * step as f64;
        let mut clipped = grads.clone();
        let norm = f64::from(opt.grad_norm(&grads).unwrap());
        opt.clip_and_step(&mut clipped, lr, norm as f32, 1.0)
            .unwrap();
        let sumsq: f64 = grads
            .iter()
            .flatten()
            .map(|g| {
                f64::from(
                    g.sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap(),
                )
            })
            .sum();
        assert!(
            (norm - sumsq.sqrt()).abs() < 1e-3 * sumsq.sqrt(),
            "grad norm"
        );
        let scale = (1.0 / (norm + 1e-6)).min(1.0);
        for (i, r) in reference.iter_mut().enumerate() {
            let Some(g) = &grads[i] else { continue };
            let wd = if shapes[i].len() >= 2 { 0.1 } else { 0.0 };
            *r = reference_adamw(&r.0, g, &r.1, &r.2, lr, wd, step as i32, scale);
        }
        for (i, v) in vars.iter().enumerate() {
            assert_close(
                &format!("adamw param {i} step {step}"),
                v.as_tensor(),
                &reference[i].0,
                1e-6,
            );
            let (m, vv) = moments(&opt, i);
            assert_close(&format!("adamw m {i}"), &m, &reference[i].1, 1e-6);
            assert_close(&format!("adamw v {i}"), &vv, &reference[i].2, 1e-6);
        }
    }
    // A parameter without a gradient is left alone.
    let before = vars[1].as_tensor().copy().unwrap();
    let mut grads: Vec<Option<Tensor>> = shapes.iter().map(|s| Some(tensor(s, 7, 1.0))).collect();
    grads[1] = None;
    let norm = opt.grad_norm(&grads).unwrap();
    // max_norm 0: no clipping.
    opt.clip_and_step(&mut grads, 1e-3, norm, 0.0).unwrap();
    assert_close("untouched", vars[1].as_tensor(), &before, 0.0);
}

/// A model fused vs unfused: logits and the gradient of every parameter.
fn check_model(name: &str, padding: Option<Vec<Vec<u32>>>, tol: f32) {
    let loaded = load_dir(&fixture(name), &Device::Cpu).unwrap();
    let ids = Tensor::new(
        &[[2u32, 17, 202, 4, 80, 3], [5, 6, 7, 8, 9, 10]],
        &Device::Cpu,
    )
    .unwrap();
    // Trainable copies of the checkpoint's weights, so gradients can be taken.
    let tensors =
        candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let standard = tensors.keys().any(|k| {
        k.starts_with("transformer.") || k.starts_with("bert.") || k.starts_with("distilbert.")
    });
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (k, t) in tensors {
            let t = t.to_dtype(DType::F32).unwrap();
            data.insert(k, Var::from_tensor(&t).unwrap());
        }
    }
    let prefix = if standard {
        glassbox::model::Prefix::Standard
    } else {
        glassbox::model::Prefix::None
    };
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(vb, &loaded.config, prefix).unwrap();
    let vars = vars_of(&varmap);
    let run = |on: bool| {
        with_fused(on, || {
            let input = ModelInput {
                input_ids: &ids,
                token_type_ids: None,
                padding: padding.as_deref(),
                decoder_input_ids: None,
            };
            let out = model.forward(input, None).unwrap();
            let y = out.logits.clone().unwrap_or(out.last_hidden_state.clone());
            let loss = weighted_sum(&y, 5);
            let grads = loss.backward().unwrap();
            let g: Vec<Option<Tensor>> = vars
                .iter()
                .map(|v| grads.get(v.as_tensor()).cloned())
                .collect();
            (y, g)
        })
    };
    let (y_fused, g_fused) = run(true);
    let (y_ref, g_ref) = run(false);
    assert_close(&format!("{name} output"), &y_fused, &y_ref, tol);
    for (i, (a, b)) in g_fused.iter().zip(&g_ref).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => assert_close(&format!("{name} gradient {i}"), a, b, tol),
            (None, None) => {}
            _ => panic!("{name}: gradient {i} present on one path only"),
        }
    }
    // And the trace (which takes the plain attention path) sees the same logits.
    let mut trace = Trace::default();
    let input = ModelInput {
        input_ids: &ids,
        token_type_ids: None,
        padding: padding.as_deref(),
        decoder_input_ids: None,
    };
    let out = model.forward(input, Some(&mut trace)).unwrap();
    let y = out.logits.unwrap_or(out.last_hidden_state);
    assert_close(&format!("{name} traced output"), &y, &y_ref, tol);
    assert!(!trace.attentions().is_empty());
}

#[test]
fn whole_models_match_reference() {
    let _g = lock();
    check_model("gpt2", None, 1e-4);
    check_model("gpt2", Some(vec![vec![1, 1, 1, 1, 0, 0], vec![1; 6]]), 1e-4);
    check_model("bert", Some(vec![vec![1, 1, 1, 1, 1, 0], vec![1; 6]]), 1e-4);
    check_model(
        "distilbert",
        Some(vec![vec![1, 1, 1, 0, 0, 0], vec![1; 6]]),
        1e-4,
    );
}

#[test]
fn fused_grad_norm_matches_plain_sum() {
    let _g = lock();
    let grads = vec![
        Some(tensor(&[300, 200], 61, 1.0)),
        None,
        Some(tensor(&[17], 62, 3.0)),
    ];
    let expected: f64 = grads
        .iter()
        .flatten()
        .map(|g| {
            f64::from(
                g.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
            )
        })
        .sum::<f64>()
        .sqrt();
    let norm = kernels::grad_norm(&grads).unwrap();
    assert!((norm - expected).abs() < 1e-5 * expected);
}

/// The whole-model GPT training step (`Gpt2::fused_training_step`) against autograd on the
/// plain-op path: the loss and the gradient of every parameter.
fn check_training_step(what: &str, varmap: &VarMap, model: &Model, tol: f32) {
    let Model::Gpt2(gpt) = model else {
        panic!("{what}: not a GPT-2");
    };
    let vocab = gpt.config.vocab_size as u32;
    let (batch, seq) = (3, 7);
    let ids: Vec<u32> = (0..batch * seq)
        .map(|i| (i as u32 * 37 + 11) % vocab)
        .collect();
    let targets: Vec<u32> = (0..batch * seq)
        .map(|i| (i as u32 * 53 + 5) % vocab)
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu).unwrap();
    let targets = Tensor::from_vec(targets, batch * seq, &Device::Cpu).unwrap();
    let vars = vars_of(varmap);

    let step = with_fused(true, || gpt.fused_training_step(&ids, &targets))
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: the fused step does not apply"));
    let (reference_loss, reference_grads) = with_fused(false, || {
        let input = ModelInput {
            input_ids: &ids,
            token_type_ids: None,
            padding: None,
            decoder_input_ids: None,
        };
        let logits = model.forward(input, None).unwrap().logits.unwrap();
        let logits = logits.reshape((batch * seq, vocab as usize)).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
        let grads = loss.backward().unwrap();
        (loss.to_scalar::<f32>().unwrap(), grads)
    });
    assert!(
        (step.loss - reference_loss).abs() <= tol * reference_loss.abs(),
        "{what}: loss {} vs {reference_loss}",
        step.loss
    );
    assert_eq!(
        step.gradients.len(),
        vars.len(),
        "{what}: one gradient per parameter"
    );
    for var in &vars {
        let reference = reference_grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{what}: autograd has no gradient"));
        let (_, grad) = step
            .gradients
            .iter()
            .find(|(p, _)| p.id() == var.as_tensor().id())
            .unwrap_or_else(|| panic!("{what}: the fused step has no gradient for a parameter"));
        assert_close(
            &format!("{what} gradient {:?}", var.dims()),
            grad,
            reference,
            tol,
        );
    }
}

#[test]
fn gpt_training_step_matches_autograd() {
    let _g = lock();
    // GPT-2 with biases and gelu_new, from the transformers fixture.
    let tensors =
        candle_core::safetensors::load(fixture("gpt2").join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let loaded = load_dir(&fixture("gpt2"), &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (k, t) in tensors {
            let t = t.to_dtype(DType::F32).unwrap();
            data.insert(k, Var::from_tensor(&t).unwrap());
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(vb, &loaded.config, glassbox::model::Prefix::Standard).unwrap();
    check_training_step("gpt2 fixture", &varmap, &model, 1e-4);

    // nanoGPT's layout: no biases; exact GELU; a fresh random init.
    use glassbox::model::config::{Architecture, FamilyConfig, GptConfig, ModelConfig};
    let config = ModelConfig {
        family: FamilyConfig::Gpt2(GptConfig {
            vocab_size: 29,
            n_positions: 9,
            n_embd: 24,
            n_layer: 2,
            n_head: 3,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            activation_function: "gelu".into(),
            bias: false,
        }),
        architecture: Architecture::Gpt2LmHead,
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(vb, &config, glassbox::model::Prefix::Standard).unwrap();
    check_training_step("bias-free gpt", &varmap, &model, 1e-4);

    // Ids outside the vocabulary are an error, not a panic.
    let Model::Gpt2(gpt) = &model else {
        unreachable!()
    };
    let bad = Tensor::new(&[[1u32, 99]], &Device::Cpu).unwrap();
    let targets = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
    assert!(gpt.fused_training_step(&bad, &targets).is_err());
}

#[test]
fn one_thread_gives_the_same_outputs_and_small_work_gets_one() {
    let loaded = load_dir(&fixture("gpt2"), &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[1u32, 5, 9, 3, 7, 2]], &Device::Cpu).unwrap();
    let forward = || {
        loaded
            .model
            .forward(ModelInput::new(&ids), None)
            .unwrap()
            .logits
            .unwrap()
    };
    let everywhere = forward();
    let single = kernels::with_threads(1, forward);
    assert_close("logits on one thread", &everywhere, &single, 1e-6);
    // Nested: the inner call keeps the outer choice and still answers.
    let nested = kernels::with_threads(1, || kernels::with_threads(4, forward));
    assert_close("nested", &everywhere, &nested, 1e-6);

    assert_eq!(kernels::threads_for_flops(1e6), 1);
    assert_eq!(
        kernels::threads_for_flops(1e12),
        candle_core::utils::get_num_threads()
    );
    // The tiny GPT's pass is small work; a GPT-2-small-size pass is not.
    let tiny = glassbox::model::params::forward_flops(64, 2, 256, 509, 64);
    let small = glassbox::model::params::forward_flops(768, 12, 3072, 50257, 128);
    assert!(
        tiny < kernels::SINGLE_THREAD_BELOW_FLOPS && small > kernels::SINGLE_THREAD_BELOW_FLOPS
    );
}
