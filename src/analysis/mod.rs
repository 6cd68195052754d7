//! What views show that is computed — PCA, similarities, next-token data, QA answers — as a library: the views only draw it,
//! and the CLI and tests call the same functions (see DESIGN.md).

pub mod embeddings;
pub mod finetune;
pub mod predict;
pub mod tokens;
