//! Data for training: corpora and the user's CSV/JSON(L) files ([`files`]), built-in generated
//! data sets ([`builtin`]), train/validation splits ([`split`]), batching ([`batching`]) and BERT's
//! masked-LM and next-sentence inputs ([`masking`]), and parallel corpora for translation
//! ([`parallel`]).
//!
//! Nothing here knows about tokenizers or tensors: text in, examples out; ids in, ids out.

pub mod batching;
pub mod builtin;
pub mod files;
pub mod masking;
pub mod parallel;
pub mod split;

pub use batching::{LmBatch, TokenStream, pad_batch};
pub use builtin::{
    generation_dataset, nsp_documents, qa_dataset, sentiment_dataset, tokenizer_corpus,
    toy_english_corpus,
};
pub use files::{
    ClassificationExample, GenerationExample, QaExample, RowError, label_names,
    parse_classification_csv, parse_generation_jsonl, parse_qa, read_classification_csv,
    read_corpus, read_generation_jsonl, read_qa,
};
pub use masking::{IGNORE_INDEX, MaskingConfig, NspPair, make_nsp_pairs, mask_tokens};
pub use parallel::{
    ParallelFormat, TranslationPair, parallel_corpus, parse_parallel, read_parallel,
};
pub use split::{split_text, train_val_split};
