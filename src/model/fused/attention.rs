//! Multi-head scaled dot-product attention as one graph node: scores, scaling, the additive mask,
//! softmax and the weighted sum of values for every (batch, head), reading Q, K and V straight
//! from their `[b, s, h]` tensors — also when they are column slices of one fused QKV projection
//! — and writing the context with the heads already merged. No split/merge-heads copies, no
//! `[b, nh, s, s]` intermediates besides the probabilities the backward needs.
//!
//! Keys a query cannot see (a mask entry of `f32::MIN`, or anything at or below −1e30) past the
//! last visible key of a row are skipped: their softmax weight is exactly 0 either way, so the
//! causal mask halves the work without changing a bit of the result.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail};

use super::{f32_data, gather, lock, par, simd, with_f32};

/// Mask entries at or below this count as blocked.
const BLOCKED: f32 = -1e30;

/// `softmax(Q·Kᵀ/√d + mask)·V` per head. `q [b, sq, h]`, `k` and `v` `[b, sk, h]` (any strides
/// with unit stride along `h`, else they are gathered), `mask_bias` an additive mask of
/// `b or 1` × `sq` × `sk` elements (e.g. `[b or 1, 1, sq, sk]`, broadcast over heads).
/// Returns the context `[b, sq, h]` with heads merged. Differentiable in `q`, `k`, `v`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask_bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, sq, h) = q.dims3()?;
    let (kb, sk, kh) = k.dims3()?;
    if (kb, kh) != (b, h) || v.dims() != k.dims() || heads == 0 || h % heads != 0 {
        bail!(
            "attention: q {:?}, k {:?}, v {:?} with {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let (mask, mask_batches) = match mask_bias {
        None => (None, 0),
        Some(m) => {
            let n = m.elem_count();
            let dims = m.dims();
            let tail_ok = dims.len() >= 2 && dims[dims.len() - 2..] == [sq, sk];
            let batches = n / (sq * sk).max(1);
            if !tail_ok || batches * sq * sk != n || (batches != 1 && batches != b) {
                bail!("attention: mask {dims:?} for {b} sequences of {sq}×{sk}");
            }
            (Some(with_f32(m, |d| Ok(d.to_vec()))?), batches)
        }
    };
    let op = AttentionOp {
        heads,
        scale: 1.0 / ((h / heads) as f64).sqrt() as f32,
        mask,
        mask_batches,
        probs: Mutex::new(None),
    };
    q.apply_op3_arc(k, v, Arc::new(Box::new(op)))
}

struct AttentionOp {
    heads: usize,
    scale: f32,
    /// Additive mask, `mask_batches` × sq × sk.
    mask: Option<Vec<f32>>,
    mask_batches: usize,
    /// Softmax output `[b, heads, sq, sk]` from the forward.
    probs: Mutex<Option<Vec<f32>>>,
}

/// Sizes and row strides shared by the per-batch kernels.
#[derive(Clone, Copy)]
struct Geometry {
    sq: usize,
    sk: usize,
    heads: usize,
    d: usize,
    h: usize,
    q_row: usize,
    k_row: usize,
    v_row: usize,
    scale: f32,
}

/// A `[b, s, h]` view: data from the first element, batch and row strides (unit column stride).
struct View<'a> {
    data: Cow<'a, [f32]>,
    batch: usize,
    row: usize,
}

impl View<'_> {
    fn batch(&self, bi: usize) -> &[f32] {
        &self.data[bi * self.batch..]
    }
}

fn view<'a>(s: &'a CpuStorage, l: &Layout) -> Result<View<'a>> {
    let dims = l.dims();
    let stride = l.stride();
    if dims.len() != 3 {
        bail!("attention: expected [b, s, h], got {dims:?}");
    }
    let CpuStorage::F32(data) = s else {
        bail!("attention takes float32");
    };
    if stride[2] == 1 {
        Ok(View {
            data: Cow::Borrowed(&data[l.start_offset()..]),
            batch: stride[0],
            row: stride[1],
        })
    } else {
        Ok(View {
            data: Cow::Owned(gather(data, l)),
            batch: dims[1] * dims[2],
            row: dims[2],
        })
    }
}

fn with_view<R>(t: &Tensor, f: impl FnOnce(&View<'_>) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(&view(s, layout)?),
        _ => bail!("fused attention runs on the CPU"),
    }
}

/// How many leading keys of a row can carry weight: up to the last unblocked one (all keys when
/// the whole row is blocked, so the result matches the plain softmax exactly).
#[inline(always)]
fn visible(mask_row: &[f32], sk: usize) -> usize {
    if mask_row.is_empty() {
        return sk;
    }
    match mask_row.iter().rposition(|&b| b > BLOCKED) {
        Some(p) => p + 1,
        None => sk,
    }
}

crate::simd_fn! {
    fn forward_batch(
        g: &Geometry,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: &[f32],
        out: &mut [f32],
        probs: &mut [f32],
        kt: &mut [f32],
    ) {
        let Geometry { sq, sk, heads, d, h, q_row, k_row, v_row, scale } = *g;
        for hd in 0..heads {
            let off = hd * d;
            // Kᵀ for this head, [d, sk]: each score row is then a sum of d contiguous axpys.
            for j in 0..sk {
                let kj = &k[j * k_row + off..][..d];
                for (c, &kv) in kj.iter().enumerate() {
                    kt[c * sk + j] = kv;
                }
            }
            for i in 0..sq {
                let mrow = if mask.is_empty() { mask } else { &mask[i * sk..][..sk] };
                let lim = visible(mrow, sk);
                let prow = &mut probs[(hd * sq + i) * sk..][..sk];
                let (row, hidden) = prow.split_at_mut(lim);
                hidden.fill(0.0);
                row.fill(0.0);
                let qi = &q[i * q_row + off..][..d];
                for (c, &qc) in qi.iter().enumerate() {
                    simd::axpy(row, qc, &kt[c * sk..][..lim]);
                }
                if mrow.is_empty() {
                    for s in row.iter_mut() {
                        *s *= scale;
                    }
                } else {
                    for (s, m) in row.iter_mut().zip(mrow) {
                        *s = *s * scale + m;
                    }
                }
                let m = simd::max(row);
                for s in row.iter_mut() {
                    *s = simd::exp(*s - m);
                }
                let total = simd::sum(row);
                for s in row.iter_mut() {
                    *s /= total;
                }
                let oi = &mut out[i * h + off..][..d];
                oi.fill(0.0);
                for (j, &p) in row.iter().enumerate() {
                    simd::axpy(oi, p, &v[j * v_row + off..][..d]);
                }
            }
        }
    }
}

crate::simd_fn! {
    fn backward_batch(
        g: &Geometry,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: &[f32],
        probs: &[f32],
        dout: &[f32],
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
        vt: &mut [f32],
        dp: &mut [f32],
    ) {
        let Geometry { sq, sk, heads, d, h, q_row, k_row, v_row, scale } = *g;
        for hd in 0..heads {
            let off = hd * d;
            for j in 0..sk {
                let vj = &v[j * v_row + off..][..d];
                for (c, &vv) in vj.iter().enumerate() {
                    vt[c * sk + j] = vv;
                }
            }
            for i in 0..sq {
                let mrow = if mask.is_empty() { mask } else { &mask[i * sk..][..sk] };
                let lim = visible(mrow, sk);
                let p = &probs[(hd * sq + i) * sk..][..lim];
                let doi = &dout[i * h + off..][..d];
                // dV_j += p_ij · dO_i
                for (j, &pj) in p.iter().enumerate() {
                    simd::axpy(&mut dv[j * h + off..][..d], pj, doi);
                }
                // dP_ij = dO_i · V_j
                let dpr = &mut dp[..lim];
                dpr.fill(0.0);
                for (c, &dc) in doi.iter().enumerate() {
                    simd::axpy(dpr, dc, &vt[c * sk..][..lim]);
                }
                // Softmax backward, then the 1/√d scale: dS_ij = p_ij (dP_ij − Σ_j p·dP) / √d
                let rd = simd::dot(p, dpr);
                for (x, &pj) in dpr.iter_mut().zip(p) {
                    *x = pj * (*x - rd) * scale;
                }
                // dQ_i = Σ_j dS_ij K_j ;  dK_j += dS_ij Q_i
                let dqi = &mut dq[i * h + off..][..d];
                for (j, &s) in dpr.iter().enumerate() {
                    simd::axpy(dqi, s, &k[j * k_row + off..][..d]);
                }
                let qi = &q[i * q_row + off..][..d];
                for (j, &s) in dpr.iter().enumerate() {
                    simd::axpy(&mut dk[j * h + off..][..d], s, qi);
                }
            }
        }
    }
}

impl AttentionOp {
    fn mask_for(&self, bi: usize, sq: usize, sk: usize) -> &[f32] {
        match &self.mask {
            None => &[],
            Some(m) => {
                let b = if self.mask_batches == 1 { 0 } else { bi };
                &m[b * sq * sk..][..sq * sk]
            }
        }
    }
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (view(s1, l1)?, view(s2, l2)?, view(s3, l3)?);
        let (b, sq, h) = (l1.dims()[0], l1.dims()[1], l1.dims()[2]);
        let sk = l2.dims()[1];
        let heads = self.heads;
        let g = Geometry {
            sq,
            sk,
            heads,
            d: h / heads,
            h,
            q_row: q.row,
            k_row: k.row,
            v_row: v.row,
            scale: self.scale,
        };
        let mut out = vec![0f32; b * sq * h];
        let mut probs = vec![0f32; b * heads * sq * sk];
        if b > 0 && sq > 0 && sk > 0 && h > 0 {
            let tasks = out
                .chunks_mut(sq * h)
                .zip(probs.chunks_mut(heads * sq * sk))
                .enumerate()
                .collect();
            par::run(tasks, |(bi, (o, p))| {
                let mut kt = vec![0f32; g.d * sk];
                forward_batch(
                    &g,
                    q.batch(bi),
                    k.batch(bi),
                    v.batch(bi),
                    self.mask_for(bi, sq, sk),
                    o,
                    p,
                    &mut kt,
                );
            });
        }
        *lock(&self.probs) = Some(probs);
        Ok((CpuStorage::F32(out), Shape::from((b, sq, h))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = lock(&self.probs);
        let Some(probs) = guard.as_ref() else {
            bail!("attention backward before forward");
        };
        let (b, sq, h) = q.dims3()?;
        let sk = k.dim(1)?;
        let heads = self.heads;
        let (dq, dk, dv) = with_view(q, |qv| {
            with_view(k, |kv| {
                with_view(v, |vv| {
                    let (storage, layout) = dout.storage_and_layout();
                    let Storage::Cpu(ds) = &*storage else {
                        bail!("fused attention runs on the CPU");
                    };
                    let dout = f32_data(ds, layout)?;
                    let g = Geometry {
                        sq,
                        sk,
                        heads,
                        d: h / heads,
                        h,
                        q_row: qv.row,
                        k_row: kv.row,
                        v_row: vv.row,
                        scale: self.scale,
                    };
                    let mut dq = vec![0f32; b * sq * h];
                    let mut dk = vec![0f32; b * sk * h];
                    let mut dv = vec![0f32; b * sk * h];
                    if b > 0 && sq > 0 && sk > 0 && h > 0 {
                        let tasks = dq
                            .chunks_mut(sq * h)
                            .zip(dk.chunks_mut(sk * h))
                            .zip(dv.chunks_mut(sk * h))
                            .enumerate()
                            .collect();
                        par::run(tasks, |(bi, ((dq, dk), dv))| {
                            let mut vt = vec![0f32; g.d * sk];
                            let mut dp = vec![0f32; sk];
                            backward_batch(
                                &g,
                                qv.batch(bi),
                                kv.batch(bi),
                                vv.batch(bi),
                                self.mask_for(bi, sq, sk),
                                &probs[bi * heads * sq * sk..][..heads * sq * sk],
                                &dout[bi * sq * h..][..sq * h],
                                dq,
                                dk,
                                dv,
                                &mut vt,
                                &mut dp,
                            );
                        });
                    }
                    Ok((dq, dk, dv))
                })
            })
        })?;
        Ok((
            Some(Tensor::from_vec(dq, (b, sq, h), q.device())?),
            Some(Tensor::from_vec(dk, (b, sk, h), k.device())?),
            Some(Tensor::from_vec(dv, (b, sk, h), v.device())?),
        ))
    }
}
