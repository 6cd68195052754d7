//! Device choice: CPU always; CUDA and Metal when compiled with `--features cuda` / `metal`.

use candle_core::Device;

use crate::error::{GlassboxError, Result};

/// The devices this build can use, by name.
pub fn available_devices() -> Vec<&'static str> {
    let mut names = vec!["cpu"];
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    if cfg!(feature = "metal") {
        names.push("metal");
    }
    names
}

/// Parses `cpu`, `cuda`, `cuda:N`, `metal`.
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, n)) => (
            k,
            n.parse::<usize>().map_err(|_| {
                GlassboxError::InvalidInput(format!("bad device ordinal in {name:?}"))
            })?,
        ),
        None => (name, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" if cfg!(feature = "cuda") => Ok(Device::new_cuda(ordinal)?),
        "metal" if cfg!(feature = "metal") => Ok(Device::new_metal(ordinal)?),
        "cuda" | "metal" => Err(GlassboxError::InvalidInput(format!(
            "device {kind:?} is not compiled in; rebuild with `--features {kind}`"
        ))),
        other => Err(GlassboxError::InvalidInput(format!(
            "unknown device {other:?}; use one of {:?}",
            available_devices()
        ))),
    }
}
