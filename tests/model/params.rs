//! Parameter counts: presets against the numbers `transformers` reports, fixtures against their
//! own weights, and the textbook formula against the usual tables.

use std::path::{Path, PathBuf};

use glassbox::GlassboxError;
use glassbox::model::config::{Architecture, ModelConfig};
use glassbox::model::params::{
    ArchSpec, Heads, ParamGroup, Preset, actual_count, actual_count_file, breakdown,
    breakdown_for_config, format_bytes, group_thousands, memory_bytes_f32, preset_breakdown,
    read_safetensors_shapes, render_table, textbook_formula_text,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reference_param_count(folder: &Path) -> u64 {
    let text = std::fs::read_to_string(folder.join("reference.json")).expect("reference.json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("reference.json is JSON");
    value["param_count"].as_u64().expect("param_count")
}

/// Every breakdown must add up: rows sum to the totals, textbook never exceeds exact.
fn assert_consistent(b: &glassbox::model::params::ParamBreakdown) {
    let exact: u64 = b.rows.iter().map(|r| r.exact).sum();
    let textbook: u64 = b.rows.iter().map(|r| r.textbook).sum();
    assert_eq!(exact, b.exact_total, "{}: rows vs exact total", b.name);
    assert_eq!(
        textbook, b.textbook_total,
        "{}: rows vs textbook total",
        b.name
    );
    assert!(b.textbook_total <= b.exact_total, "{}", b.name);
    let groups: u64 = b.group_totals().iter().map(|g| g.exact).sum();
    assert_eq!(groups, b.exact_total, "{}: group totals", b.name);
}

#[test]
fn preset_exact_totals_match_transformers() {
    let expected = [
        (Preset::BertBase, 109_482_240u64),
        (Preset::BertLarge, 335_141_888),
        (Preset::DistilBert, 66_362_880),
        (Preset::RobertaLarge, 355_359_744),
        (Preset::AlbertBase, 11_683_584),
        (Preset::Gpt2, 124_439_808),
        (Preset::Gpt2Medium, 354_823_168),
        (Preset::Gpt2Large, 774_030_080),
        (Preset::Gpt2Xl, 1_557_611_200),
        (Preset::Gpt3_175b, 174_604_259_328),
        (Preset::TransformerBase, 63_082_496),
        (Preset::TransformerBig, 214_245_376),
        // `MarianMTModel.num_parameters()` for Helsinki-NLP/opus-mt-en-fr: the two 512×512
        // sinusoidal tables are parameters (frozen); `final_logits_bias` is a buffer.
        (Preset::MarianEnFr, 75_133_952),
    ];
    assert_eq!(expected.len(), Preset::ALL.len());
    for (preset, total) in expected {
        let b = preset.breakdown();
        assert_eq!(b.exact_total, total, "{preset}");
        assert_consistent(&b);
    }
}

#[test]
fn encoder_decoder_counts_cross_attention_as_its_own_component() {
    let marian = Preset::MarianEnFr.breakdown();
    // `num_parameters(only_trainable=True)`: without the two frozen sinusoidal tables.
    assert_eq!(marian.trainable_total, 74_609_664);
    assert_eq!(marian.exact_total - marian.trainable_total, 2 * 512 * 512);
    let base = Preset::TransformerBase.breakdown();
    assert_eq!(base.trainable_total, base.exact_total);
    // The paper's sinusoids are computed, not stored: no parameters.
    let positions = base
        .rows
        .iter()
        .find(|r| r.component.starts_with("encoder positions"))
        .expect("positions row");
    assert_eq!(positions.exact, 0);
    // Six decoder layers, one cross-attention block each: 4·(H² + H) per layer (its LayerNorm
    // is with the other LayerNorms).
    let cross: u64 = base
        .rows
        .iter()
        .filter(|r| r.group == ParamGroup::CrossAttention)
        .map(|r| r.exact)
        .sum();
    assert_eq!(cross, 6 * 4 * (512 * 512 + 512));
    assert!(
        base.group_totals()
            .iter()
            .any(|g| g.group == ParamGroup::CrossAttention)
    );
    // The encoder has no cross-attention: no encoder row in that group.
    assert!(
        base.rows
            .iter()
            .filter(|r| r.group == ParamGroup::CrossAttention)
            .all(|r| r.component.starts_with("decoder"))
    );
    assert_eq!(
        base.textbook_total,
        6 * (4 * 512 * 512 + 2 * 512 * 2048) + 6 * (8 * 512 * 512 + 2 * 512 * 2048) + 37000 * 512
    );
    let table = render_table(&marian);
    assert!(table.contains("trainable: 74,609,664"), "{table}");
}

#[test]
fn bert_base_heads_change_the_total_as_transformers_builds_them() {
    let spec = Preset::BertBase.spec();
    assert_eq!(breakdown(&spec, Heads::none()).exact_total, 108_891_648);
    assert_eq!(
        breakdown(&spec, Heads::base_model(&spec)).exact_total,
        109_482_240
    );
    let pretraining = breakdown(
        &spec,
        Heads::for_architecture(Architecture::BertForPreTraining, 2),
    );
    assert_eq!(pretraining.exact_total, 110_106_428);
    assert_consistent(&pretraining);

    // Sequence classification: pooler + n·H + n.
    let classifier = breakdown(
        &spec,
        Heads::for_architecture(Architecture::BertForSequenceClassification, 3),
    );
    assert_eq!(classifier.exact_total, 109_482_240 + 3 * 768 + 3);
    // QA: no pooler, 2·H + 2.
    let qa = breakdown(
        &spec,
        Heads::for_architecture(Architecture::BertForQuestionAnswering, 2),
    );
    assert_eq!(qa.exact_total, 108_891_648 + 2 * 768 + 2);
    // Masked LM: no pooler, transform H·H + H, LayerNorm 2·H, output bias V (decoder tied).
    let mlm = breakdown(
        &spec,
        Heads::for_architecture(Architecture::BertForMaskedLm, 2),
    );
    assert_eq!(
        mlm.exact_total,
        108_891_648 + 768 * 768 + 768 + 2 * 768 + 30522
    );
}

#[test]
fn gpt2_lm_head_is_tied_and_adds_nothing() {
    let spec = Preset::Gpt2.spec();
    let bare = breakdown(&spec, Heads::none());
    let with_head = breakdown(&spec, Heads::for_architecture(Architecture::Gpt2LmHead, 2));
    assert_eq!(bare.exact_total, with_head.exact_total);
    let head = with_head
        .rows
        .iter()
        .find(|r| r.component == "LM head")
        .expect("the tied LM head is listed");
    assert_eq!(head.exact, 0);
    assert!(head.formula.contains("tied"), "{}", head.formula);
}

#[test]
fn heads_a_family_lacks_are_noted_not_counted() {
    let spec = Preset::Gpt2.spec();
    let heads = Heads {
        pooler: true,
        next_sentence: true,
        ..Heads::none()
    };
    let b = breakdown(&spec, heads);
    assert_eq!(b.exact_total, 124_439_808);
    assert_eq!(b.notes.len(), 2, "{:?}", b.notes);
    assert!(b.notes[0].contains("pooler"));
}

#[test]
fn textbook_totals_follow_the_usual_formula() {
    // BERT-Base: L·(4H² + 2HF) + (V + P + T)·H + pooler H².
    let (l, h, f) = (12u64, 768u64, 3072u64);
    let bert_base = l * (4 * h * h + 2 * h * f) + (30522 + 512 + 2) * h + h * h;
    let b = Preset::BertBase.breakdown();
    assert_eq!(b.textbook_total, bert_base);
    assert!((105_000_000..115_000_000).contains(&b.textbook_total));
    assert!(
        b.textbook_formula.contains("L·(4·H² + 2·H·F)"),
        "{}",
        b.textbook_formula
    );
    assert!(b.textbook_formula.contains(&group_thousands(bert_base)));

    // The bare backbone has its formula text too.
    let text = textbook_formula_text(&Preset::BertBase.spec());
    assert!(text.contains("L=12") && text.contains("H=768"), "{text}");

    // GPT-3: 12·L·H² + (V + P)·H ≈ 175B.
    let (l, h) = (96u64, 12288u64);
    let gpt3 = 12 * l * h * h + (50257 + 2048) * h;
    let b = Preset::Gpt3_175b.breakdown();
    assert_eq!(b.textbook_total, gpt3);
    let off = (b.textbook_total as f64 - 175e9).abs() / 175e9;
    assert!(off < 0.01, "GPT-3 textbook {}", b.textbook_total);

    // BERT-Large ≈ 335M-ish, GPT-2 Small ≈ 124M-ish.
    let bert_large = Preset::BertLarge.breakdown().textbook_total;
    assert!(
        (330_000_000..340_000_000).contains(&bert_large),
        "{bert_large}"
    );
    let gpt2 = Preset::Gpt2.breakdown().textbook_total;
    assert_eq!(gpt2, 12 * 12 * 768 * 768 + (50257 + 1024) * 768);
}

#[test]
fn rows_state_their_formula() {
    let b = Preset::BertBase.breakdown();
    let query = b
        .rows
        .iter()
        .find(|r| r.component.ends_with("attention query (Q)"))
        .expect("query row");
    assert_eq!(query.group, ParamGroup::Attention);
    assert_eq!(query.copies, 12);
    assert_eq!(query.formula, "L·(H·H + H) = 12·(768·768 + 768)");
    assert_eq!(query.textbook_formula, "L·H·H = 12·768·768");
    assert_eq!(query.textbook, 12 * 768 * 768);
    assert_eq!(query.exact, 12 * (768 * 768 + 768));

    let norm = b
        .rows
        .iter()
        .find(|r| r.component == "embedding LayerNorm")
        .expect("LayerNorm row");
    assert_eq!(norm.group, ParamGroup::LayerNorm);
    assert_eq!(norm.textbook, 0);
    assert_eq!(norm.textbook_formula, "—");
    assert_eq!(norm.exact, 2 * 768);

    // ALBERT stores its one layer once.
    let albert = Preset::AlbertBase.breakdown();
    let shared = albert
        .rows
        .iter()
        .find(|r| r.component.contains("shared layer"))
        .expect("shared layer rows");
    assert_eq!(shared.copies, 1);
}

#[test]
fn gpt3_table_stays_readable_for_96_layers() {
    let b = Preset::Gpt3_175b.breakdown();
    assert!(b.rows.len() < 20, "{} rows", b.rows.len());
    let table = render_table(&b);
    assert!(table.contains("layers 0–95"), "{table}");
    assert!(table.contains("96·(12288·36864 + 36864)"), "{table}");
    assert!(table.contains("174,604,259,328"), "{table}");
    assert!(table.contains("GiB"), "{table}");
    // Every table line lines up: the numbers column ends at the same place.
    let widths: Vec<usize> = table
        .lines()
        .skip(3)
        .take(b.rows.len())
        .map(|l| l.chars().count())
        .collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{widths:?}");
}

#[test]
fn breakdown_serializes_for_json_output() {
    let b = Preset::DistilBert.breakdown();
    let value = serde_json::to_value(&b).expect("serializable");
    assert_eq!(value["exact_total"], 66_362_880u64);
    assert_eq!(value["spec"]["family"], "distil_bert");
    let groups: Vec<&str> = value["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["group"].as_str())
        .collect();
    for group in ["embeddings", "attention", "ffn", "layernorm"] {
        assert!(groups.contains(&group), "{group} in {groups:?}");
    }
    let back: glassbox::model::params::ParamBreakdown =
        serde_json::from_value(value).expect("round trip");
    assert_eq!(back, b);
}

#[test]
fn fixtures_analytic_equals_actual_equals_transformers() {
    for (name, expected) in [
        ("bert", 34_706u64),
        ("bert-cls", 33_186),
        ("distilbert", 33_520),
        ("gpt2", 40_320),
        ("marian", 51_360),
    ] {
        let folder = fixture(name);
        let config = ModelConfig::from_file(&folder.join("config.json")).expect("config");
        let analytic = breakdown_for_config(&config);
        assert_consistent(&analytic);
        let actual = actual_count_file(&folder.join("model.safetensors")).expect("safetensors");
        let reference = reference_param_count(&folder);
        assert_eq!(reference, expected, "{name}: reference.json");
        // Marian's file holds `final_logits_bias` (a buffer) and not the sinusoidal tables
        // (recomputed on load), so only the other families' files add up to the count.
        if name != "marian" {
            assert_eq!(actual, reference, "{name}: tensors in model.safetensors");
        }
        assert_eq!(analytic.exact_total, reference, "{name}: analytic count");
        assert!(analytic.name.contains(config.architecture.hf_name()));
    }
}

#[test]
fn tied_weights_stored_twice_are_counted_once() {
    let folder = fixture("gpt2");
    let mut tensors = read_safetensors_shapes(&folder.join("model.safetensors")).expect("shapes");
    let wte = tensors
        .iter()
        .find(|(name, _)| name == "transformer.wte.weight")
        .map(|(_, shape)| shape.clone())
        .expect("wte");
    tensors.push(("lm_head.weight".to_string(), wte.clone()));
    assert_eq!(actual_count(tensors.clone()), 40_320);

    // Without the embedding it ties to, an lm_head is real parameters.
    assert_eq!(actual_count([("lm_head.weight", wte)]), 400 * 32);
    // BERT's decoder weight and bias, if saved, are copies too.
    let bert = [
        ("bert.embeddings.word_embeddings.weight", vec![10, 4]),
        ("cls.predictions.bias", vec![10]),
        ("cls.predictions.decoder.weight", vec![10, 4]),
        ("cls.predictions.decoder.bias", vec![10]),
    ];
    assert_eq!(actual_count(bert), 50);
    // A scalar is one element.
    assert_eq!(actual_count([("scale", Vec::<usize>::new())]), 1);
}

#[test]
fn truncated_or_missing_safetensors_are_clear_errors() {
    let source = std::fs::read(fixture("gpt2").join("model.safetensors")).expect("fixture");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("params-test");
    std::fs::create_dir_all(&dir).expect("tmp dir");

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &source[..source.len() - 10]).expect("write");
    let err = actual_count_file(&truncated).expect_err("truncated file");
    assert!(
        matches!(err, GlassboxError::CorruptSafetensors { .. }),
        "{err}"
    );

    let tiny = dir.join("tiny.safetensors");
    std::fs::write(&tiny, [1u8, 2, 3]).expect("write");
    let err = actual_count_file(&tiny).expect_err("3-byte file");
    assert!(
        matches!(err, GlassboxError::CorruptSafetensors { .. }),
        "{err}"
    );

    let huge_header = dir.join("huge-header.safetensors");
    std::fs::write(&huge_header, u64::MAX.to_le_bytes()).expect("write");
    let err = actual_count_file(&huge_header).expect_err("absurd header length");
    assert!(
        matches!(err, GlassboxError::CorruptSafetensors { .. }),
        "{err}"
    );

    let err = actual_count_file(&dir.join("absent.safetensors")).expect_err("missing");
    assert!(matches!(err, GlassboxError::MissingFile { .. }), "{err}");
}

#[test]
fn preset_names_parse_and_unknown_names_list_the_valid_ones() {
    for preset in Preset::ALL {
        assert_eq!(
            preset.cli_name().parse::<Preset>().expect("cli name"),
            preset
        );
        assert_eq!(preset.to_string(), preset.cli_name());
        assert!(!preset.display_name().is_empty());
        if let Some(id) = preset.hub_id() {
            assert_eq!(id.parse::<Preset>().expect("hub id"), preset);
        }
    }
    assert_eq!(
        "GPT2_XL".parse::<Preset>().expect("any case"),
        Preset::Gpt2Xl
    );

    let by_name = preset_breakdown("roberta-large").expect("preset by name");
    assert_eq!(by_name.exact_total, 355_359_744);
    assert!(by_name.name.contains("RoBERTa-Large"), "{}", by_name.name);
    assert!(preset_breakdown("nope").is_err());

    let err = "bert-huge".parse::<Preset>().expect_err("unknown preset");
    assert!(matches!(err, GlassboxError::InvalidInput(_)));
    let message = err.to_string();
    assert!(message.contains("bert-huge"), "{message}");
    for preset in Preset::ALL {
        assert!(message.contains(preset.cli_name()), "{message}");
    }
}

#[test]
fn nanogpt_style_gpt_without_biases() {
    let (v, p, h, l) = (65u64, 256u64, 384u64, 6u64);
    let spec = ArchSpec::Gpt2 {
        vocab: v,
        positions: p,
        hidden: h,
        layers: l,
        heads: 6,
        intermediate: 4 * h,
        bias: false,
    };
    let b = breakdown(&spec, Heads::none());
    // Per layer: two LayerNorm gains, c_attn 3H², c_proj H², MLP 8H²; plus ln_f gain.
    let expected = v * h + p * h + l * (2 * h + 12 * h * h) + h;
    assert_eq!(b.exact_total, expected);
    assert_consistent(&b);
    assert!(b.name.contains("no biases"), "{}", b.name);
}

#[test]
fn memory_helpers() {
    assert_eq!(memory_bytes_f32(124_439_808), 497_759_232);
    assert_eq!(Preset::Gpt2.breakdown().memory_bytes_f32(), 497_759_232);
    assert_eq!(format_bytes(497_759_232), "474.7 MiB");
    assert_eq!(format_bytes(512), "512 bytes");
    assert_eq!(group_thousands(0), "0");
    assert_eq!(group_thousands(999), "999");
    assert_eq!(group_thousands(1_000), "1,000");
    assert_eq!(group_thousands(174_604_259_328), "174,604,259,328");
}
