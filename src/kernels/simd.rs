//! Runtime CPU-feature dispatch and vectorisable math for the fused kernels.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so loops written in plain Rust would use
//! 128-bit vectors only. [`simd_fn!`](crate::simd_fn) compiles a kernel body three times — for
//! AVX-512, AVX2+FMA and the baseline — and picks the best one the CPU supports at run time.
//! The functions below are `#[inline(always)]` so they are compiled inside each variant, and they
//! avoid libm calls (which would stop LLVM from vectorising a loop): `exp`, `tanh` and `erf` are
//! polynomial approximations accurate to a few float32 ulps.

/// True when the CPU has the AVX-512 subset the kernels are compiled for.
#[inline]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when the CPU has AVX2 and FMA.
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a function whose body is compiled for AVX-512, AVX2+FMA and the baseline, dispatched
/// at run time. Everything the body calls should be `#[inline(always)]` to share the features.
#[macro_export]
#[doc(hidden)]
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if $crate::kernels::simd::has_avx512() {
                    // SAFETY: the CPU supports every feature `v4` is compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if $crate::kernels::simd::has_avx2() {
                    // SAFETY: the CPU supports every feature `v3` is compiled for.
                    return unsafe { v3($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

const LOG2_E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding it rounds a float to the nearest integer (for |x| < 2²²).
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Below this `exp` underflows to zero (as `f32::exp` does, give or take subnormals).
const EXP_LO: f32 = -87.336_55;
const EXP_HI: f32 = 88.0;

/// `e^x` (Cephes polynomial, about 2 ulp), branch-free so loops vectorise. Returns exactly 0 for
/// `x < -87.34` (the additive mask's `f32::MIN` entries) and saturates at `e^88`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_LO, EXP_HI);
    let t = xc * LOG2_E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r2 + r + 1.0;
    // 2^n for n in [-126, 127]; n = -127 (x near EXP_LO) would give 0 through the exponent field.
    let scale = f32::from_bits(((n_int + 127).max(0) as u32) << 23);
    let out = y * scale;
    if x < EXP_LO { 0.0 } else { out }
}

/// `tanh(x)` as `1 - 2 / (e^{2x} + 1)`: absolute error below 2e-7.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x);
    1.0 - 2.0 / (e + 1.0)
}

/// `erf(x)` (Abramowitz & Stegun 7.1.26 refined: absolute error below 2e-7).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_with_gaussian(x).0
}

/// `(erf(x), e^{-x²})`: the erf below computes the Gaussian factor anyway, and GELU's backward
/// needs it too (as `e^{-x²/2}` of its unscaled input).
#[inline(always)]
pub fn erf_with_gaussian(x: f32) -> (f32, f32) {
    // W. J. Cody's rational approximations are more precise but branchy; this form is
    // branch-free: erf(|x|) = 1 - poly(t)·e^{-x²}, t = 1 / (1 + p|x|).
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let gaussian = exp(-a * a);
    let y = 1.0 - poly * gaussian;
    (if x < 0.0 { -y } else { y }, gaussian)
}

/// √(2/π), GELU's tanh approximation constant.
pub const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// 1/√(2π).
pub const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Sum of a slice with 16 independent accumulators (vectorises; float order differs from a
/// sequential sum by rounding only).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            acc[l] += c[l];
        }
    }
    let mut s = 0f32;
    for r in rest {
        s += r;
    }
    acc.iter().sum::<f32>() + s
}

/// Dot product with 16 independent accumulators.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    acc.iter().sum::<f32>() + s
}

/// Maximum of a non-empty slice (`f32::NEG_INFINITY` for an empty one).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &r in rest {
        m = if r > m { r } else { m };
    }
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

/// `y += a · x`
#[inline(always)]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(100.0).is_finite());
    }

    #[test]
    fn tanh_and_erf_match_std() {
        let mut x = -12.0f32;
        while x < 12.0 {
            assert!((tanh(x) - x.tanh()).abs() < 3e-7, "tanh {x}");
            let e = libm_erf(x as f64) as f32;
            assert!((erf(x) - e).abs() < 1e-6, "erf {x}: {} vs {e}", erf(x));
            x += 0.0113;
        }
    }

    /// erf in f64 via its Taylor / continued-fraction forms, for the test only.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            // Taylor series: converges fast enough below 3.
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction.
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / (std::f64::consts::PI.sqrt() * (a + f));
            x.signum() * (1.0 - erfc)
        }
    }

    #[test]
    fn reductions() {
        let xs: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let s: f32 = xs.iter().sum();
        assert!((sum(&xs) - s).abs() < 1e-4);
        assert_eq!(max(&xs), 15.0);
        let d: f32 = xs.iter().map(|x| x * x).sum();
        assert!((dot(&xs, &xs) - d).abs() < 1e-3);
    }
}
