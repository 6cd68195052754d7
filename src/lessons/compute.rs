//! The compute calculator of the training lesson: how much arithmetic pretraining takes, and how
//! long that is on a given GPU, a cluster of them, or this very machine.
//!
//! The rule of thumb (Kaplan et al. 2020, used for the GPT-3 paper's table D.1): training a dense
//! transformer with `N` parameters on `T` tokens costs about **6 · N · T** floating-point
//! operations — 2·N per token for the forward pass (one multiply and one add per weight) and twice
//! that for the backward pass. It ignores the attention scores (small next to the weights while the
//! context is short compared with the width) and any recomputation.
//!
//! Everything here is a pure function of its inputs; nothing is measured. The caller supplies a
//! measured tokens/s (from a training run) to [`MeasuredRun`].
//!
//! ```
//! use glassbox::lessons::compute::{training_flops, petaflop_s_days, Gpu, Hardware, estimate};
//! let flops = training_flops(175e9, 300e9); // GPT-3
//! assert!((flops - 3.15e23).abs() < 1e21);
//! assert!((petaflop_s_days(flops) - 3646.0).abs() < 1.0);
//! let run = estimate(175e9, 300e9, Hardware::Gpu(Gpu::A100), 1024, 0.35).unwrap();
//! assert!((run.wall_days - 32.6).abs() < 0.1);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Seconds in a day.
pub const SECONDS_PER_DAY: f64 = 86_400.0;

/// One petaflop/s-day: 10^15 operations a second for a day, 8.64·10^19 operations. The GPT-3
/// paper states training compute in this unit.
pub const PETAFLOP_S_DAY: f64 = 1e15 * SECONDS_PER_DAY;

/// Operations per parameter per training token: 2 forward, 4 backward.
pub const FLOPS_PER_PARAM_PER_TOKEN: f64 = 6.0;

/// A typical range of utilisation (achieved ÷ peak) for large training runs; 0.3–0.5 is usual.
pub const TYPICAL_UTILISATION: (f64, f64) = (0.3, 0.5);

/// Training operations ≈ 6 · parameters · tokens.
pub fn training_flops(parameters: f64, tokens: f64) -> f64 {
    FLOPS_PER_PARAM_PER_TOKEN * parameters * tokens
}

/// Operations expressed in petaflop/s-days.
pub fn petaflop_s_days(flops: f64) -> f64 {
    flops / PETAFLOP_S_DAY
}

/// A GPU from the calculator's table, with its peak dense FP16/BF16 tensor throughput (the
/// number on the data sheet, without sparsity), or any other accelerator by its peak.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gpu {
    /// NVIDIA V100 (2017): 125 TFLOP/s FP16 tensor cores. GPT-3 was trained on V100s.
    V100,
    /// NVIDIA A100 (2020): 312 TFLOP/s BF16/FP16.
    A100,
    /// NVIDIA H100 SXM (2022): 989 TFLOP/s BF16/FP16 dense.
    H100Sxm,
    /// Anything else, by its peak in TFLOP/s.
    Custom { peak_tflops: f64 },
}

impl Gpu {
    /// The table the calculator offers (the custom entry is separate).
    pub const TABLE: [Gpu; 3] = [Gpu::V100, Gpu::A100, Gpu::H100Sxm];

    /// "V100", "A100", "H100 SXM", "custom (500 TFLOP/s)".
    pub fn name(&self) -> String {
        match self {
            Gpu::V100 => "V100".into(),
            Gpu::A100 => "A100".into(),
            Gpu::H100Sxm => "H100 SXM".into(),
            Gpu::Custom { peak_tflops } => format!("custom ({peak_tflops} TFLOP/s)"),
        }
    }

    /// The name in lesson files: "v100", "a100", "h100-sxm", "custom:500".
    pub fn key(&self) -> String {
        match self {
            Gpu::V100 => "v100".into(),
            Gpu::A100 => "a100".into(),
            Gpu::H100Sxm => "h100-sxm".into(),
            Gpu::Custom { peak_tflops } => format!("custom:{peak_tflops}"),
        }
    }

    /// Peak dense FP16/BF16 throughput in TFLOP/s.
    pub fn peak_tflops(&self) -> f64 {
        match *self {
            Gpu::V100 => 125.0,
            Gpu::A100 => 312.0,
            Gpu::H100Sxm => 989.0,
            Gpu::Custom { peak_tflops } => peak_tflops,
        }
    }

    /// Peak throughput in FLOP/s.
    pub fn peak_flops(&self) -> f64 {
        self.peak_tflops() * 1e12
    }
}

impl fmt::Display for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Gpu {
    type Err = String;

    /// "v100", "a100", "h100" / "h100-sxm", "custom:500" (TFLOP/s), in any case.
    fn from_str(text: &str) -> Result<Self, String> {
        let wanted = text.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        match wanted.as_str() {
            "v100" => Ok(Gpu::V100),
            "a100" => Ok(Gpu::A100),
            "h100" | "h100-sxm" | "h100sxm" => Ok(Gpu::H100Sxm),
            _ => {
                let peak = wanted
                    .strip_prefix("custom:")
                    .or_else(|| wanted.strip_prefix("custom="))
                    .ok_or_else(|| {
                        format!(
                            "unknown GPU {text:?}; use v100, a100, h100-sxm or custom:TFLOPS \
                             (e.g. custom:500)"
                        )
                    })?;
                let peak_tflops: f64 = peak.trim().parse().map_err(|_| {
                    format!("{text:?}: the custom peak must be a number of TFLOP/s")
                })?;
                if !(peak_tflops.is_finite() && peak_tflops > 0.0) {
                    return Err(format!("{text:?}: the custom peak must be positive"));
                }
                Ok(Gpu::Custom { peak_tflops })
            }
        }
    }
}

/// What the run is on: GPUs from the table, or this machine at the speed it was measured at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hardware {
    Gpu(Gpu),
    /// This machine, as measured by a mini training run ([`MeasuredRun`]). Its utilisation is
    /// already in the measurement.
    ThisMachine,
}

impl fmt::Display for Hardware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hardware::Gpu(gpu) => write!(f, "{gpu}"),
            Hardware::ThisMachine => f.write_str("this machine"),
        }
    }
}

impl FromStr for Hardware {
    type Err = String;

    /// A GPU (see [`Gpu`]'s `FromStr`) or "this-machine".
    fn from_str(text: &str) -> Result<Self, String> {
        let wanted = text.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        if wanted == "this-machine" || wanted == "machine" {
            return Ok(Hardware::ThisMachine);
        }
        text.parse::<Gpu>()
            .map(Hardware::Gpu)
            .map_err(|e| format!("{e}, or this-machine"))
    }
}

/// The answer of the calculator for GPUs from the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeEstimate {
    pub parameters: f64,
    pub tokens: f64,
    /// 6 · parameters · tokens.
    pub flops: f64,
    pub petaflop_s_days: f64,
    pub gpu: Gpu,
    pub gpus: u64,
    /// Achieved ÷ peak, in (0, 1].
    pub utilisation: f64,
    /// What one GPU achieves: peak · utilisation, in FLOP/s.
    pub achieved_flops_per_gpu: f64,
    /// Days one GPU would need alone (GPU-days).
    pub gpu_days: f64,
    /// Days on the whole cluster (GPU-days ÷ GPUs; perfect scaling assumed).
    pub wall_days: f64,
}

impl ComputeEstimate {
    /// GPU-hours, the unit clouds bill in.
    pub fn gpu_hours(&self) -> f64 {
        self.gpu_days * 24.0
    }

    /// What the GPU-hours cost at a price per GPU-hour.
    pub fn cost(&self, price_per_gpu_hour: f64) -> f64 {
        self.gpu_hours() * price_per_gpu_hour
    }
}

fn check_positive(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a positive number, got {value}"))
    }
}

fn check_utilisation(utilisation: f64) -> Result<(), String> {
    if utilisation.is_finite() && utilisation > 0.0 && utilisation <= 1.0 {
        Ok(())
    } else {
        Err(format!(
            "utilisation must be in (0, 1] (e.g. 0.4 for 40%), got {utilisation}"
        ))
    }
}

/// Training compute for `parameters` and `tokens` on `gpus` GPUs of a kind, each achieving
/// `utilisation` of its peak. `Hardware::ThisMachine` is refused here: use
/// [`MeasuredRun::estimate`], which knows the measured speed.
pub fn estimate(
    parameters: f64,
    tokens: f64,
    hardware: Hardware,
    gpus: u64,
    utilisation: f64,
) -> Result<ComputeEstimate, String> {
    let Hardware::Gpu(gpu) = hardware else {
        return Err(
            "the speed of this machine comes from a training run: run one first (Train view)"
                .into(),
        );
    };
    check_positive("the number of parameters", parameters)?;
    check_positive("the number of tokens", tokens)?;
    check_positive("the GPU's peak", gpu.peak_tflops())?;
    check_utilisation(utilisation)?;
    if gpus == 0 {
        return Err("the number of GPUs must be at least 1".into());
    }
    let flops = training_flops(parameters, tokens);
    let achieved = gpu.peak_flops() * utilisation;
    let gpu_days = flops / achieved / SECONDS_PER_DAY;
    Ok(ComputeEstimate {
        parameters,
        tokens,
        flops,
        petaflop_s_days: petaflop_s_days(flops),
        gpu,
        gpus,
        utilisation,
        achieved_flops_per_gpu: achieved,
        gpu_days,
        wall_days: gpu_days / gpus as f64,
    })
}

/// This machine's speed, measured on a mini training run: the model's parameter count and the
/// tokens per second it trained at. Supplied by the caller (the Train view's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredRun {
    pub parameters: f64,
    pub tokens_per_second: f64,
}

/// What a measured run says about a big training job on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineEstimate {
    /// 6 · parameters · tokens/s of the measured run.
    pub achieved_flops_per_s: f64,
    /// Training operations of the target job.
    pub flops: f64,
    pub seconds: f64,
    pub days: f64,
    pub years: f64,
    /// How many times longer than the same job at a given reference (filled by
    /// [`MeasuredRun::estimate`] with one A100 at 100% peak, for scale).
    pub times_slower_than_one_a100: f64,
}

impl MeasuredRun {
    pub fn new(parameters: f64, tokens_per_second: f64) -> Result<Self, String> {
        check_positive("the measured run's parameter count", parameters)?;
        check_positive("the measured tokens per second", tokens_per_second)?;
        Ok(Self {
            parameters,
            tokens_per_second,
        })
    }

    /// Operations per second this machine achieved: 6 · parameters · tokens/s. For a tiny model
    /// this undercounts (attention and the softmax over the vocabulary weigh more when the model
    /// is small), so it is a lower bound of what the hardware did.
    pub fn achieved_flops_per_s(&self) -> f64 {
        training_flops(self.parameters, self.tokens_per_second)
    }

    /// Seconds this machine needs for `flops` operations at the measured rate.
    pub fn seconds_for(&self, flops: f64) -> f64 {
        flops / self.achieved_flops_per_s()
    }

    /// How long this machine would take to train `parameters` on `tokens`, at the measured rate.
    pub fn estimate(&self, parameters: f64, tokens: f64) -> Result<MachineEstimate, String> {
        check_positive("the measured run's parameter count", self.parameters)?;
        check_positive("the measured tokens per second", self.tokens_per_second)?;
        check_positive("the number of parameters", parameters)?;
        check_positive("the number of tokens", tokens)?;
        let flops = training_flops(parameters, tokens);
        let seconds = self.seconds_for(flops);
        let days = seconds / SECONDS_PER_DAY;
        Ok(MachineEstimate {
            achieved_flops_per_s: self.achieved_flops_per_s(),
            flops,
            seconds,
            days,
            years: days / 365.25,
            times_slower_than_one_a100: Gpu::A100.peak_flops() / self.achieved_flops_per_s(),
        })
    }
}

/// "3.14e23 FLOPs"-style scientific notation with three significant digits.
pub fn format_scientific(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let exponent = value.abs().log10().floor() as i32;
    let mantissa = value / 10f64.powi(exponent);
    // Rounding can carry the mantissa to 10.0.
    let (mantissa, exponent) = if (mantissa.abs() * 100.0).round() >= 1000.0 {
        (mantissa / 10.0, exponent + 1)
    } else {
        (mantissa, exponent)
    };
    format!("{mantissa:.2}e{exponent}")
}

/// A duration in seconds, in the largest sensible unit: "42 s", "3.5 hours", "12.3 days",
/// "266 years".
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "forever".into();
    }
    let minutes = seconds / 60.0;
    let hours = minutes / 60.0;
    let days = hours / 24.0;
    let years = days / 365.25;
    if seconds < 60.0 {
        format!("{seconds:.0} s")
    } else if minutes < 60.0 {
        format!("{minutes:.1} minutes")
    } else if hours < 48.0 {
        format!("{hours:.1} hours")
    } else if days < 2.0 * 365.25 {
        format!("{days:.1} days")
    } else if years < 10_000.0 {
        format!("{years:.0} years")
    } else {
        format!("{} years", format_scientific(years))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt3_matches_the_paper() {
        // GPT-3 paper, table D.1: 3.14e23 FLOPs, 3640 petaflop/s-days for 174.6B parameters.
        let flops = training_flops(174.6e9, 300e9);
        assert!((flops / 3.14e23 - 1.0).abs() < 0.005);
        assert!((petaflop_s_days(flops) / 3640.0 - 1.0).abs() < 0.005);
    }

    #[test]
    fn gpus_parse() {
        assert_eq!("A100".parse::<Gpu>(), Ok(Gpu::A100));
        assert_eq!("h100".parse::<Gpu>(), Ok(Gpu::H100Sxm));
        assert_eq!(
            "custom:500".parse::<Gpu>(),
            Ok(Gpu::Custom { peak_tflops: 500.0 })
        );
        assert!("tpu".parse::<Gpu>().is_err());
        assert!("custom:-3".parse::<Gpu>().is_err());
        assert_eq!(
            "this-machine".parse::<Hardware>(),
            Ok(Hardware::ThisMachine)
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(estimate(1e9, 1e9, Hardware::Gpu(Gpu::A100), 0, 0.4).is_err());
        assert!(estimate(1e9, 1e9, Hardware::Gpu(Gpu::A100), 1, 1.5).is_err());
        assert!(estimate(-1.0, 1e9, Hardware::Gpu(Gpu::A100), 1, 0.4).is_err());
        assert!(estimate(1e9, 1e9, Hardware::ThisMachine, 1, 0.4).is_err());
        assert!(MeasuredRun::new(0.0, 10.0).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_scientific(3.1415e23), "3.14e23");
        assert_eq!(format_scientific(9.999e5), "1.00e6");
        assert_eq!(format_duration(30.0), "30 s");
        assert_eq!(format_duration(3.0 * 86_400.0), "3.0 days");
    }
}
