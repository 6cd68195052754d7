//! Tokenizer tests: parity with `transformers` on the reference fixtures, `explain` agreeing with
//! `encode`, padding/truncation switched off on load, training round trips, and clear errors.

use std::path::{Path, PathBuf};

use glassbox::tokenizer::{SplitStep, Tokenizer, TokenizerKind};
use serde_json::Value;

const FIXTURES: [&str; 4] = ["gpt2", "bert", "bert-cls", "distilbert"];

const CORPUS: &str = "The cat sat on the mat.\n\
    The dog sat on the log.\n\
    A cat and a dog are friends; the cat chased the mouse.\n\
    Transformers predict the next token in a sequence.\n\
    Tokenizers split text into tokens, and tokens into ids!\n";

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_fixture(name: &str) -> Tokenizer {
    let path = fixture_dir(name).join("tokenizer.json");
    Tokenizer::from_file(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn reference_cases(name: &str) -> Vec<Value> {
    let path = fixture_dir(name).join("reference.json");
    let text = std::fs::read_to_string(&path).expect("reference.json is readable");
    let reference: Value = serde_json::from_str(&text).expect("reference.json is JSON");
    reference["cases"]
        .as_array()
        .expect("reference.json has cases")
        .clone()
}

/// A fresh, empty folder under the system temp dir, unique to this test and process.
fn temp_dir(test_name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "glassbox-test-tokenizer-{test_name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir can be created");
    dir
}

/// All pieces of `explain`, flattened, must be exactly the tokens of `encode` without specials.
fn assert_explain_matches_encode(tokenizer: &Tokenizer, text: &str) {
    let explained: Vec<String> = tokenizer
        .explain(text)
        .expect("explain works")
        .into_iter()
        .flat_map(|word| word.pieces)
        .collect();
    let encoded = tokenizer.encode(text, false).expect("encode works").tokens;
    assert_eq!(explained, encoded, "explain vs encode for {text:?}");
}

#[test]
fn fixture_cases_match_transformers() {
    for name in FIXTURES {
        let tokenizer = load_fixture(name);
        for case in reference_cases(name) {
            let text = case["text"].as_str().expect("case has text");
            let encoded = match case["text_pair"].as_str() {
                Some(pair) => tokenizer.encode_pair(text, pair).unwrap(),
                None => tokenizer.encode(text, true).unwrap(),
            };
            let expected_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(encoded.ids, expected_ids, "{name}: ids of {text:?}");
            if let Some(tokens) = case.get("tokens") {
                let expected_tokens: Vec<String> = serde_json::from_value(tokens.clone()).unwrap();
                assert_eq!(
                    encoded.tokens, expected_tokens,
                    "{name}: tokens of {text:?}"
                );
            }
            // Every vector has one entry per token.
            let n = encoded.ids.len();
            assert_eq!(encoded.type_ids.len(), n);
            assert_eq!(encoded.offsets.len(), n);
            assert_eq!(encoded.special_tokens_mask.len(), n);
            assert_eq!(encoded.word_ids.len(), n);
        }
    }
}

#[test]
fn tokenizer_can_move_to_a_worker_thread() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Tokenizer>();
}

#[test]
fn tokenizer_config_names_the_special_tokens() {
    let bert = load_fixture("bert").tokenizer_config();
    assert_eq!(bert["mask_token"], "[MASK]");
    assert_eq!(bert["cls_token"], "[CLS]");
    assert!(bert.get("eos_token").is_none());
    let gpt2 = load_fixture("gpt2").tokenizer_config();
    assert_eq!(gpt2["eos_token"], "<|endoftext|>");
    assert_eq!(gpt2["bos_token"], "<|endoftext|>");
}

#[test]
fn kinds_are_detected() {
    assert_eq!(load_fixture("gpt2").kind(), TokenizerKind::ByteBpe);
    for name in ["bert", "bert-cls", "distilbert"] {
        assert_eq!(load_fixture(name).kind(), TokenizerKind::WordPiece);
    }
}

#[test]
fn bert_pair_has_segment_ids_and_special_mask() {
    let bert = load_fixture("bert");
    let encoded = bert
        .encode_pair(
            "The cat climbed the tree.",
            "It was trying to catch a bird.",
        )
        .unwrap();
    let first_sep = encoded.tokens.iter().position(|t| t == "[SEP]").unwrap();
    assert!(encoded.type_ids[..=first_sep].iter().all(|&t| t == 0));
    assert!(encoded.type_ids[first_sep + 1..].iter().all(|&t| t == 1));
    assert_eq!(encoded.special_tokens_mask[0], 1);
    assert_eq!(encoded.special_tokens_mask[1], 0);
    assert_eq!(encoded.word_ids[0], None);
}

#[test]
fn explain_agrees_with_encode_on_fixtures() {
    let extra_texts = [
        "  Leading spaces,  double  spaces\nand a newline.",
        "Ünïcödé café naïve 東京 emoji 🤖!",
        "unbelievably-hyphenated words: don't, won't; 12345.",
        "",
        &"x".repeat(150), // longer than WordPiece's 100-character limit
    ];
    for name in FIXTURES {
        let tokenizer = load_fixture(name);
        for case in reference_cases(name) {
            for key in ["text", "text_pair"] {
                if let Some(text) = case[key].as_str() {
                    assert_explain_matches_encode(&tokenizer, text);
                }
            }
        }
        for text in extra_texts {
            assert_explain_matches_encode(&tokenizer, text);
        }
    }
}

#[test]
fn explain_shows_bpe_merges_and_wordpiece_matches() {
    let gpt2 = load_fixture("gpt2");
    let words = gpt2.explain("The cat chased").unwrap();
    let chased = words.iter().find(|w| w.word == " chased").unwrap();
    assert_eq!(chased.normalized, "Ġchased");
    assert!(matches!(&chased.steps[0], SplitStep::Symbols { symbols } if symbols.len() == 7));
    let merges: Vec<usize> = chased
        .steps
        .iter()
        .filter_map(|step| match step {
            SplitStep::Merge { rank, .. } => Some(*rank),
            _ => None,
        })
        .collect();
    assert!(!merges.is_empty());
    assert!(chased.steps.iter().all(|step| !step.to_string().is_empty()));

    let bert = load_fixture("bert");
    let words = bert.explain("Eating [MASK]").unwrap();
    assert_eq!(words[0].word, "Eating");
    assert_eq!(words[0].normalized, "eating");
    assert_eq!(words[0].pieces, ["eat", "##ing"]);
    let SplitStep::Match { piece, tried, .. } = &words[0].steps[1] else {
        panic!("expected a WordPiece match, got {:?}", words[0].steps[1]);
    };
    assert_eq!(piece, "##ing");
    assert!(tried.is_empty());
    assert!(
        matches!(&words[0].steps[0], SplitStep::Match { tried, .. } if tried.contains(&"eating".to_string()))
    );
    assert_eq!(
        words[1].steps,
        [SplitStep::AddedToken {
            token: "[MASK]".into()
        }]
    );

    let long_word = "x".repeat(150);
    let words = bert.explain(&long_word).unwrap();
    assert!(matches!(
        words[0].steps[0],
        SplitStep::TooLong { chars: 150, .. }
    ));
    assert_eq!(words[0].pieces, ["[UNK]"]);
}

#[test]
fn special_tokens_vocab_and_token_bytes() {
    let bert = load_fixture("bert");
    assert_eq!(bert.pad_token(), Some(("[PAD]".into(), 0)));
    assert_eq!(bert.unk_token(), Some(("[UNK]".into(), 1)));
    assert_eq!(bert.cls_token(), Some(("[CLS]".into(), 2)));
    assert_eq!(bert.sep_token(), Some(("[SEP]".into(), 3)));
    assert_eq!(bert.mask_token(), Some(("[MASK]".into(), 4)));
    assert_eq!(bert.eos_token(), None);
    assert_eq!(bert.token_bytes("##ing"), b"ing");
    assert_eq!(bert.token_bytes("[MASK]"), b"[MASK]");

    let gpt2 = load_fixture("gpt2");
    assert_eq!(gpt2.eos_token(), Some(("<|endoftext|>".into(), 0)));
    assert_eq!(gpt2.mask_token(), None);
    assert_eq!(gpt2.token_bytes("Ġcat"), b" cat");
    assert_eq!(gpt2.token_bytes("<|endoftext|>"), b"<|endoftext|>");
    assert_eq!(gpt2.id_to_token(330).as_deref(), Some("Ġcat"));
    assert_eq!(gpt2.token_to_id("Ġcat"), Some(330));
    assert!(!gpt2.merges().is_empty());

    for tokenizer in [bert, gpt2] {
        let vocab = tokenizer.vocab();
        assert_eq!(vocab.len(), tokenizer.vocab_size());
        assert!(
            vocab.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "sorted by id"
        );
    }
}

#[test]
fn padding_and_truncation_in_the_file_are_switched_off() {
    let dir = temp_dir("padding");
    let original = std::fs::read_to_string(fixture_dir("bert").join("tokenizer.json")).unwrap();
    let mut json: Value = serde_json::from_str(&original).unwrap();
    // Exactly what all-MiniLM-L6-v2's tokenizer.json ships with.
    json["padding"] = serde_json::json!({
        "strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"
    });
    json["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();

    let tokenizer = Tokenizer::from_file(&path).unwrap();
    let short = tokenizer.encode("I love eating fruit.", true).unwrap();
    assert!(short.ids.len() < 20, "padded to {}", short.ids.len());
    assert!(!short.ids.contains(&0));
    let long_text = "the cat sat on the mat. ".repeat(40);
    let long = tokenizer.encode(&long_text, true).unwrap();
    assert!(long.ids.len() > 128, "truncated to {}", long.ids.len());
    // Saving writes the switched-off state.
    let saved: Value = serde_json::from_str(&tokenizer.to_json_string().unwrap()).unwrap();
    assert!(saved["padding"].is_null() && saved["truncation"].is_null());
    let _ = std::fs::remove_dir_all(dir);
}

/// Save, load again, and check the reloaded tokenizer behaves identically.
fn assert_save_load_round_trip(tokenizer: &Tokenizer, dir: &Path, text: &str) -> Tokenizer {
    let path = dir.join("tokenizer.json");
    tokenizer.save(&path).unwrap();
    let reloaded = Tokenizer::from_file(&path).unwrap();
    assert_eq!(reloaded.kind(), tokenizer.kind());
    assert_eq!(reloaded.vocab(), tokenizer.vocab());
    assert_eq!(
        reloaded.encode(text, true).unwrap(),
        tokenizer.encode(text, true).unwrap()
    );
    assert_eq!(
        reloaded.to_json_string().unwrap(),
        tokenizer.to_json_string().unwrap()
    );
    reloaded
}

#[test]
fn train_char_round_trip() {
    let dir = temp_dir("char");
    let tokenizer = Tokenizer::train_char("hello world\nhow are you").unwrap();
    assert_eq!(tokenizer.kind(), TokenizerKind::Char);
    assert_eq!(tokenizer.unk_token(), Some(("[UNK]".into(), 0)));

    let encoded = tokenizer.encode("hello world", true).unwrap();
    assert_eq!(
        encoded.tokens,
        ["h", "e", "l", "l", "o", " ", "w", "o", "r", "l", "d"]
    );
    assert_eq!(tokenizer.decode(&encoded.ids, true).unwrap(), "hello world");
    // An unseen character becomes [UNK], one per character.
    let unseen = tokenizer.encode("hé!", true).unwrap();
    assert_eq!(unseen.tokens, ["h", "[UNK]", "[UNK]"]);
    assert_explain_matches_encode(&tokenizer, "hé! hello world");
    let words = tokenizer.explain("hé").unwrap();
    assert_eq!(words[0].steps.len(), 2);
    assert!(
        matches!(&words[0].steps[1], SplitStep::Char { text, piece } if text == "é" && piece == "[UNK]")
    );

    // The file is a plain BPE model without merges, which `transformers` can load.
    let json: Value = serde_json::from_str(&tokenizer.to_json_string().unwrap()).unwrap();
    assert_eq!(json["model"]["type"], "BPE");
    assert_eq!(json["model"]["merges"].as_array().map(Vec::len), Some(0));
    assert!(json["pre_tokenizer"].is_null() && json["normalizer"].is_null());

    assert_save_load_round_trip(&tokenizer, &dir, "how are you, world?");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn train_bpe_round_trip() {
    let dir = temp_dir("bpe");
    let tokenizer = Tokenizer::train_bpe(CORPUS, 300).unwrap();
    assert_eq!(tokenizer.kind(), TokenizerKind::ByteBpe);
    assert_eq!(tokenizer.vocab_size(), 300);
    assert_eq!(tokenizer.eos_token(), Some(("<|endoftext|>".into(), 0)));
    assert!(
        tokenizer.token_to_id("Ġthe").is_some(),
        "frequent word is merged"
    );

    for text in CORPUS
        .lines()
        .chain(["Unseen wörds 🤖 still round-trip.\n"])
    {
        let encoded = tokenizer.encode(text, true).unwrap();
        assert_eq!(tokenizer.decode(&encoded.ids, false).unwrap(), text);
        assert_explain_matches_encode(&tokenizer, text);
    }
    let with_eos = tokenizer.encode("the cat<|endoftext|>", true).unwrap();
    assert_eq!(
        with_eos.tokens.last().map(String::as_str),
        Some("<|endoftext|>")
    );

    let reloaded = assert_save_load_round_trip(&tokenizer, &dir, "The cat sat on the log.");
    assert_eq!(reloaded.merges(), tokenizer.merges());

    // A tiny corpus runs out of pairs: a smaller vocabulary, no error.
    let tiny = Tokenizer::train_bpe("ab ab", 10_000).unwrap();
    assert!(tiny.vocab_size() < 300);
    assert_eq!(tiny.encode("ab ab", false).unwrap().tokens, ["ab", "Ġab"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn train_wordpiece_round_trip() {
    let dir = temp_dir("wordpiece");
    let tokenizer = Tokenizer::train_wordpiece(CORPUS, 150).unwrap();
    assert_eq!(tokenizer.kind(), TokenizerKind::WordPiece);
    assert!(tokenizer.vocab_size() <= 150);
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    for (id, token) in specials.iter().enumerate() {
        assert_eq!(tokenizer.token_to_id(token), Some(id as u32));
    }
    assert_eq!(tokenizer.mask_token(), Some(("[MASK]".into(), 4)));

    let encoded = tokenizer.encode("The cat sat on the mat.", true).unwrap();
    assert_eq!(encoded.tokens.first().map(String::as_str), Some("[CLS]"));
    assert_eq!(encoded.tokens.last().map(String::as_str), Some("[SEP]"));
    assert_eq!(
        tokenizer.decode(&encoded.ids, true).unwrap(),
        "the cat sat on the mat."
    );
    let pair = tokenizer
        .encode_pair("The cat sat.", "The dog sat.")
        .unwrap();
    // The second text and its closing [SEP] are segment 1.
    let second_len = tokenizer.encode("The dog sat.", false).unwrap().len();
    assert_eq!(
        pair.type_ids.iter().filter(|&&t| t == 1).count(),
        second_len + 1
    );
    for text in CORPUS.lines().chain(["Unseen words like catmat and dogs!"]) {
        assert_explain_matches_encode(&tokenizer, text);
    }
    // Characters never seen at all give [UNK].
    assert_eq!(tokenizer.encode("東", false).unwrap().tokens, ["[UNK]"]);

    assert_save_load_round_trip(&tokenizer, &dir, "A mouse and a dog.");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn training_is_deterministic() {
    for _ in 0..3 {
        let json = |t: Tokenizer| t.to_json_string().unwrap();
        assert_eq!(
            json(Tokenizer::train_char(CORPUS).unwrap()),
            json(Tokenizer::train_char(CORPUS).unwrap())
        );
        assert_eq!(
            json(Tokenizer::train_bpe(CORPUS, 320).unwrap()),
            json(Tokenizer::train_bpe(CORPUS, 320).unwrap())
        );
        assert_eq!(
            json(Tokenizer::train_wordpiece(CORPUS, 140).unwrap()),
            json(Tokenizer::train_wordpiece(CORPUS, 140).unwrap())
        );
    }
}

#[test]
fn errors_are_clear() {
    let dir = temp_dir("errors");

    let missing = dir.join("no-such-tokenizer.json");
    let message = Tokenizer::from_file(&missing).unwrap_err().to_string();
    assert!(message.contains("no-such-tokenizer.json"), "{message}");

    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{ this is not json").unwrap();
    let message = Tokenizer::from_file(&garbage).unwrap_err().to_string();
    assert!(message.contains("garbage.json"), "{message}");

    let not_a_tokenizer = dir.join("config.json");
    std::fs::write(&not_a_tokenizer, r#"{"hidden_size": 32}"#).unwrap();
    let message = Tokenizer::from_file(&not_a_tokenizer)
        .unwrap_err()
        .to_string();
    assert!(message.contains("config.json"), "{message}");

    let word_level = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1},"unk_token":"[UNK]"}}"#;
    let message = Tokenizer::from_json_bytes(word_level.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(message.contains("WordLevel"), "{message}");

    for corpus in ["", "  \n "] {
        for result in [
            Tokenizer::train_char(corpus),
            Tokenizer::train_bpe(corpus, 300),
            Tokenizer::train_wordpiece(corpus, 100),
        ] {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("empty"), "{message}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Marian's SentencePiece tokenizers (`source.spm`, `target.spm`, shared `vocab.json`): the same
/// pieces and ids as `transformers`' `MarianTokenizer` on both sides, for the fixture's sentences
/// and for accents, runs of whitespace and characters the vocabulary lacks.
#[test]
fn marian_sentencepiece_matches_transformers() {
    use glassbox::tokenizer::sentencepiece::SentencePiece;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marian");
    let vocab = dir.join("vocab.json");
    let source = SentencePiece::from_files(&dir.join("source.spm"), &vocab).expect("source.spm");
    let target = SentencePiece::from_files(&dir.join("target.spm"), &vocab).expect("target.spm");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let strings = |v: &Value| -> Vec<String> { serde_json::from_value(v.clone()).unwrap() };
    let numbers = |v: &Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    for case in reference["cases"].as_array().unwrap() {
        let text = case["source"].as_str().unwrap();
        assert_eq!(
            source.encode(text).unwrap().tokens,
            strings(&case["source_tokens"]),
            "{text}"
        );
        let text = case["target"].as_str().unwrap();
        let encoded = target.encode(text).unwrap();
        assert_eq!(encoded.tokens, strings(&case["target_tokens"]), "{text}");
        assert_eq!(target.decode(&encoded.ids), text);
    }
    for case in reference["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ours = source.encode(text).unwrap();
        assert_eq!(
            ours.tokens,
            strings(&case["source_tokens"]),
            "source {text:?}"
        );
        assert_eq!(ours.ids, numbers(&case["source_ids"]), "source {text:?}");
        let ours = target.encode(text).unwrap();
        assert_eq!(
            ours.tokens,
            strings(&case["target_tokens"]),
            "target {text:?}"
        );
        assert_eq!(ours.ids, numbers(&case["target_ids"]), "target {text:?}");
    }
    // A file that is not a SentencePiece model is a clear error naming it.
    let error = SentencePiece::from_files(&dir.join("vocab.json"), &vocab).unwrap_err();
    assert!(error.to_string().contains("vocab.json"), "{error}");
}

/// What every view shows for a token: a space as `▁`, byte-level symbols turned back into text,
/// and a character split between tokens written as its bytes (`<C3>`), never `�`.
#[test]
fn tokens_and_decoded_text_are_shown_readably() {
    let gpt2 = load_fixture("gpt2");
    assert_eq!(gpt2.readable_token("Ġcat"), "\u{2581}cat");
    assert_eq!(gpt2.readable_token("Ċ"), "↵");
    let bert = load_fixture("bert");
    assert_eq!(bert.readable_token("##ing"), "##ing");
    let ids = gpt2.encode("a café", false).unwrap().ids;
    assert_eq!(gpt2.decode_for_display(&ids).unwrap(), "a café");
    // "é" is the bytes C3 A9; a token holding only C3 shows it as such.
    let half = gpt2.token_to_id("Ã").expect("the byte C3 is a token");
    assert_eq!(gpt2.decode_for_display(&[half]).unwrap(), "<C3>");
    assert_eq!(gpt2.readable_token("Ã"), "<C3>");
    assert_eq!(glassbox::tokenizer::readable_bytes(b"caf\xc3"), "caf<C3>");
}
