//! SentencePiece (Unigram) tokenizers read from a `.spm` model file, as Marian translation
//! models ship them (`source.spm`, `target.spm`, with a shared `vocab.json`).
//!
//! A `.spm` file is SentencePiece's `ModelProto` protobuf: the pieces with their scores and
//! types, and the normalizer spec (a precompiled character map, e.g. `nmt_nfkc`, and the
//! whitespace rules). Encoding does what SentencePiece does: normalize with the character map,
//! drop extra whitespace, add the dummy `▁` prefix, turn spaces into `▁`, split before each `▁`,
//! and pick each word's most probable segmentation (Viterbi over the piece scores, unknown
//! characters fused into one `<unk>`). The pieces are then looked up in `vocab.json`, as
//! `transformers`' `MarianTokenizer` does, and `</s>` is appended.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;

use crate::error::{GlassboxError, Result};

/// The word-boundary mark SentencePiece puts in place of a space.
pub const SPACE_MARK: char = '▁';

/// What a piece is in a SentencePiece model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(value: u64) -> Self {
        match value {
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => PieceType::Normal,
        }
    }
}

/// One piece of the model: its text, its log-probability score and its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The contents of a `.spm` file that encoding needs.
#[derive(Debug, Clone)]
pub struct SpmModel {
    pub pieces: Vec<Piece>,
    /// Normalization rule name (`nmt_nfkc`, `identity`, ...).
    pub normalizer_name: String,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

/// A minimal protobuf reader: the wire format's varints and length-delimited fields.
struct Proto<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// A field's value as the wire format carries it.
enum Value<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Proto<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or("the file ends inside a number")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or("a field runs past the end of the file")?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// The next (field number, value), or `None` at the end.
    fn field(&mut self) -> std::result::Result<Option<(u64, Value<'a>)>, String> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?; // no field SentencePiece needs is 64-bit
                Value::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "field too long")?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().map_err(|_| "short field")?))
            }
            other => return Err(format!("unsupported protobuf wire type {other}")),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn utf8(bytes: &[u8], what: &str) -> std::result::Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

impl SpmModel {
    /// Reads a `.spm` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| GlassboxError::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|message| {
            GlassboxError::Tokenizer(format!(
                "{}: not a readable SentencePiece model: {message}",
                path.display()
            ))
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut model = SpmModel {
            pieces: Vec::new(),
            normalizer_name: String::new(),
            precompiled_charsmap: Vec::new(),
            // The protobuf defaults.
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        };
        let mut proto = Proto::new(bytes);
        while let Some((field, value)) = proto.field()? {
            match (field, value) {
                (1, Value::Bytes(piece)) => model.pieces.push(read_piece(piece)?),
                (3, Value::Bytes(spec)) => model.read_normalizer_spec(spec)?,
                _ => {} // trainer spec, self-test data, denormalizer: not needed to encode
            }
        }
        if model.pieces.is_empty() {
            return Err("it has no pieces".into());
        }
        Ok(model)
    }

    fn read_normalizer_spec(&mut self, spec: &[u8]) -> std::result::Result<(), String> {
        let mut proto = Proto::new(spec);
        while let Some((field, value)) = proto.field()? {
            match (field, value) {
                (1, Value::Bytes(name)) => {
                    self.normalizer_name = utf8(name, "the normalizer name")?
                }
                (2, Value::Bytes(map)) => self.precompiled_charsmap = map.to_vec(),
                (3, Value::Varint(v)) => self.add_dummy_prefix = v != 0,
                (4, Value::Varint(v)) => self.remove_extra_whitespaces = v != 0,
                (5, Value::Varint(v)) => self.escape_whitespaces = v != 0,
                _ => {}
            }
        }
        Ok(())
    }
}

fn read_piece(bytes: &[u8]) -> std::result::Result<Piece, String> {
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut proto = Proto::new(bytes);
    while let Some((field, value)) = proto.field()? {
        match (field, value) {
            (1, Value::Bytes(text)) => piece.piece = utf8(text, "a piece")?,
            (2, Value::Fixed32(bits)) => piece.score = f32::from_bits(bits),
            (3, Value::Varint(kind)) => piece.kind = PieceType::from_proto(kind),
            _ => {}
        }
    }
    Ok(piece)
}

/// A SentencePiece model with the `vocab.json` that numbers its pieces.
pub struct SentencePiece {
    model: SpmModel,
    normalizer: Option<Precompiled>,
    unigram: Unigram,
    vocab: HashMap<String, u32>,
    id_to_piece: HashMap<u32, String>,
    unk_id: u32,
    eos_id: u32,
    pad_id: Option<u32>,
    pub path: PathBuf,
}

impl std::fmt::Debug for SentencePiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentencePiece")
            .field("path", &self.path)
            .field("pieces", &self.model.pieces.len())
            .field("vocab", &self.vocab.len())
            .finish()
    }
}

/// One encoded text: the pieces SentencePiece chose and their `vocab.json` ids (`</s>` last).
#[derive(Debug, Clone, PartialEq)]
pub struct SpmEncoding {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
}

impl SentencePiece {
    /// Reads `spm` and `vocab_json` (a JSON object from piece to id, with `</s>` and `<unk>`).
    pub fn from_files(spm: &Path, vocab_json: &Path) -> Result<Self> {
        let model = SpmModel::from_file(spm)?;
        let text = crate::util::read_text(vocab_json)?;
        let vocab: HashMap<String, u32> =
            serde_json::from_str(&text).map_err(|e| GlassboxError::BadConfig {
                path: vocab_json.to_path_buf(),
                message: format!("expected a JSON object from piece to id: {e}"),
            })?;
        let id_of = |piece: &str| {
            vocab
                .get(piece)
                .copied()
                .ok_or_else(|| GlassboxError::BadConfig {
                    path: vocab_json.to_path_buf(),
                    message: format!("it has no {piece:?}, which a Marian vocabulary needs"),
                })
        };
        let unk_id = id_of("<unk>")?;
        let eos_id = id_of("</s>")?;
        let pad_id = vocab.get("<pad>").copied();
        let bad =
            |message: String| GlassboxError::Tokenizer(format!("{}: {message}", spm.display()));
        let normalizer = if model.precompiled_charsmap.is_empty() {
            None
        } else {
            Some(
                Precompiled::from(&model.precompiled_charsmap)
                    .map_err(|e| bad(format!("unreadable character map: {e}")))?,
            )
        };
        let spm_unk = model
            .pieces
            .iter()
            .position(|p| p.kind == PieceType::Unknown);
        let scored: Vec<(String, f64)> = model
            .pieces
            .iter()
            .map(|p| (p.piece.clone(), f64::from(p.score)))
            .collect();
        let unigram = Unigram::from(scored, spm_unk, false).map_err(|e| bad(e.to_string()))?;
        let id_to_piece = vocab.iter().map(|(p, &id)| (id, p.clone())).collect();
        Ok(Self {
            model,
            normalizer,
            unigram,
            vocab,
            id_to_piece,
            unk_id,
            eos_id,
            pad_id,
            path: spm.to_path_buf(),
        })
    }

    /// The text as SentencePiece sees it before segmentation: normalized, whitespace tidied,
    /// `▁` for each space (and in front, the dummy prefix).
    pub fn normalize(&self, text: &str) -> String {
        let normalized = match &self.normalizer {
            Some(map) => map.normalize_string(text),
            None => text.to_string(),
        };
        let mut tidy = if self.model.remove_extra_whitespaces {
            normalized
                .split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            normalized
        };
        if self.model.add_dummy_prefix && !tidy.is_empty() {
            tidy.insert(0, ' ');
        }
        if self.model.escape_whitespaces {
            tidy = tidy.replace(' ', &SPACE_MARK.to_string());
        }
        tidy
    }

    /// The pieces of `text` (without `</s>`).
    pub fn pieces(&self, text: &str) -> Result<Vec<String>> {
        let normalized = self.normalize(text);
        let mut pieces = Vec::new();
        // A piece never spans a word boundary: each word starts at a `▁`.
        for word in split_before_marks(&normalized) {
            let segmented = self
                .unigram
                .encode(word)
                .map_err(|e| GlassboxError::Tokenizer(e.to_string()))?;
            pieces.extend(segmented);
        }
        Ok(pieces)
    }

    /// Encodes `text` as `MarianTokenizer` does: pieces, their `vocab.json` ids (unknown pieces
    /// become `<unk>`), then `</s>`.
    pub fn encode(&self, text: &str) -> Result<SpmEncoding> {
        let mut tokens = Vec::new();
        let mut ids = Vec::new();
        for piece in self.pieces(text)? {
            match self.vocab.get(&piece) {
                Some(&id) => {
                    ids.push(id);
                    tokens.push(piece);
                }
                None => {
                    ids.push(self.unk_id);
                    tokens.push("<unk>".into());
                }
            }
        }
        ids.push(self.eos_id);
        tokens.push("</s>".into());
        Ok(SpmEncoding { ids, tokens })
    }

    /// The piece of a `vocab.json` id.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.id_to_piece.get(&id).map(String::as_str)
    }

    /// Ids back to text: pieces joined, `▁` as spaces, special tokens (`</s>`, `<pad>`) left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        let text: String = ids
            .iter()
            .filter(|&&id| id != self.eos_id && Some(id) != self.pad_id)
            .map(|&id| match self.id_to_piece(id) {
                Some(piece) if id == self.unk_id => format!("{piece} "),
                Some(piece) => piece.to_string(),
                None => String::new(),
            })
            .collect();
        text.replace(SPACE_MARK, " ").trim().to_string()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }
}

/// One way to cut a word into pieces, with its score (the sum of the pieces' log-probabilities).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segmentation {
    pub pieces: Vec<String>,
    pub score: f64,
}

/// How Unigram chose a word's pieces: the best candidate segmentations, best first. The first
/// is the one encoding uses (unless the word needs `<unk>`, when no candidate covers it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WordChoice {
    pub word: String,
    pub candidates: Vec<Segmentation>,
    pub chosen: Vec<String>,
}

impl SentencePiece {
    /// For each word of `text` (after normalization), the `n` best segmentations into known
    /// pieces with their scores, and the pieces encoding chose.
    pub fn explain(&self, text: &str, n: usize) -> Result<Vec<WordChoice>> {
        let scores: HashMap<&str, f64> = self
            .model
            .pieces
            .iter()
            .filter(|p| matches!(p.kind, PieceType::Normal | PieceType::UserDefined))
            .map(|p| (p.piece.as_str(), f64::from(p.score)))
            .collect();
        let normalized = self.normalize(text);
        split_before_marks(&normalized)
            .into_iter()
            .map(|word| {
                let chosen = self
                    .unigram
                    .encode(word)
                    .map_err(|e| GlassboxError::Tokenizer(e.to_string()))?;
                Ok(WordChoice {
                    word: word.to_string(),
                    candidates: n_best(word, &scores, n),
                    chosen,
                })
            })
            .collect()
    }
}

/// The `n` highest-scoring ways to cut `word` into pieces of `scores` (a k-best Viterbi: for
/// each end position, the `n` best paths that reach it).
fn n_best(word: &str, scores: &HashMap<&str, f64>, n: usize) -> Vec<Segmentation> {
    let bounds: Vec<usize> = word
        .char_indices()
        .map(|(i, _)| i)
        .chain([word.len()])
        .collect();
    // best[k]: up to n (score, pieces) for the prefix ending at bounds[k].
    let mut best: Vec<Vec<(f64, Vec<String>)>> = vec![Vec::new(); bounds.len()];
    best[0].push((0.0, Vec::new()));
    for end in 1..bounds.len() {
        let mut found = Vec::new();
        for start in 0..end {
            let piece = &word[bounds[start]..bounds[end]];
            let Some(&score) = scores.get(piece) else {
                continue;
            };
            for (prefix_score, pieces) in &best[start] {
                let mut pieces = pieces.clone();
                pieces.push(piece.to_string());
                found.push((prefix_score + score, pieces));
            }
        }
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        found.truncate(n);
        best[end] = found;
    }
    best.pop()
        .unwrap_or_default()
        .into_iter()
        .map(|(score, pieces)| Segmentation { pieces, score })
        .collect()
}

/// `▁a▁bc` → [`▁a`, `▁bc`]; text before the first mark is a word of its own.
fn split_before_marks(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == SPACE_MARK && i > start {
            words.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        words.push(&text[start..]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_before_each_mark() {
        assert_eq!(split_before_marks("▁a▁bc"), vec!["▁a", "▁bc"]);
        assert_eq!(split_before_marks("x▁y"), vec!["x", "▁y"]);
        assert_eq!(split_before_marks("▁▁a"), vec!["▁", "▁a"]);
    }

    #[test]
    fn n_best_ranks_segmentations_by_score() {
        let scores = HashMap::from([
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -2.0),
            ("ab", -2.5),
            ("▁a", -1.5),
        ]);
        let best = n_best("▁ab", &scores, 3);
        let pieces: Vec<Vec<&str>> = best
            .iter()
            .map(|s| s.pieces.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            pieces,
            vec![vec!["▁", "ab"], vec!["▁a", "b"], vec!["▁", "a", "b"]]
        );
        assert_eq!(best[0].score, -3.5);
        assert!(n_best("▁z", &scores, 3).is_empty());
    }

    #[test]
    fn protobuf_fields_are_read() {
        // piece { piece: "ab", score: -1.5, type: NORMAL }, normalizer_spec { name: "x",
        // add_dummy_prefix: false }
        let mut piece = vec![0x0a, 2, b'a', b'b', 0x15];
        piece.extend_from_slice(&(-1.5f32).to_bits().to_le_bytes());
        piece.extend_from_slice(&[0x18, 1]);
        let mut bytes = vec![0x0a, piece.len() as u8];
        bytes.extend_from_slice(&piece);
        bytes.extend_from_slice(&[0x1a, 5, 0x0a, 1, b'x', 0x18, 0]);
        let model = SpmModel::from_bytes(&bytes).unwrap();
        assert_eq!(model.pieces[0].piece, "ab");
        assert_eq!(model.pieces[0].score, -1.5);
        assert_eq!(model.normalizer_name, "x");
        assert!(!model.add_dummy_prefix);
        assert!(model.remove_extra_whitespaces);
        assert!(SpmModel::from_bytes(&[0x0a, 9, 1]).is_err());
    }
}
