//! A map of a whole model, for the Model view: token ids → embeddings → the layers of each
//! stack (one representative layer, "× N layers") → the heads, as an ordered list of boxes.
//!
//! Each box says what it is, the shape of the tensor it hands on (with the current text's token
//! count, or the symbol `T`), its parameters (taken from the model's [`ParamBreakdown`], the
//! same table the Parameters view shows) and the Step-through stage it opens. The structure comes
//! from the family's declaration ([`Family`]): its stacks, their attention sublayers, where
//! LayerNorm sits (pre-LN: before each sublayer, a final LayerNorm; post-LN: after each residual
//! add), its position scheme and segments. Drawing is the app's business.

use crate::model::config::{FamilyConfig, ModelConfig};
use crate::model::family::{
    AttentionKind, Family, NormPlacement, PositionScheme, StackRole, Stage,
};
use crate::model::params::{
    ArchSpec, HeadSite, ParamBreakdown, ParamRow, ParamSite, Sublayer, group_thousands,
};

/// What a box is (for its colour and its shape on screen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxKind {
    /// Token ids from the tokenizer.
    Input,
    /// An embedding table or a position encoding.
    Embedding,
    LayerNorm,
    Attention(AttentionKind),
    FeedForward,
    /// `x + sublayer(…)`.
    Residual,
    /// LM / MLM head, pooler, classifiers.
    Head,
}

/// The Step-through stage a box opens: as [`Stage`] plus layer and stack of the view's
/// `StageRef` (`encoder`: an encoder–decoder's encoder; false for single-stack models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTarget {
    pub stage: Stage,
    pub layer: Option<usize>,
    pub encoder: bool,
}

/// One box of the map.
#[derive(Debug, Clone, PartialEq)]
pub struct MapBox {
    pub kind: BoxKind,
    /// Unique in the map (the stack is named in an encoder–decoder): "decoder: cross-attention".
    pub name: String,
    /// What the box says: "causal self-attention".
    pub label: String,
    /// One line under it: "4 heads of 16", "466 × 64 table".
    pub detail: String,
    /// The shape of the tensor the box hands on: "[7, 64]" or "[T, 64]".
    pub output: String,
    /// A shape inside the box: attention scores `[heads, T, T]`, the MLP's `[T, F]`.
    pub inner: Option<String>,
    /// Parameters of all its copies (every layer), from the breakdown.
    pub params_total: u64,
    /// How many layers it repeats in (1 outside the layers).
    pub copies: u64,
    /// "tied to the token embeddings", "fixed sinusoids, not trained".
    pub note: Option<String>,
    pub stage: Option<StageTarget>,
    /// A residual add: the index (in the same list) of the box whose input it adds back.
    pub skip_from: Option<usize>,
    /// Cross-attention: reads the encoder's output as keys and values.
    pub reads_encoder: bool,
}

impl MapBox {
    /// Parameters of one copy (one layer).
    pub fn params(&self) -> u64 {
        self.params_total / self.copies.max(1)
    }

    /// "16,640 parameters" / "0 parameters".
    pub fn params_text(&self) -> String {
        format!("{} parameters", group_thousands(self.params()))
    }
}

/// One stack: its embeddings, one representative layer, what follows the layers.
#[derive(Debug, Clone, PartialEq)]
pub struct MapStack {
    pub role: StackRole,
    /// "decoder", "encoder (reads the source)".
    pub title: String,
    pub embeddings: Vec<MapBox>,
    /// One layer's boxes, in order; every layer has them.
    pub layer: Vec<MapBox>,
    pub layers: u64,
    /// After the last layer (GPT-2's final LayerNorm).
    pub after: Vec<MapBox>,
}

impl MapStack {
    /// Parameters of one layer.
    pub fn layer_params(&self) -> u64 {
        self.layer.iter().map(MapBox::params).sum()
    }

    pub fn boxes(&self) -> impl Iterator<Item = &MapBox> {
        self.embeddings.iter().chain(&self.layer).chain(&self.after)
    }
}

/// The whole map.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMap {
    /// Encoder first, then decoder (as the family declares them).
    pub stacks: Vec<MapStack>,
    /// Heads on the output stack's last hidden state: each branch runs top to bottom
    /// (pooler → NSP), the branches side by side.
    pub heads: Vec<Vec<MapBox>>,
    /// What the row symbols stand for: "T = 7 tokens of the current text".
    pub legend: String,
    /// The breakdown's exact total.
    pub total: u64,
    /// Rows of the breakdown no box shows (none, unless a family is missing from the map).
    pub unplaced: Vec<String>,
}

impl ModelMap {
    /// Every box in drawing order: each stack (embeddings, layer, after), then the heads.
    pub fn boxes(&self) -> impl Iterator<Item = &MapBox> {
        self.stacks
            .iter()
            .flat_map(MapStack::boxes)
            .chain(self.heads.iter().flatten())
    }

    /// The parameters the boxes show, every layer counted: equals [`Self::total`].
    pub fn mapped_total(&self) -> u64 {
        self.boxes().map(|b| b.params_total).sum()
    }

    pub fn find(&self, name: &str) -> Option<&MapBox> {
        self.boxes().find(|b| b.name == name)
    }
}

/// The current text's token counts, where known (else the map writes `T` and `S`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Rows of the output stack (an encoder–decoder's decoder input).
    pub tokens: Option<usize>,
    /// An encoder–decoder's source tokens.
    pub source_tokens: Option<usize>,
}

/// The map of a loaded model, its parameters from `breakdown` (the model's
/// [`crate::model::params::breakdown_for_config`]).
pub fn model_map(
    config: &ModelConfig,
    breakdown: &ParamBreakdown,
    counts: TokenCounts,
) -> ModelMap {
    let family = config.family();
    let two_stacks = family.stacks.len() > 1;
    let source = Rows::new("S", counts.source_tokens);
    let target = Rows::new("T", counts.tokens);
    let mut builder = MapBuilder {
        config,
        family,
        spec: breakdown.spec,
        rows: &breakdown.rows,
        used: vec![false; breakdown.rows.len()],
        two_stacks,
        source,
    };
    let rows_of = |role: StackRole| {
        if two_stacks && role == StackRole::Encoder {
            source
        } else {
            target
        }
    };
    let stacks: Vec<MapStack> = family
        .stacks
        .iter()
        .map(|stack| builder.stack(stack.role, rows_of(stack.role)))
        .collect();
    let heads = builder.heads(breakdown, target);
    let unplaced = breakdown
        .rows
        .iter()
        .zip(&builder.used)
        .filter(|(_, used)| !**used)
        .map(|(row, _)| row.component.clone())
        .collect();
    let legend = legend(two_stacks, counts);
    ModelMap {
        stacks,
        heads,
        legend,
        total: breakdown.exact_total,
        unplaced,
    }
}

fn legend(two_stacks: bool, counts: TokenCounts) -> String {
    let count = |n: Option<usize>, what: &str, symbol: &str| match n {
        Some(n) => format!("{symbol} = {n} {what} of the current text"),
        None => format!("{symbol} = the number of {what}"),
    };
    if two_stacks {
        format!(
            "{}; {}",
            count(counts.source_tokens, "source tokens", "S"),
            count(counts.tokens, "target tokens", "T")
        )
    } else {
        count(counts.tokens, "tokens", "T")
    }
}

/// The row dimension of a stack's tensors: a count, or its symbol.
#[derive(Debug, Clone, Copy)]
struct Rows {
    symbol: &'static str,
    count: Option<usize>,
}

impl Rows {
    fn new(symbol: &'static str, count: Option<usize>) -> Self {
        Self { symbol, count }
    }

    fn text(self) -> String {
        self.count
            .map_or_else(|| self.symbol.to_string(), |n| n.to_string())
    }

    /// `[T, 64]`, `[T]` with no `dims`.
    fn shape(self, dims: &[u64]) -> String {
        let mut parts = vec![self.text()];
        parts.extend(dims.iter().map(u64::to_string));
        format!("[{}]", parts.join(", "))
    }
}

/// The parameters the rows at some sites hold.
#[derive(Debug, Clone, Copy, Default)]
struct Taken {
    total: u64,
    copies: u64,
    frozen: bool,
}

struct MapBuilder<'a> {
    config: &'a ModelConfig,
    family: &'static Family,
    spec: ArchSpec,
    rows: &'a [ParamRow],
    used: Vec<bool>,
    two_stacks: bool,
    /// The encoder's rows (an encoder–decoder's source), for cross-attention's scores.
    source: Rows,
}

impl MapBuilder<'_> {
    /// Takes the rows at the sites `wanted` accepts (each row once).
    fn take(&mut self, wanted: impl Fn(ParamSite) -> bool) -> Taken {
        let mut taken = Taken {
            copies: 1,
            ..Taken::default()
        };
        for (row, used) in self.rows.iter().zip(self.used.iter_mut()) {
            if !*used && row.site.is_some_and(&wanted) {
                *used = true;
                taken.total = taken.total.saturating_add(row.exact);
                taken.copies = taken.copies.max(row.copies);
                taken.frozen |= row.frozen;
            }
        }
        taken
    }

    /// The stack key rows of `role` carry: `None` in a single-stack model.
    fn stack_key(&self, role: StackRole) -> Option<StackRole> {
        self.two_stacks.then_some(role)
    }

    /// "decoder: LayerNorm" in an encoder–decoder, "LayerNorm" otherwise.
    fn name(&self, role: Option<StackRole>, label: &str) -> String {
        match role {
            Some(role) if self.two_stacks => format!("{}: {label}", role.name()),
            _ => label.to_string(),
        }
    }

    /// The stage, if the stack declares it.
    fn target(&self, role: StackRole, stage: Stage, layer: Option<usize>) -> Option<StageTarget> {
        let stack = self.family.stack(role)?;
        stack.stages.contains(&stage).then_some(StageTarget {
            stage,
            layer,
            encoder: self.two_stacks && role == StackRole::Encoder,
        })
    }

    fn heads_of(&self, role: StackRole) -> usize {
        match &self.config.family {
            FamilyConfig::Marian(c) if role == StackRole::Encoder => c.encoder_attention_heads,
            _ => self.config.num_heads(),
        }
    }

    fn ffn_width(&self, role: StackRole) -> u64 {
        match self.spec {
            ArchSpec::EncoderDecoder {
                encoder_intermediate,
                ..
            } if role == StackRole::Encoder => encoder_intermediate,
            spec => spec.intermediate(),
        }
    }

    fn stack(&mut self, role: StackRole, rows: Rows) -> MapStack {
        let h = self.spec.hidden();
        let title = if self.two_stacks {
            match role {
                StackRole::Encoder => "encoder (reads the source)".to_string(),
                StackRole::Decoder => "decoder (writes the target)".to_string(),
            }
        } else {
            role.name().to_string()
        };
        let embeddings = self.embeddings(role, rows);
        let layer = self.layer(role, rows);
        let mut after = Vec::new();
        let is_output = self.family.output_stack().role == role;
        if is_output && self.family.norm == NormPlacement::Pre {
            let taken = self.take(|site| site == ParamSite::FinalNorm);
            after.push(make_box(
                BoxKind::LayerNorm,
                self.name(Some(role), "final LayerNorm"),
                "final LayerNorm",
                "after the last layer".to_string(),
                rows.shape(&[h]),
                taken,
                self.target(role, Stage::FinalNorm, None),
            ));
        }
        MapStack {
            role,
            title,
            embeddings,
            layer,
            layers: self.config.stack_layers(role) as u64,
            after,
        }
    }

    fn embeddings(&mut self, role: StackRole, rows: Rows) -> Vec<MapBox> {
        let h = self.spec.hidden();
        let key = self.stack_key(role);
        let mut boxes = Vec::new();
        let ids = match (self.two_stacks, role) {
            (true, StackRole::Encoder) => "source token ids",
            (true, StackRole::Decoder) => "target token ids",
            _ => "token ids",
        };
        boxes.push(make_box(
            BoxKind::Input,
            self.name(Some(role), ids),
            ids,
            "from the tokenizer".to_string(),
            rows.shape(&[]),
            Taken::default(),
            None,
        ));

        // A table every stack shares is counted where it is first used.
        let first_stack = self.family.stacks.first().map(|s| s.role) == Some(role);
        let tokens = self.take(|site| match site {
            ParamSite::TokenEmbeddings { stack } => {
                stack == key || (stack.is_none() && first_stack)
            }
            _ => false,
        });
        let vocab = match (self.spec, role) {
            (
                ArchSpec::EncoderDecoder {
                    target_vocab: Some(target),
                    ..
                },
                StackRole::Decoder,
            ) => target,
            (spec, _) => spec.vocab(),
        };
        let detail = if self.two_stacks && tokens.total == 0 {
            "the encoder's table, shared".to_string()
        } else {
            format!("{vocab} × {h} table")
        };
        boxes.push(make_box(
            BoxKind::Embedding,
            self.name(Some(role), "token embeddings"),
            "token embeddings",
            detail,
            rows.shape(&[h]),
            tokens,
            self.target(role, Stage::Embed, None),
        ));

        let positions = self.take(|site| site == ParamSite::PositionEmbeddings { stack: key });
        let (label, mut detail) = match self.config.positions() {
            PositionScheme::Learned => (
                "+ position embeddings",
                format!("{} × {h} table, learned", self.spec.positions()),
            ),
            PositionScheme::Sinusoidal => ("+ sinusoidal positions", "fixed sine/cosine".into()),
        };
        if positions.frozen {
            detail.push_str(", stored, not trained");
        }
        boxes.push(make_box(
            BoxKind::Embedding,
            self.name(Some(role), label),
            label,
            detail,
            rows.shape(&[h]),
            positions,
            self.target(role, Stage::AddPositions, None),
        ));

        if self.family.segments {
            let segments = self.take(|site| site == ParamSite::SegmentEmbeddings);
            let types = match self.spec {
                ArchSpec::Bert { type_vocab, .. } => type_vocab,
                _ => 0,
            };
            boxes.push(make_box(
                BoxKind::Embedding,
                self.name(Some(role), "+ segment embeddings"),
                "+ segment embeddings",
                format!("{types} × {h} table (sentence A / B)"),
                rows.shape(&[h]),
                segments,
                self.target(role, Stage::AddSegments, None),
            ));
        }
        let declares_norm = self
            .family
            .stack(role)
            .is_some_and(|s| s.stages.contains(&Stage::EmbeddingNorm));
        if declares_norm {
            let norm = self.take(|site| {
                matches!(
                    site,
                    ParamSite::EmbeddingNorm | ParamSite::EmbeddingProjection
                )
            });
            boxes.push(make_box(
                BoxKind::LayerNorm,
                self.name(Some(role), "LayerNorm (embeddings)"),
                "LayerNorm (embeddings)",
                "of the sum of the embeddings".to_string(),
                rows.shape(&[h]),
                norm,
                self.target(role, Stage::EmbeddingNorm, None),
            ));
        }
        boxes
    }

    /// One layer: each attention sublayer the stack declares, then the feed-forward block, with
    /// LayerNorm and residual add where the family puts them.
    fn layer(&mut self, role: StackRole, rows: Rows) -> Vec<MapBox> {
        let Some(stack) = self.family.stack(role) else {
            return Vec::new();
        };
        let h = self.spec.hidden();
        let key = self.stack_key(role);
        let heads = self.heads_of(role);
        let head_width = (h as usize).checked_div(heads).unwrap_or(0);
        let source = self.source;
        let mut boxes: Vec<MapBox> = Vec::new();
        let sublayers = stack
            .attention
            .iter()
            .map(|&kind| Some(kind))
            .chain(std::iter::once(None));
        for attention in sublayers {
            let (sublayer, what, kind, stage, residual_stage, pre_norm_stage) = match attention {
                Some(AttentionKind::Cross) => (
                    Sublayer::CrossAttention,
                    "cross-attention",
                    BoxKind::Attention(AttentionKind::Cross),
                    Stage::CrossQkv,
                    Stage::ResidualCross,
                    Stage::NormAttention,
                ),
                Some(kind) => (
                    Sublayer::SelfAttention,
                    "self-attention",
                    BoxKind::Attention(kind),
                    Stage::Qkv,
                    Stage::ResidualAttention,
                    Stage::NormAttention,
                ),
                None => (
                    Sublayer::FeedForward,
                    "feed-forward",
                    BoxKind::FeedForward,
                    Stage::MlpHidden,
                    Stage::ResidualMlp,
                    Stage::NormMlp,
                ),
            };
            let layer0 = Some(0);
            let core = self.take(|site| {
                site == ParamSite::Layer {
                    stack: key,
                    sublayer,
                    norm: false,
                }
            });
            let norm = self.take(|site| {
                site == ParamSite::Layer {
                    stack: key,
                    sublayer,
                    norm: true,
                }
            });
            let label = match attention {
                Some(kind) => kind.label().to_string(),
                None => "feed-forward (MLP)".to_string(),
            };
            let (detail, inner) = match attention {
                Some(AttentionKind::Cross) => (
                    format!("{heads} heads of {head_width}; K, V from the encoder"),
                    Some(format!(
                        "scores [{heads}, {}, {}]",
                        rows.text(),
                        source.text()
                    )),
                ),
                Some(_) => (
                    format!("{heads} heads of {head_width}"),
                    Some(format!("scores [{heads}, {0}, {0}]", rows.text())),
                ),
                None => {
                    let f = self.ffn_width(role);
                    (
                        format!("{h} → {f} → {h}"),
                        Some(format!("hidden {}", rows.shape(&[f]))),
                    )
                }
            };
            let mut sublayer_box = make_box(
                kind,
                self.name(Some(role), &label),
                &label,
                detail,
                rows.shape(&[h]),
                core,
                self.target(role, stage, layer0),
            );
            sublayer_box.inner = inner;
            sublayer_box.reads_encoder = attention == Some(AttentionKind::Cross);
            let residual_label = format!("+ residual ({what})");
            let mut residual = make_box(
                BoxKind::Residual,
                self.name(Some(role), &residual_label),
                &residual_label,
                "adds the input back".to_string(),
                rows.shape(&[h]),
                Taken::default(),
                self.target(role, residual_stage, layer0),
            );
            match self.family.norm {
                NormPlacement::Pre => {
                    let label = format!("LayerNorm before {what}");
                    let start = boxes.len();
                    boxes.push(make_box(
                        BoxKind::LayerNorm,
                        self.name(Some(role), &label),
                        &label,
                        "normalises each token's vector".to_string(),
                        rows.shape(&[h]),
                        norm,
                        self.target(role, pre_norm_stage, layer0),
                    ));
                    boxes.push(sublayer_box);
                    residual.skip_from = Some(start);
                    boxes.push(residual);
                }
                NormPlacement::Post => {
                    let label = format!("LayerNorm after {what}");
                    let start = boxes.len();
                    boxes.push(sublayer_box);
                    residual.skip_from = Some(start);
                    boxes.push(residual);
                    // Post-LN: the add and its LayerNorm are one Step-through stage.
                    boxes.push(make_box(
                        BoxKind::LayerNorm,
                        self.name(Some(role), &label),
                        &label,
                        "normalises each token's vector".to_string(),
                        rows.shape(&[h]),
                        norm,
                        self.target(role, residual_stage, layer0),
                    ));
                }
            }
        }
        for map_box in &mut boxes {
            map_box.copies = map_box.copies.max(self.config.stack_layers(role) as u64);
        }
        boxes
    }

    /// The heads on the output stack: the LM or MLM head, then pooler → NSP / classifier, QA.
    fn heads(&mut self, breakdown: &ParamBreakdown, rows: Rows) -> Vec<Vec<MapBox>> {
        let role = self.family.output_stack().role;
        let h = self.spec.hidden();
        let heads = breakdown.heads;
        let vocab = match self.spec {
            ArchSpec::EncoderDecoder {
                target_vocab: Some(target),
                ..
            } => target,
            spec => spec.vocab(),
        };
        let head = |site: HeadSite| move |s: ParamSite| s == ParamSite::Head(site);
        let mut branches = Vec::new();
        if heads.lm_head {
            let taken = self.take(head(HeadSite::LmHead));
            let mut detail = if taken.total == 0 {
                "tied to the token embeddings".to_string()
            } else {
                format!("{h} → {vocab}")
            };
            if matches!(self.spec, ArchSpec::EncoderDecoder { .. }) {
                detail.push_str(", + final_logits_bias");
            }
            branches.push(vec![make_box(
                BoxKind::Head,
                "LM head".into(),
                "LM head → logits",
                detail,
                rows.shape(&[vocab]),
                taken,
                self.target(role, Stage::Logits, None),
            )]);
        }
        if heads.masked_lm {
            let taken = self.take(head(HeadSite::MaskedLm));
            branches.push(vec![make_box(
                BoxKind::Head,
                "MLM head".into(),
                "MLM head → logits",
                "dense + LayerNorm, decoder tied".to_string(),
                rows.shape(&[vocab]),
                taken,
                self.target(role, Stage::Logits, None),
            )]);
        }
        let pooled_heads = [
            (
                heads.next_sentence,
                HeadSite::NextSentence,
                "NSP classifier",
            ),
            (
                heads.classifier.is_some(),
                HeadSite::Classifier,
                "classifier",
            ),
        ];
        let mut pooler_drawn = false;
        for (present, site, label) in pooled_heads {
            if !present {
                continue;
            }
            let mut branch = Vec::new();
            if heads.pooler && !pooler_drawn {
                branch.push(self.pooler(h));
                pooler_drawn = true;
            }
            let outputs = match site {
                HeadSite::Classifier => heads.classifier.unwrap_or(2),
                _ => 2,
            };
            let detail = match site {
                HeadSite::NextSentence => "does B follow A?".to_string(),
                _ => format!("{outputs} labels"),
            };
            let taken = self.take(head(site));
            branch.push(make_box(
                BoxKind::Head,
                label.into(),
                label,
                detail,
                format!("[{outputs}]"),
                taken,
                None,
            ));
            branches.push(branch);
        }
        if heads.pooler && !pooler_drawn {
            branches.push(vec![self.pooler(h)]);
        }
        if heads.question_answering {
            let taken = self.take(head(HeadSite::QuestionAnswering));
            branches.push(vec![make_box(
                BoxKind::Head,
                "QA span head".into(),
                "QA span head",
                "start and end of the answer".to_string(),
                rows.shape(&[2]),
                taken,
                None,
            )]);
        }
        branches
    }

    fn pooler(&mut self, h: u64) -> MapBox {
        let taken = self.take(|site| site == ParamSite::Pooler);
        make_box(
            BoxKind::Head,
            "pooler".into(),
            "pooler",
            "dense + tanh on [CLS]".to_string(),
            format!("[{h}]"),
            taken,
            None,
        )
    }
}

fn make_box(
    kind: BoxKind,
    name: String,
    label: &str,
    detail: String,
    output: String,
    taken: Taken,
    stage: Option<StageTarget>,
) -> MapBox {
    MapBox {
        kind,
        name,
        label: label.to_string(),
        detail,
        output,
        inner: None,
        params_total: taken.total,
        copies: taken.copies.max(1),
        note: taken
            .frozen
            .then(|| "fixed sinusoids: stored, not trained".to_string()),
        stage,
        skip_from: None,
        reads_encoder: false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::params::breakdown_for_config;

    fn shipped(name: &str) -> (ModelConfig, ParamBreakdown) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets")
            .join(name)
            .join("config.json");
        let config = ModelConfig::from_file(&path).expect("shipped config");
        let breakdown = breakdown_for_config(&config);
        (config, breakdown)
    }

    fn labels(boxes: &[MapBox]) -> Vec<&str> {
        boxes.iter().map(|b| b.label.as_str()).collect()
    }

    fn assert_sums_to_total(map: &ModelMap, breakdown: &ParamBreakdown) {
        assert!(map.unplaced.is_empty(), "unplaced rows: {:?}", map.unplaced);
        assert_eq!(map.mapped_total(), breakdown.exact_total);
        assert_eq!(map.total, breakdown.exact_total);
        // Names are unique: the app finds boxes by them.
        let mut names: Vec<&str> = map.boxes().map(|b| b.name.as_str()).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate box names");
    }

    #[test]
    fn tiny_gpt_is_pre_ln_with_a_final_layernorm() {
        let (config, breakdown) = shipped("tiny-gpt");
        let vocab = config.vocab_size(); // retrained assets change it
        let v = vocab as u64;
        let counts = TokenCounts {
            tokens: Some(7),
            source_tokens: None,
        };
        let map = model_map(&config, &breakdown, counts);
        assert_eq!(map.stacks.len(), 1);
        let stack = &map.stacks[0];
        assert_eq!(stack.layers, 2);
        assert_eq!(
            labels(&stack.embeddings),
            ["token ids", "token embeddings", "+ position embeddings"]
        );
        assert_eq!(
            labels(&stack.layer),
            [
                "LayerNorm before self-attention",
                "causal self-attention",
                "+ residual (self-attention)",
                "LayerNorm before feed-forward",
                "feed-forward (MLP)",
                "+ residual (feed-forward)",
            ]
        );
        assert_eq!(labels(&stack.after), ["final LayerNorm"]);
        assert_eq!(labels(&map.heads[0]), ["LM head → logits"]);
        // Residuals add the input of the LayerNorm before their sublayer.
        assert_eq!(stack.layer[2].skip_from, Some(0));
        assert_eq!(stack.layer[5].skip_from, Some(3));

        // Shapes with the real config (H = 64, F = 256, V from the config) and T = 7.
        assert_eq!(stack.embeddings[0].output, "[7]");
        assert_eq!(stack.embeddings[1].output, "[7, 64]");
        assert_eq!(stack.layer[1].inner.as_deref(), Some("scores [4, 7, 7]"));
        assert_eq!(stack.layer[4].inner.as_deref(), Some("hidden [7, 256]"));
        assert_eq!(map.heads[0][0].output, format!("[7, {vocab}]"));
        let symbolic = model_map(&config, &breakdown, TokenCounts::default());
        assert_eq!(symbolic.stacks[0].layer[4].output, "[T, 64]");
        assert_eq!(symbolic.legend, "T = the number of tokens");

        // Parameters per table and per layer: 466·64, 64·64; c_attn + c_proj; 2·64 per LN.
        assert_eq!(stack.embeddings[1].params(), v * 64);
        assert_eq!(stack.embeddings[2].params(), 64 * 64);
        assert_eq!(stack.layer[0].params(), 2 * 64);
        assert_eq!(stack.layer[1].params(), 64 * 192 + 192 + 64 * 64 + 64);
        assert_eq!(stack.layer[1].copies, 2);
        assert_eq!(stack.layer[4].params(), 64 * 256 + 256 + 256 * 64 + 64);
        assert_eq!(map.heads[0][0].params(), 0, "tied");
        assert_sums_to_total(&map, &breakdown);

        // Each box opens its stage, in layer 0 of the one stack.
        let stages: Vec<Option<Stage>> = stack
            .boxes()
            .chain(map.heads.iter().flatten())
            .map(|b| b.stage.map(|t| t.stage))
            .collect();
        use Stage::*;
        assert_eq!(
            stages,
            [
                None,
                Some(Embed),
                Some(AddPositions),
                Some(NormAttention),
                Some(Qkv),
                Some(ResidualAttention),
                Some(NormMlp),
                Some(MlpHidden),
                Some(ResidualMlp),
                Some(FinalNorm),
                Some(Logits),
            ]
        );
        assert_eq!(
            stack.layer[1].stage,
            Some(StageTarget {
                stage: Qkv,
                layer: Some(0),
                encoder: false
            })
        );
    }

    #[test]
    fn tiny_bert_is_post_ln_with_segments_and_pretraining_heads() {
        let (config, breakdown) = shipped("tiny-bert");
        let (h, v) = (config.hidden_size() as u64, config.vocab_size() as u64);
        let map = model_map(&config, &breakdown, TokenCounts::default());
        let stack = &map.stacks[0];
        assert_eq!(
            labels(&stack.embeddings),
            [
                "token ids",
                "token embeddings",
                "+ position embeddings",
                "+ segment embeddings",
                "LayerNorm (embeddings)",
            ]
        );
        assert_eq!(
            labels(&stack.layer),
            [
                "bidirectional self-attention",
                "+ residual (self-attention)",
                "LayerNorm after self-attention",
                "feed-forward (MLP)",
                "+ residual (feed-forward)",
                "LayerNorm after feed-forward",
            ]
        );
        assert!(stack.after.is_empty(), "post-LN: no final LayerNorm");
        assert_eq!(stack.layer[1].skip_from, Some(0));
        assert_eq!(stack.layer[4].skip_from, Some(3));
        let heads: Vec<Vec<&str>> = map.heads.iter().map(|b| labels(b)).collect();
        assert_eq!(
            heads,
            [vec!["MLM head → logits"], vec!["pooler", "NSP classifier"]]
        );
        assert_eq!(map.heads[0][0].output, format!("[T, {v}]"));
        assert_eq!(map.heads[1][1].output, "[2]");
        assert_eq!(stack.embeddings[3].params(), 2 * h);
        assert_eq!(stack.embeddings[4].params(), 2 * h);
        assert_eq!(stack.layer[0].params(), 4 * (h * h + h));
        assert_eq!(map.heads[1][0].params(), h * h + h);
        assert_eq!(map.heads[1][1].params(), 2 * h + 2);
        assert_eq!(map.heads[0][0].params(), h * h + h + 2 * h + v);
        // Post-LN: the add and its LayerNorm open the same "Add & LayerNorm" stage.
        assert_eq!(
            stack.layer[2].stage.map(|t| t.stage),
            Some(Stage::ResidualAttention)
        );
        assert_eq!(
            stack.embeddings[3].stage.map(|t| t.stage),
            Some(Stage::AddSegments)
        );
        assert_sums_to_total(&map, &breakdown);
    }

    #[test]
    fn tiny_translator_has_two_stacks_and_cross_attention() {
        let (config, breakdown) = shipped("tiny-translator");
        let counts = TokenCounts {
            tokens: Some(9),
            source_tokens: Some(8),
        };
        let map = model_map(&config, &breakdown, counts);
        let roles: Vec<StackRole> = map.stacks.iter().map(|s| s.role).collect();
        assert_eq!(roles, [StackRole::Encoder, StackRole::Decoder]);
        let (encoder, decoder) = (&map.stacks[0], &map.stacks[1]);
        assert_eq!(
            labels(&encoder.embeddings),
            [
                "source token ids",
                "token embeddings",
                "+ sinusoidal positions"
            ]
        );
        assert_eq!(
            labels(&decoder.layer),
            [
                "causal self-attention",
                "+ residual (self-attention)",
                "LayerNorm after self-attention",
                "cross-attention",
                "+ residual (cross-attention)",
                "LayerNorm after cross-attention",
                "feed-forward (MLP)",
                "+ residual (feed-forward)",
                "LayerNorm after feed-forward",
            ]
        );
        let cross = &decoder.layer[3];
        assert!(cross.reads_encoder);
        assert_eq!(cross.name, "decoder: cross-attention");
        assert_eq!(cross.inner.as_deref(), Some("scores [4, 9, 8]"));
        assert_eq!(
            cross.stage,
            Some(StageTarget {
                stage: Stage::CrossQkv,
                layer: Some(0),
                encoder: false
            })
        );
        assert_eq!(encoder.layer[0].output, "[8, 64]");
        assert_eq!(
            encoder.layer[0].stage,
            Some(StageTarget {
                stage: Stage::Qkv,
                layer: Some(0),
                encoder: true
            })
        );
        // The shared table is counted once, in the encoder; positions are frozen sinusoids.
        assert_eq!(encoder.embeddings[1].params(), 736 * 64);
        assert_eq!(decoder.embeddings[1].params(), 0);
        assert_eq!(encoder.embeddings[2].params(), 32 * 64);
        assert!(encoder.embeddings[2].note.is_some());
        assert!(map.stacks.iter().all(|s| s.after.is_empty()));
        assert_eq!(labels(&map.heads[0]), ["LM head → logits"]);
        assert_eq!(map.heads[0][0].output, "[9, 736]");
        assert_eq!(
            decoder.layer_params(),
            2 * 4 * (64 * 64 + 64) + (64 * 256 + 256 + 256 * 64 + 64) + 3 * 2 * 64
        );
        assert_sums_to_total(&map, &breakdown);
        assert_eq!(
            map.legend,
            "S = 8 source tokens of the current text; T = 9 target tokens of the current text"
        );
    }
}
