//! Reading a `.safetensors` file: its header alone, or its tensors one at a time.
//!
//! A checkpoint is never read into memory whole. Each tensor is read from the file into its own
//! float32 buffer when a model asks for it, so loading a model takes about the weights' size in
//! memory, not twice that (the file's bytes and then the tensors built from them).
//!
//! Why positioned reads and not a memory map: candle's CPU tensors own their memory, so each
//! tensor is copied either way; the pages a map touches count towards the process's peak
//! memory until it is unmapped; and a file that shrinks while mapped kills the process with
//! SIGBUS instead of returning an error.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use crate::error::{GlassboxError, Result};

/// Bytes per element of a safetensors dtype.
fn dtype_bytes(dtype: &str) -> u64 {
    match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    }
}

/// The largest header the safetensors format allows (the crate's own limit).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderTensor {
    pub name: String,
    /// The stored type as safetensors names it: `F32`, `F16`, `BF16`, `I64`, ...
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Where its bytes are, relative to the end of the header.
    pub data_offsets: (u64, u64),
}

/// A `.safetensors` file's header: its tensors in file order, and how much data it promises.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    pub tensors: Vec<HeaderTensor>,
    /// Bytes of tensor data the header describes.
    pub data_len: u64,
    /// Bytes the file holds after the header.
    pub data_in_file: u64,
    /// Where the tensor data starts in the file (just after the header).
    data_start: u64,
    path: PathBuf,
}

impl SafetensorsHeader {
    /// Checks that the file is as long as the header says (a truncated download is not).
    pub fn check_complete(&self) -> Result<()> {
        if self.data_len != self.data_in_file {
            return Err(GlassboxError::CorruptSafetensors {
                path: self.path.clone(),
                message: format!(
                    "the header describes {} bytes of tensor data, but the file holds {}",
                    self.data_len, self.data_in_file
                ),
            });
        }
        Ok(())
    }

    /// Peak memory of loading every tensor as float32 through [`TensorFile`]: the float32
    /// tensors themselves, plus, for the largest tensor stored in another type, its bytes read
    /// and its stored-type copy before conversion (float32 tensors are converted in small
    /// chunks, never held twice).
    pub fn load_peak_bytes(&self) -> u64 {
        let mut as_f32 = 0u64;
        let mut largest_other = 0u64;
        for tensor in &self.tensors {
            let elements = tensor.elements();
            as_f32 = as_f32.saturating_add(elements.saturating_mul(4));
            if tensor.dtype != "F32" {
                largest_other =
                    largest_other.max(elements.saturating_mul(dtype_bytes(&tensor.dtype)));
            }
        }
        as_f32.saturating_add(largest_other.saturating_mul(2))
    }
}

impl HeaderTensor {
    fn elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |n, &d| n.saturating_mul(d as u64))
    }
}

/// Reads only the header of a `.safetensors` file, so it is quick even for multi-GB files (see
/// [`SafetensorsHeader::check_complete`] for the file's length).
pub fn read_header(path: &Path) -> Result<SafetensorsHeader> {
    let corrupt = |message: String| GlassboxError::CorruptSafetensors {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| GlassboxError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| GlassboxError::io(path, e))?
        .len();

    let mut length_bytes = [0u8; 8];
    file.read_exact(&mut length_bytes).map_err(|_| {
        corrupt(format!(
            "only {file_len} bytes, shorter than the 8-byte header length"
        ))
    })?;
    let header_len = u64::from_le_bytes(length_bytes);
    if header_len > MAX_SAFETENSORS_HEADER {
        return Err(corrupt(format!(
            "header length {header_len} is more than the {MAX_SAFETENSORS_HEADER} bytes safetensors allows"
        )));
    }
    let header_end = 8 + header_len;
    if header_end > file_len {
        return Err(corrupt(format!(
            "header claims {header_len} bytes, but the file has only {file_len}"
        )));
    }
    // Bounded by the checks above, so the allocation is at most 100 MB and no larger than the file.
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| GlassboxError::io(path, e))?;
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("unreadable header: {e}")))?;

    let tensors = metadata
        .offset_keys()
        .into_iter()
        .filter_map(|name| {
            let info = metadata.info(&name)?;
            Some(HeaderTensor {
                dtype: format!("{:?}", info.dtype),
                shape: info.shape.clone(),
                data_offsets: (info.data_offsets.0 as u64, info.data_offsets.1 as u64),
                name,
            })
        })
        .collect();
    Ok(SafetensorsHeader {
        tensors,
        data_len: metadata.data_len() as u64,
        data_in_file: file_len - header_end,
        data_start: header_end,
        path: path.to_path_buf(),
    })
}

/// A `.safetensors` file open for reading tensors one by one.
pub struct TensorFile {
    file: Mutex<File>,
    header: SafetensorsHeader,
    by_name: HashMap<String, usize>,
}

/// float32 values are converted from the file's little-endian bytes in chunks this size.
const READ_CHUNK_BYTES: usize = 1 << 16;

impl TensorFile {
    /// Opens `path` and reads its header; the file must be as long as the header says.
    pub fn open(path: &Path) -> Result<Self> {
        Self::with_header(read_header(path)?)
    }

    /// Opens the file `header` was read from (see [`TensorFile::open`]), for a caller that looked
    /// at the header first.
    pub fn with_header(header: SafetensorsHeader) -> Result<Self> {
        header.check_complete()?;
        let file = File::open(&header.path).map_err(|e| GlassboxError::io(&header.path, e))?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(index, tensor)| (tensor.name.clone(), index))
            .collect();
        Ok(Self {
            file: Mutex::new(file),
            header,
            by_name,
        })
    }

    pub fn header(&self) -> &SafetensorsHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.header.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The stored shape of the named tensor.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        let &index = self.by_name.get(name)?;
        Some(&self.header.tensors[index].shape)
    }

    /// Reads one tensor onto the CPU, in its stored type (float32 stays float32). `None` when
    /// the file has no tensor of that name.
    pub fn read(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(&index) = self.by_name.get(name) else {
            return Ok(None);
        };
        let tensor = &self.header.tensors[index];
        let (begin, end) = tensor.data_offsets;
        let path = self.path();
        let mut file = self
            .file
            .lock()
            .map_err(|_| GlassboxError::InvalidInput("weights file reader poisoned".into()))?;
        file.seek(SeekFrom::Start(self.header.data_start + begin))
            .map_err(|e| GlassboxError::io(path, e))?;
        let mut bytes = (&mut *file).take(end - begin);
        let read = if tensor.dtype == "F32" {
            read_f32(&mut bytes, &tensor.shape)
        } else {
            let dtype = candle_dtype(&tensor.dtype).ok_or_else(|| GlassboxError::BadWeights {
                path: path.to_path_buf(),
                name: name.to_string(),
                problem: format!(
                    "is stored as {}, which Glassbox cannot read; weights must be F32, F16 or BF16",
                    tensor.dtype
                ),
            })?;
            let mut raw = Vec::new();
            bytes
                .read_to_end(&mut raw)
                .map_err(|e| GlassboxError::io(path, e))?;
            Tensor::from_raw_buffer(&raw, dtype, &tensor.shape, &Device::Cpu)
                .map_err(GlassboxError::from)
        };
        read.map(Some).map_err(|e| match e {
            GlassboxError::Io { .. } => e,
            other => GlassboxError::CorruptSafetensors {
                path: path.to_path_buf(),
                message: format!("tensor {name}: {other}"),
            },
        })
    }

    /// Reads every tensor (for state that is all needed at once, such as optimizer moments).
    pub fn read_all(&self) -> Result<HashMap<String, Tensor>> {
        let mut tensors = HashMap::with_capacity(self.by_name.len());
        for tensor in &self.header.tensors {
            if let Some(read) = self.read(&tensor.name)? {
                tensors.insert(tensor.name.clone(), read);
            }
        }
        Ok(tensors)
    }
}

/// Reads a float32 tensor's little-endian bytes straight into its own buffer.
fn read_f32(bytes: &mut impl Read, shape: &[usize]) -> Result<Tensor> {
    let elements: usize = shape.iter().product();
    let mut values: Vec<f32> = Vec::with_capacity(elements);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES.min(elements * 4)];
    while values.len() < elements {
        let want = ((elements - values.len()) * 4).min(chunk.len());
        bytes.read_exact(&mut chunk[..want]).map_err(|e| {
            GlassboxError::InvalidInput(format!("the file ends inside the tensor ({e})"))
        })?;
        values.extend(
            chunk[..want]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// candle's type for a safetensors dtype name, for the types it can hold.
fn candle_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "F64" => DType::F64,
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn write(path: &Path, tensors: &[(&str, Tensor)]) {
        let map: BTreeMap<String, Tensor> = tensors
            .iter()
            .map(|(name, tensor)| (name.to_string(), tensor.clone()))
            .collect();
        crate::model::checkpoint::write_safetensors(path, &map).unwrap();
    }

    #[test]
    fn every_tensor_reads_back_in_its_stored_type() {
        let dir =
            std::env::temp_dir().join(format!("glassbox-weights-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        // Larger than one read chunk, so the chunked float32 read is exercised.
        let big: Vec<f32> = (0..3 * 70_001).map(|i| (i as f32).sin() * 1e3).collect();
        let big = Tensor::from_vec(big, (3, 70_001), &Device::Cpu).unwrap();
        let small = Tensor::new(&[1.5f32, -2.25, 3.0, 0.0, 7.0], &Device::Cpu).unwrap();
        write(
            &path,
            &[
                ("big", big.clone()),
                ("half", small.to_dtype(DType::F16).unwrap()),
                ("brain", small.to_dtype(DType::BF16).unwrap()),
                ("ids", Tensor::new(&[3i64, 4], &Device::Cpu).unwrap()),
                (
                    "empty",
                    Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap(),
                ),
            ],
        );
        let file = TensorFile::open(&path).unwrap();
        let read = |name: &str| file.read(name).unwrap().unwrap();
        assert_eq!(
            read("big").to_vec2::<f32>().unwrap(),
            big.to_vec2::<f32>().unwrap()
        );
        for name in ["half", "brain"] {
            let values = read(name).to_dtype(DType::F32).unwrap();
            assert_eq!(
                values.to_vec1::<f32>().unwrap(),
                small.to_vec1::<f32>().unwrap()
            );
        }
        assert_eq!(read("ids").to_vec1::<i64>().unwrap(), vec![3, 4]);
        assert_eq!(read("empty").dims(), &[0, 4]);
        assert!(file.read("absent").unwrap().is_none());
        assert_eq!(file.shape("big"), Some(&[3, 70_001][..]));
        assert_eq!(file.read_all().unwrap().len(), 5);
        // Every tensor as float32, plus twice the largest one stored otherwise (the I64's 16
        // bytes: read, then built in its own type).
        let f32_bytes = 4 * (3 * 70_001 + 5 + 5 + 2);
        assert_eq!(file.header().load_peak_bytes(), f32_bytes + 2 * 16);

        // A file cut short after opening is an error naming the tensor, not a crash.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let error = file.read_all().unwrap_err().to_string();
        assert!(
            error.contains("ends inside the tensor") || error.contains("big"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
