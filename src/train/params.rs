//! The trainable tensors of a model, by their `transformers` names.
//!
//! [`ParamStore`] is a `VarBuilder` backend: `Model::new` asks it for each tensor, and it hands
//! out a variable that is either loaded from a checkpoint or freshly initialised. Fresh values come
//! from a generator seeded by (run seed, tensor name), not from candle's unseeded CPU generator, so
//! a fixed seed gives the same weights on every run and in every order of construction.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::Init;
use candle_nn::var_builder::SimpleBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{GlassboxError, Result};

/// Tensors to start from, and how their names differ from ours.
#[derive(Debug, Default, Clone)]
pub struct Pretrained {
    pub tensors: HashMap<String, Tensor>,
    /// Our prefix (`bert.`, `transformer.`) when the checkpoint stores the encoder without it
    /// (all-MiniLM-L6-v2, bare `GPT2Model` files).
    pub strip_prefix: Option<String>,
    /// For messages: the file the tensors came from.
    pub source: String,
}

impl Pretrained {
    fn lookup(&self, name: &str) -> Option<&Tensor> {
        let stored_name = match &self.strip_prefix {
            Some(prefix) => name.strip_prefix(prefix.as_str()).unwrap_or(name),
            None => name,
        };
        self.tensors.get(stored_name)
    }
}

#[derive(Debug, Default)]
struct StoreInner {
    vars: BTreeMap<String, Var>,
    /// Names that were initialised fresh rather than loaded (e.g. a new classifier head).
    fresh: Vec<String>,
    /// The first problem met (a wrong shape, say), typed, since candle only carries strings.
    first_error: Option<GlassboxError>,
}

/// Every trainable tensor, created on demand by `Model::new`.
#[derive(Debug, Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<StoreInner>>,
    pretrained: Arc<Pretrained>,
    seed: u64,
}

impl ParamStore {
    pub fn new(seed: u64, pretrained: Pretrained) -> Self {
        Self {
            inner: Arc::new(Mutex::new(StoreInner::default())),
            pretrained: Arc::new(pretrained),
            seed,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, StoreInner>> {
        self.inner
            .lock()
            .map_err(|_| GlassboxError::Training("parameter store lock poisoned".into()))
    }

    /// A `VarBuilder` over this store, for `Model::new`.
    pub fn var_builder(&self, device: &Device) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// The typed error behind a failed `Model::new`, if the store recorded one.
    pub fn take_error(&self) -> Option<GlassboxError> {
        self.lock()
            .ok()
            .and_then(|mut inner| inner.first_error.take())
    }

    /// All variables by name, in name order (so the optimizer's order is fixed).
    pub fn vars(&self) -> Result<Vec<(String, Var)>> {
        Ok(self
            .lock()?
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect())
    }

    /// The current values by name, ready for `save_dir`.
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(self
            .lock()?
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect())
    }

    /// Names initialised fresh rather than loaded from the checkpoint.
    pub fn fresh_names(&self) -> Result<Vec<String>> {
        let mut names = self.lock()?.fresh.clone();
        names.sort();
        Ok(names)
    }

    fn fail(&self, error: GlassboxError) -> candle_core::Error {
        let message = error.to_string();
        if let Ok(mut inner) = self.inner.lock()
            && inner.first_error.is_none()
        {
            inner.first_error = Some(error);
        }
        candle_core::Error::Msg(message)
    }
}

impl SimpleBackend for ParamStore {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| candle_core::Error::Msg("parameter store lock poisoned".into()))?;
        // Asked twice (tied weights): the same variable both times.
        if let Some(var) = inner.vars.get(name) {
            if var.dims() != shape.dims() {
                candle_core::bail!(
                    "tensor `{name}` requested with shape {:?} and {:?}",
                    var.dims(),
                    shape.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let value = match self.pretrained.lookup(name) {
            Some(stored) => {
                if stored.dims() != shape.dims() {
                    drop(inner);
                    return Err(self.fail(GlassboxError::WrongShape {
                        path: self.pretrained.source.clone().into(),
                        name: name.to_string(),
                        expected: shape.dims().to_vec(),
                        found: stored.dims().to_vec(),
                    }));
                }
                let source = PathBuf::from(&self.pretrained.source);
                match crate::model::checkpoint::checked_weight(&source, name, stored) {
                    Ok(weight) => weight.to_dtype(dtype)?.to_device(device)?,
                    Err(error) => {
                        drop(inner);
                        return Err(self.fail(error));
                    }
                }
            }
            None => {
                inner.fresh.push(name.to_string());
                seeded_init(&shape, name, &init, self.seed)?
                    .to_dtype(dtype)?
                    .to_device(device)?
            }
        };
        // A copy, so training never writes into the caller's (or the checkpoint's) tensor.
        let var = Var::from_tensor(&value.copy()?)?;
        let tensor = var.as_tensor().clone();
        inner.vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let inner = self
            .inner
            .lock()
            .map_err(|_| candle_core::Error::Msg("parameter store lock poisoned".into()))?;
        match inner.vars.get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype)?.to_device(device),
            None => match self.pretrained.lookup(name) {
                Some(t) => t.to_dtype(dtype)?.to_device(device),
                None => candle_core::bail!("no tensor `{name}`"),
            },
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner
            .lock()
            .map(|inner| inner.vars.contains_key(name))
            .unwrap_or(false)
            || self.pretrained.lookup(name).is_some()
    }
}

/// FNV-1a: a stable hash of a name (std's hasher may change between Rust versions).
fn stable_hash(text: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A fresh tensor for `name`, from a generator seeded by the run seed and the name.
fn seeded_init(shape: &Shape, name: &str, init: &Init, seed: u64) -> candle_core::Result<Tensor> {
    let count = shape.elem_count();
    let mut rng = StdRng::seed_from_u64(seed ^ stable_hash(name));
    let values: Vec<f32> = match *init {
        Init::Const(value) => vec![value as f32; count],
        Init::Randn { mean, stdev } => (0..count)
            .map(|_| (mean + stdev * standard_normal(&mut rng)) as f32)
            .collect(),
        Init::Uniform { lo, up } => (0..count)
            .map(|_| (lo + (up - lo) * rng.random::<f64>()) as f32)
            .collect(),
        Init::Kaiming { .. } => {
            // Not used by any model here; a plain fan-in scaled normal is the same idea.
            let fan_in = shape.dims().iter().skip(1).product::<usize>().max(1);
            let stdev = (2.0 / fan_in as f64).sqrt();
            (0..count)
                .map(|_| (stdev * standard_normal(&mut rng)) as f32)
                .collect()
        }
    };
    Tensor::from_vec(values, shape.clone(), &Device::Cpu)
}

/// A standard normal sample by the Box–Muller transform.
fn standard_normal(rng: &mut StdRng) -> f64 {
    // 1 - u keeps the logarithm's argument in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
