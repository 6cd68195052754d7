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
use std::sync::Mutex;

use candle_core::{CpuStorage, Result, Shape, Storage, Tensor, bail};

use super::{Input, Kernel, apply, gather, lock, par, simd, with_f32};

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
    let op = AttentionOp::new(heads, h, sq, sk, b, mask_bias)?;
    apply(op, [q, k, v])
}

/// Attention straight on a fused QKV projection `qkv [b, s, 3h]` (Q, K, V side by side, as GPT-2's
/// `c_attn` makes them): the same result as [`attention`] on its three column slices, but the
/// backward returns one `[b, s, 3h]` gradient. (Three `narrow`s would each pad their gradient
/// with zeros to the full width and add it up: three allocations, copies and sums per layer.)
pub fn attention_qkv(qkv: &Tensor, heads: usize, mask_bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, s, h3) = qkv.dims3()?;
    if h3 % 3 != 0 || heads == 0 || (h3 / 3) % heads != 0 {
        bail!("attention: qkv {:?} with {heads} heads", qkv.dims());
    }
    let op = AttentionOp::new(heads, h3 / 3, s, s, b, mask_bias)?;
    apply(QkvAttentionOp(op), [qkv])
}

impl AttentionOp {
    /// The op for `b` sequences of `sq` queries and `sk` keys of width `h`, with its mask checked
    /// and copied.
    fn new(
        heads: usize,
        h: usize,
        sq: usize,
        sk: usize,
        b: usize,
        mask_bias: Option<&Tensor>,
    ) -> Result<Self> {
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
        Ok(AttentionOp {
            heads,
            scale: 1.0 / ((h / heads) as f64).sqrt() as f32,
            mask,
            mask_batches,
            probs: Mutex::new(None),
        })
    }
}

struct AttentionOp {
    heads: usize,
    scale: f32,
    /// Additive mask, `mask_batches` × sq × sk.
    mask: Option<Vec<f32>>,
    mask_batches: usize,
    /// Softmax output `[b, heads, sq, skp]` from the forward, rows padded with zeros to a whole
    /// number of tiles (`skp = sk` rounded up to `TILE`).
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

fn view<'a>(input: Input<'a>) -> Result<View<'a>> {
    let Input { storage, layout: l } = input;
    let dims = l.dims();
    let stride = l.stride();
    if dims.len() != 3 {
        bail!("attention: expected [b, s, h], got {dims:?}");
    }
    let CpuStorage::F32(data) = storage else {
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

/// Runs `f` on views of several `[b, s, h]` CPU tensors at once (read-locked meanwhile).
fn with_views<const N: usize, R>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&View<'_>; N]) -> Result<R>,
) -> Result<R> {
    let guards = tensors.map(|t| t.storage_and_layout());
    let mut views = Vec::with_capacity(N);
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(storage) => views.push(view(Input { storage, layout })?),
            _ => bail!("fused attention runs on the CPU"),
        }
    }
    f(std::array::from_fn(|i| &views[i]))
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

/// Register-block width along keys (score rows) and head dims (context rows): two AVX-512
/// vectors. (The tiles use `mul_add`, which the AVX2/AVX-512 builds turn into FMA instructions;
/// Rust never fuses `a * b + c` on its own.) Scratch copies of K, V, Q and dO are padded to whole tiles so no tile needs a tail.
const TILE: usize = 32;
/// Rows computed together: each loaded tile feeds `ROWS` multiply-adds. A last partial block
/// recomputes its final row in the spare slots (cheaper than a second, one-row kernel).
const ROWS: usize = 4;

/// `Aᵀ`-free score tile: `out[r·out_row + j] = Σ_c a[(i0+r)·a_row + c] · bt[c·bt_row + j]` for
/// `r < rows` and `j < n` (`n` a multiple of `TILE`; `bt` `[d, ≥n]`). Each output tile stays in
/// registers while the loop runs over the `d` shared dims with `a` broadcast.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scores_block(
    a: &[f32],
    a_row: usize,
    rows: usize,
    d: usize,
    bt: &[f32],
    bt_row: usize,
    n: usize,
    out: &mut [f32],
    out_row: usize,
) {
    let a: [&[f32]; ROWS] = std::array::from_fn(|r| &a[r.min(rows - 1) * a_row..][..d]);
    for j0 in (0..n).step_by(TILE) {
        let mut acc = [[0f32; TILE]; ROWS];
        for c in 0..d {
            let b = &bt[c * bt_row + j0..][..TILE];
            for r in 0..ROWS {
                let x = a[r][c];
                for l in 0..TILE {
                    acc[r][l] = x.mul_add(b[l], acc[r][l]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(rows) {
            out[r * out_row + j0..][..TILE].copy_from_slice(acc);
        }
    }
}

/// Weighted sum of rows: `out[r·out_row + c] = Σ_{j in lo..hi} w[r·w_r + j·w_j] · b[j·b_row + c]`
/// for `r < rows`, `c < d` (`b` rows padded to `dp`, a multiple of `TILE`). With `w_r = 1` and
/// `w_j` a row stride it sums over a column of `w` instead (`Wᵀ·B`). The output tile stays in
/// registers while the loop runs over `j` with `w` broadcast.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weighted_block(
    w: &[f32],
    w_r: usize,
    w_j: usize,
    rows: usize,
    (lo, hi): (usize, usize),
    b: &[f32],
    b_row: usize,
    (d, dp): (usize, usize),
    out: &mut [f32],
    out_row: usize,
) {
    let wr: [usize; ROWS] = std::array::from_fn(|r| r.min(rows - 1) * w_r);
    for c0 in (0..dp).step_by(TILE) {
        let mut acc = [[0f32; TILE]; ROWS];
        for j in lo..hi {
            let bj = &b[j * b_row + c0..][..TILE];
            let wj = &w[j * w_j..];
            for r in 0..ROWS {
                let x = wj[wr[r]];
                for l in 0..TILE {
                    acc[r][l] = x.mul_add(bj[l], acc[r][l]);
                }
            }
        }
        let width = TILE.min(d - c0);
        for (r, acc) in acc.iter().enumerate().take(rows) {
            out[r * out_row + c0..][..width].copy_from_slice(&acc[..width]);
        }
    }
}

/// Per-row key limits of one sequence's mask (`visible`), for each key the first row that can
/// see it (`sq` when none can: the row range the `Wᵀ·B` sums in the backward run over), and the
/// additive bias `[sq, skp]` the forward softmax uses: the mask (0 without one) up to each row's
/// limit, −∞ past it, so that whole tiles go through the softmax and come out exactly 0 there.
fn limits(mask: &[f32], sq: usize, sk: usize, sc: &mut Scratch) {
    let skp = sk.next_multiple_of(TILE);
    sc.lims.clear();
    sc.lims.extend((0..sq).map(|i| {
        let mrow = if mask.is_empty() {
            mask
        } else {
            &mask[i * sk..][..sk]
        };
        visible(mrow, sk)
    }));
    sc.first.clear();
    sc.first.resize(sk, sq);
    let mut seen = 0;
    for (i, &lim) in sc.lims.iter().enumerate() {
        for f in &mut sc.first[seen.min(lim)..lim] {
            *f = i;
        }
        seen = seen.max(lim);
    }
    if !sc.bias.is_empty() {
        for (i, (row, &lim)) in sc.bias.chunks_exact_mut(skp).zip(&sc.lims).enumerate() {
            let (seen, hidden) = row.split_at_mut(lim);
            if mask.is_empty() {
                seen.fill(0.0);
            } else {
                seen.copy_from_slice(&mask[i * sk..][..lim]);
            }
            hidden.fill(f32::NEG_INFINITY);
        }
    }
}

/// Copies the `d` columns at `off` of `rows` rows (row stride `row`) into `dst` `[rows, dp]`.
fn copy_head(
    src: &[f32],
    row: usize,
    off: usize,
    rows: usize,
    d: usize,
    dst: &mut [f32],
    dp: usize,
) {
    for (j, dst) in dst.chunks_exact_mut(dp).take(rows).enumerate() {
        dst[..d].copy_from_slice(&src[j * row + off..][..d]);
    }
}

/// Copies the `d` columns at `off` of `rows` rows, transposed, into `dst` `[d, rows_p]`.
fn transpose_head(
    src: &[f32],
    row: usize,
    off: usize,
    rows: usize,
    d: usize,
    dst: &mut [f32],
    rows_p: usize,
) {
    // Rows of dst are written whole (contiguous stores); the strided side is the reads.
    for (c, dst) in dst.chunks_exact_mut(rows_p).take(d).enumerate() {
        for (j, x) in dst[..rows].iter_mut().enumerate() {
            *x = src[j * row + off + c];
        }
    }
}

/// Per-task scratch, reused over the heads of a sequence. Padding columns stay zero.
struct Scratch {
    /// Kᵀ (forward) or Vᵀ (backward), `[d, skp]`.
    t: Vec<f32>,
    /// V (forward) or K (backward), `[sk, dp]`.
    keys: Vec<f32>,
    /// Q, `[sq, dp]` (backward).
    q: Vec<f32>,
    /// dO, `[sq, dp]` (backward).
    dout: Vec<f32>,
    /// Scores of a row block (forward, `[ROWS, skp]`) or dS (backward, `[sq, skp]`).
    s: Vec<f32>,
    /// Padded additive mask `[sq, skp]` (forward; see [`limits`]).
    bias: Vec<f32>,
    lims: Vec<usize>,
    first: Vec<usize>,
}

impl Scratch {
    fn for_forward(g: &Geometry) -> Self {
        Self::new(g, false)
    }

    fn for_backward(g: &Geometry) -> Self {
        Self::new(g, true)
    }

    fn new(g: &Geometry, backward: bool) -> Self {
        let (skp, dp) = (g.sk.next_multiple_of(TILE), g.d.next_multiple_of(TILE));
        let rows = if backward { g.sq } else { ROWS };
        let qp = if backward { g.sq * dp } else { 0 };
        Self {
            t: vec![0.0; g.d * skp],
            keys: vec![0.0; g.sk * dp],
            q: vec![0.0; qp],
            dout: vec![0.0; qp],
            s: vec![0.0; rows * skp],
            bias: if backward {
                Vec::new()
            } else {
                vec![0.0; g.sq * skp]
            },
            lims: Vec::with_capacity(g.sq),
            first: Vec::with_capacity(g.sk),
        }
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
        sc: &mut Scratch,
    ) {
        let Geometry { sq, sk, heads, d, h, q_row, k_row, v_row, scale } = *g;
        let (skp, dp) = (sk.next_multiple_of(TILE), d.next_multiple_of(TILE));
        limits(mask, sq, sk, sc);
        for hd in 0..heads {
            let off = hd * d;
            transpose_head(k, k_row, off, sk, d, &mut sc.t, skp);
            copy_head(v, v_row, off, sk, d, &mut sc.keys, dp);
            for i0 in (0..sq).step_by(ROWS) {
                let rows = ROWS.min(sq - i0);
                let hi = sc.lims[i0..i0 + rows].iter().copied().max().unwrap_or(0);
                // S = Q·Kᵀ for the block's rows, in whole tiles up to the last visible key; the
                // softmax runs over the same tiles (the bias is −∞ past each row's limit).
                let n = hi.next_multiple_of(TILE);
                let s = &mut sc.s[..rows * skp];
                scores_block(&q[i0 * q_row + off..], q_row, rows, d, &sc.t, skp, n, s, skp);
                for (r, srow) in s.chunks_exact_mut(skp).enumerate() {
                    let i = i0 + r;
                    let srow = &mut srow[..n];
                    for (x, &m) in srow.iter_mut().zip(&sc.bias[i * skp..][..n]) {
                        *x = *x * scale + m;
                    }
                    let m = simd::max(srow);
                    for x in srow.iter_mut() {
                        *x = simd::exp(*x - m);
                    }
                    let total = simd::sum(srow);
                    let (row, hidden) = probs[(hd * sq + i) * skp..][..skp].split_at_mut(n);
                    for (p, &x) in row.iter_mut().zip(srow.iter()) {
                        *p = x / total;
                    }
                    hidden.fill(0.0);
                }
                // O = P·V for the same rows (probabilities past a row's limit are zero).
                weighted_block(&probs[(hd * sq + i0) * skp..], skp, 1, rows, (0, hi), &sc.keys,
                    dp, (d, dp), &mut out[i0 * h + off..], h);
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
        sc: &mut Scratch,
    ) {
        let Geometry { sq, sk, heads, d, h, q_row, k_row, v_row, scale } = *g;
        let (skp, dp) = (sk.next_multiple_of(TILE), d.next_multiple_of(TILE));
        limits(mask, sq, sk, sc);
        for hd in 0..heads {
            let off = hd * d;
            let p = &probs[hd * sq * skp..][..sq * skp];
            transpose_head(v, v_row, off, sk, d, &mut sc.t, skp);
            copy_head(k, k_row, off, sk, d, &mut sc.keys, dp);
            copy_head(q, q_row, off, sq, d, &mut sc.q, dp);
            copy_head(dout, h, off, sq, d, &mut sc.dout, dp);
            // dP = dO·Vᵀ in whole tiles up to the block's last visible key, then the softmax
            // backward and the 1/√d scale in place: dS_ij = p_ij (dP_ij − Σ_j p·dP) / √d. p is
            // zero past each row's limit, and so is dS; the tiles past the block's are cleared.
            for i0 in (0..sq).step_by(ROWS) {
                let rows = ROWS.min(sq - i0);
                let hi = sc.lims[i0..i0 + rows].iter().copied().max().unwrap_or(0);
                let n = hi.next_multiple_of(TILE);
                let ds = &mut sc.s[i0 * skp..][..rows * skp];
                scores_block(&dout[i0 * h + off..], h, rows, d, &sc.t, skp, n, ds, skp);
                for (r, ds) in ds.chunks_exact_mut(skp).enumerate() {
                    let pr = &p[(i0 + r) * skp..][..n];
                    let (ds, hidden) = ds.split_at_mut(n);
                    let rd = simd::dot(pr, ds);
                    for (x, &pj) in ds.iter_mut().zip(pr) {
                        *x = pj * (*x - rd) * scale;
                    }
                    hidden.fill(0.0);
                }
            }
            for i0 in (0..sq).step_by(ROWS) {
                let rows = ROWS.min(sq - i0);
                let hi = sc.lims[i0..i0 + rows].iter().copied().max().unwrap_or(0);
                // dQ_i = Σ_j dS_ij K_j
                weighted_block(&sc.s[i0 * skp..], skp, 1, rows, (0, hi), &sc.keys, dp, (d, dp),
                    &mut dq[i0 * h + off..], h);
            }
            for j0 in (0..sk).step_by(ROWS) {
                let rows = ROWS.min(sk - j0);
                let lo = sc.first[j0..j0 + rows].iter().copied().min().unwrap_or(sq);
                // dK_j = Σ_i dS_ij Q_i ;  dV_j = Σ_i p_ij dO_i
                weighted_block(&sc.s[j0..], 1, skp, rows, (lo, sq), &sc.q, dp, (d, dp),
                    &mut dk[j0 * h + off..], h);
                weighted_block(&p[j0..], 1, skp, rows, (lo, sq), &sc.dout, dp, (d, dp),
                    &mut dv[j0 * h + off..], h);
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

impl Kernel<3> for AttentionOp {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn forward(&self, [q, k, v]: [Input<'_>; 3]) -> Result<(Vec<f32>, Shape)> {
        let (b, sq, h) = (q.dims()[0], q.dims()[1], q.dims()[2]);
        let sk = k.dims()[1];
        let (q, k, v) = (view(q)?, view(k)?, view(v)?);
        let mut out = vec![0f32; b * sq * h];
        self.forward_views(&q, &k, &v, (b, sq, sk, h), &mut out);
        Ok((out, Shape::from((b, sq, h))))
    }

    fn backward(
        &self,
        [q, k, v]: [&Tensor; 3],
        _out: &Tensor,
        dout: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let (b, sq, h) = q.dims3()?;
        let sk = k.dim(1)?;
        let (dq, dk, dv) = with_views([q, k, v], |[qv, kv, vv]| {
            with_f32(dout, |dout| {
                self.backward_views(qv, kv, vv, dout, (b, sq, sk, h))
            })
        })?;
        Ok([
            Some(Tensor::from_vec(dq, (b, sq, h), q.device())?),
            Some(Tensor::from_vec(dk, (b, sk, h), k.device())?),
            Some(Tensor::from_vec(dv, (b, sk, h), v.device())?),
        ])
    }
}

impl AttentionOp {
    /// The context `[b, sq, h]` for Q, K, V views, written over all of `out`; keeps the
    /// probabilities for the backward.
    fn forward_views(
        &self,
        q: &View<'_>,
        k: &View<'_>,
        v: &View<'_>,
        (b, sq, sk, h): (usize, usize, usize, usize),
        out: &mut [f32],
    ) {
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
        // Rows padded to whole tiles (zeros past sk) for the backward's tile loops.
        let skp = sk.next_multiple_of(TILE);
        let mut probs = vec![0f32; b * heads * sq * skp];
        if b > 0 && sq > 0 && sk > 0 && h > 0 {
            let tasks = out
                .chunks_mut(sq * h)
                .zip(probs.chunks_mut(heads * sq * skp))
                .enumerate()
                .collect();
            par::run(tasks, |(bi, (o, p))| {
                let mut scratch = Scratch::for_forward(&g);
                forward_batch(
                    &g,
                    q.batch(bi),
                    k.batch(bi),
                    v.batch(bi),
                    self.mask_for(bi, sq, sk),
                    o,
                    p,
                    &mut scratch,
                );
            });
        }
        *lock(&self.probs) = Some(probs);
    }

    /// `(dQ, dK, dV)`, each `[b, s, h]`, from the output gradient `dout [b, sq, h]`.
    #[allow(clippy::type_complexity)]
    fn backward_views(
        &self,
        qv: &View<'_>,
        kv: &View<'_>,
        vv: &View<'_>,
        dout: &[f32],
        (b, sq, sk, h): (usize, usize, usize, usize),
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let guard = lock(&self.probs);
        let Some(probs) = guard.as_ref() else {
            bail!("attention backward before forward");
        };
        let heads = self.heads;
        let skp = sk.next_multiple_of(TILE);
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
                let mut scratch = Scratch::for_backward(&g);
                backward_batch(
                    &g,
                    qv.batch(bi),
                    kv.batch(bi),
                    vv.batch(bi),
                    self.mask_for(bi, sq, sk),
                    &probs[bi * heads * sq * skp..][..heads * sq * skp],
                    &dout[bi * sq * h..][..sq * h],
                    dq,
                    dk,
                    dv,
                    &mut scratch,
                );
            });
        }
        Ok((dq, dk, dv))
    }
}

/// Row r of the result is `[dQ_r | dK_r | dV_r]`: the gradient of a `[.., 3h]` QKV projection.
fn side_by_side(dq: &[f32], dk: &[f32], dv: &[f32], h: usize) -> Vec<f32> {
    let mut dqkv = Vec::with_capacity(3 * dq.len());
    for ((q, k), v) in dq.chunks(h).zip(dk.chunks(h)).zip(dv.chunks(h)) {
        dqkv.extend_from_slice(q);
        dqkv.extend_from_slice(k);
        dqkv.extend_from_slice(v);
    }
    dqkv
}

/// Causal self-attention on row-major `[b, s, 3h]` QKV data, for a hand-written whole-model step
/// (the GPT's): the forward keeps its probabilities in the value for the backward.
pub(crate) struct CausalQkv {
    op: AttentionOp,
    shape: (usize, usize, usize),
}

impl CausalQkv {
    /// `b` sequences of `s` positions, width `h` in `heads` heads; no padding.
    pub(crate) fn new(heads: usize, (b, s, h): (usize, usize, usize)) -> Self {
        let mask = (0..s)
            .flat_map(|i| (0..s).map(move |j| if j <= i { 0.0 } else { f32::MIN }))
            .collect();
        let op = AttentionOp {
            heads,
            scale: 1.0 / ((h / heads.max(1)) as f64).sqrt() as f32,
            mask: Some(mask),
            mask_batches: 1,
            probs: Mutex::new(None),
        };
        Self {
            op,
            shape: (b, s, h),
        }
    }

    /// The context `[b, s, h]` of `qkv [b, s, 3h]`, written over all of `out`.
    pub(crate) fn forward(&self, qkv: &[f32], out: &mut [f32]) {
        let (b, s, h) = self.shape;
        let [q, k, v] = qkv_views(qkv, s * 3 * h, 3 * h, h);
        self.op.forward_views(&q, &k, &v, (b, s, s, h), out);
    }

    /// The gradient `[b, s, 3h]` of `qkv` for the context gradient `dout [b, s, h]`.
    pub(crate) fn backward(&self, qkv: &[f32], dout: &[f32]) -> Result<Vec<f32>> {
        let (b, s, h) = self.shape;
        let [q, k, v] = qkv_views(qkv, s * 3 * h, 3 * h, h);
        let (dq, dk, dv) = self.op.backward_views(&q, &k, &v, dout, (b, s, s, h))?;
        Ok(side_by_side(&dq, &dk, &dv, h))
    }
}

/// [`AttentionOp`] on one `[b, s, 3h]` QKV tensor (see [`attention_qkv`]).
struct QkvAttentionOp(AttentionOp);

/// Views of Q, K and V in a `[b, s, 3h]` tensor: column blocks 0, 1 and 2 (gathered first when
/// its last dimension is strided).
fn qkv_views<'a>(data: &'a [f32], batch: usize, row: usize, h: usize) -> [View<'a>; 3] {
    [0, 1, 2].map(|c| View {
        data: Cow::Borrowed(&data[c * h..]),
        batch,
        row,
    })
}

/// Row-major data of a `[b, s, 3h]` CPU tensor with unit column stride: (data from the first
/// element, batch stride, row stride).
fn qkv_data<'a>(input: Input<'a>) -> Result<(Cow<'a, [f32]>, usize, usize)> {
    let Input { storage, layout: l } = input;
    let CpuStorage::F32(data) = storage else {
        bail!("attention takes float32");
    };
    let (dims, stride) = (l.dims(), l.stride());
    if dims.len() != 3 {
        bail!("attention: expected qkv [b, s, 3h], got {dims:?}");
    }
    Ok(if stride[2] == 1 {
        (
            Cow::Borrowed(&data[l.start_offset()..]),
            stride[0],
            stride[1],
        )
    } else {
        (Cow::Owned(gather(data, l)), dims[1] * dims[2], dims[2])
    })
}

impl Kernel<1> for QkvAttentionOp {
    fn name(&self) -> &'static str {
        "fused-attention-qkv"
    }

    fn forward(&self, [qkv]: [Input<'_>; 1]) -> Result<(Vec<f32>, Shape)> {
        let (b, s, h3) = (qkv.dims()[0], qkv.dims()[1], qkv.dims()[2]);
        let h = h3 / 3;
        let (data, batch, row) = qkv_data(qkv)?;
        let [q, k, v] = qkv_views(&data, batch, row, h);
        let mut out = vec![0f32; b * s * h];
        self.0.forward_views(&q, &k, &v, (b, s, s, h), &mut out);
        Ok((out, Shape::from((b, s, h))))
    }

    fn backward(
        &self,
        [qkv]: [&Tensor; 1],
        _out: &Tensor,
        dout: &Tensor,
    ) -> Result<[Option<Tensor>; 1]> {
        let (b, s, h3) = qkv.dims3()?;
        let h = h3 / 3;
        let (storage, layout) = qkv.storage_and_layout();
        let Storage::Cpu(storage) = &*storage else {
            bail!("fused attention runs on the CPU");
        };
        let (data, batch, row) = qkv_data(Input { storage, layout })?;
        let [q, k, v] = qkv_views(&data, batch, row, h);
        let (dq, dk, dv) = with_f32(dout, |dout| {
            self.0.backward_views(&q, &k, &v, dout, (b, s, s, h))
        })?;
        let dqkv = side_by_side(&dq, &dk, &dv, h);
        Ok([Some(Tensor::from_vec(dqkv, (b, s, h3), qkv.device())?)])
    }
}
