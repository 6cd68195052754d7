//! Data layer: readers and their error messages, built-in data sets, splits, batching, masking.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use glassbox::data::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A temp file with a unique name, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "glassbox-data-test-{}-{n}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn error_message<T: std::fmt::Debug>(result: glassbox::Result<T>) -> String {
    result.expect_err("expected an error").to_string()
}

// ---------------------------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------------------------

#[test]
fn corpus_reads_text() {
    let file = TempFile::new("corpus.txt", "the cat sat .\n".as_bytes());
    assert_eq!(read_corpus(&file.0).unwrap(), "the cat sat .\n");
}

#[test]
fn empty_corpus_is_refused_naming_the_file() {
    let file = TempFile::new("empty.txt", b"");
    let message = error_message(read_corpus(&file.0));
    assert!(message.contains("empty.txt"), "{message}");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn whitespace_only_corpus_is_refused() {
    let file = TempFile::new("blank.txt", b" \n\t\n  \n");
    let message = error_message(read_corpus(&file.0));
    assert!(message.contains("blank.txt"), "{message}");
    assert!(message.contains("only whitespace"), "{message}");
}

#[test]
fn non_utf8_corpus_names_the_byte_offset() {
    let file = TempFile::new("latin1.txt", b"caf\xe9 au lait\n");
    let message = error_message(read_corpus(&file.0));
    assert!(message.contains("latin1.txt"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
    assert!(message.contains("offset 3"), "{message}");
}

#[test]
fn missing_file_is_named() {
    let path = std::env::temp_dir().join("glassbox-data-test-does-not-exist.csv");
    let message = error_message(read_classification_csv(&path));
    assert!(message.contains("does-not-exist.csv"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Classification CSV
// ---------------------------------------------------------------------------------------------

#[test]
fn csv_handles_quotes_commas_newlines_and_column_order() {
    let csv = "id,Label,text\r\n\
               1,positive,\"great, truly great\"\r\n\
               2,negative,\"she said \"\"meh\"\"\"\r\n\
               \r\n\
               3,neutral,\"two\nlines\"\n\
               4,positive,plain text";
    let (examples, errors) = parse_classification_csv(csv);
    assert!(errors.is_empty(), "{errors:?}");
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "great, truly great",
            "she said \"meh\"",
            "two\nlines",
            "plain text"
        ]
    );
    assert_eq!(label_names(&examples), ["negative", "neutral", "positive"]);
}

#[test]
fn csv_missing_label_column_names_it_and_shows_the_header() {
    let file = TempFile::new("nolabel.csv", b"text,sentiment\ngood movie,positive\n");
    let message = error_message(read_classification_csv(&file.0));
    assert!(message.contains("nolabel.csv"), "{message}");
    assert!(message.contains("`label`"), "{message}");
    assert!(message.contains("`sentiment`"), "{message}");
    assert!(message.contains("line 1"), "{message}");
}

#[test]
fn csv_bad_rows_name_line_and_column() {
    let csv = "text,label\n\
               good movie,positive\n\
               \"multi\nline\",negative\n\
               bad movie,\n\
               one,two,three\n\
               ,positive\n";
    let (examples, errors) = parse_classification_csv(csv);
    assert_eq!(examples.len(), 2);
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown[0], "line 5, column `label`: empty label");
    assert!(
        shown[1].starts_with("line 6: expected 2 fields"),
        "{}",
        shown[1]
    );
    assert_eq!(shown[2], "line 7, column `text`: empty text");

    let file = TempFile::new("bad.csv", csv.as_bytes());
    let message = error_message(read_classification_csv(&file.0));
    assert!(message.contains("bad.csv"), "{message}");
    assert!(
        message.contains("line 5, column `label`: empty label"),
        "{message}"
    );
}

#[test]
fn csv_unclosed_quote_and_header_only_are_errors() {
    let (_, errors) = parse_classification_csv("text,label\n\"never closed,positive\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 2);
    assert!(errors[0].message.contains("never closed"), "{}", errors[0]);

    let file = TempFile::new("header.csv", b"text,label\n");
    let message = error_message(read_classification_csv(&file.0));
    assert!(message.contains("no data rows"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// QA and generation
// ---------------------------------------------------------------------------------------------

#[test]
fn qa_reads_jsonl_and_arrays_and_finds_the_answer() {
    let jsonl = r#"{"context": "the cat sat on the mat .", "question": "where ?", "answer": "the mat"}

{"context": "héllo wörld", "question": "what ?", "answer": "wörld", "answer_start": 6}
{"context": "a b c", "question": "q", "answers": {"text": ["c"], "answer_start": [4]}}"#;
    let (examples, errors) = parse_qa(jsonl);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(examples[0].answer_start, 15);
    // answer_start 6 is a character offset (as in SQuAD); the byte offset is 7.
    assert_eq!(examples[1].answer_start, 7);
    assert_eq!(examples[2].answer_start, 4);
    for e in &examples {
        assert!(e.context[e.answer_start..].starts_with(&e.answer));
    }

    let array = r#"[
  {"context": "x y", "question": "q", "answer": "y"},
  {"context": "x y", "question": "q",
   "answer": "z"}
]"#;
    let (examples, errors) = parse_qa(array);
    assert_eq!(examples.len(), 1);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 3, "{}", errors[0]);
}

#[test]
fn qa_answer_not_in_context_is_an_error() {
    let text =
        r#"{"context": "the cat sat on the mat .", "question": "what color ?", "answer": "red"}"#;
    let file = TempFile::new("qa.jsonl", text.as_bytes());
    let message = error_message(read_qa(&file.0));
    assert!(message.contains("qa.jsonl"), "{message}");
    assert!(message.contains("line 1, column `answer`"), "{message}");
    assert!(message.contains("not found in the context"), "{message}");

    let wrong_start = r#"{"context": "abc", "question": "q", "answer": "b", "answer_start": 2}"#;
    let (_, errors) = parse_qa(wrong_start);
    assert_eq!(errors[0].column.as_deref(), Some("answer_start"));
}

#[test]
fn jsonl_invalid_json_names_the_line() {
    let text = "{\"prompt\": \"a\", \"completion\": \" b\"}\n\
                {\"prompt\": \"c\", \"completion\": \" d\"}\n\
                {\"prompt\": \"e\", \"completion\": \n";
    let file = TempFile::new("gen.jsonl", text.as_bytes());
    let message = error_message(read_generation_jsonl(&file.0));
    assert!(message.contains("gen.jsonl"), "{message}");
    assert!(message.contains("line 3: invalid JSON"), "{message}");

    let (examples, errors) = parse_generation_jsonl(text);
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[1].completion, " d");
    assert_eq!(errors.len(), 1);
}

#[test]
fn generation_fields_are_checked() {
    let text = "{\"prompt\": \"a\"}\n{\"prompt\": \"a\", \"completion\": 3}\n[1]\n";
    let (examples, errors) = parse_generation_jsonl(text);
    assert!(examples.is_empty());
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(shown[0].starts_with("line 1, column `completion`: missing field"));
    assert!(shown[1].starts_with("line 2, column `completion`: expected a string"));
    assert!(shown[2].starts_with("line 3: expected a JSON object"));
}

#[test]
fn parallel_files_read_tsv_and_jsonl_and_name_bad_rows() {
    let tsv = TempFile::new(
        "pairs.tsv",
        "the cat .\tle chat .\na dog .\tun chien .\n".as_bytes(),
    );
    assert_eq!(
        read_parallel(&tsv.0).unwrap(),
        vec![
            TranslationPair::new("the cat .", "le chat ."),
            TranslationPair::new("a dog .", "un chien .")
        ]
    );
    let jsonl = TempFile::new(
        "pairs.jsonl",
        "{\"source\": \"the cat .\", \"target\": \"le chat .\"}\n".as_bytes(),
    );
    assert_eq!(read_parallel(&jsonl.0).unwrap().len(), 1);

    // A ragged row, an empty side: the file, the line and what is wrong.
    let ragged = TempFile::new("ragged.tsv", b"a .\tb .\nno tab\nc .\td .\textra\n\t.\n");
    let message = error_message(read_parallel(&ragged.0));
    assert!(message.contains("ragged.tsv: 3 bad rows"), "{message}");
    assert!(message.contains("line 2: expected source<TAB>target (2 fields), found 1 field"));
    assert!(message.contains("line 3: expected source<TAB>target (2 fields), found 3 fields"));
    assert!(message.contains("line 4, column `source`: the source side is empty"));
    let empty_target = TempFile::new("t.jsonl", b"{\"source\": \"a\", \"target\": \" \"}\n");
    let message = error_message(read_parallel(&empty_target.0));
    assert!(
        message.contains("line 1, column `target`: the target side is empty"),
        "{message}"
    );

    // Not UTF-8, empty.
    let latin1 = TempFile::new("latin1.tsv", b"the cat .\tle chat \xe9 .\n");
    let message = error_message(read_parallel(&latin1.0));
    assert!(message.contains("UTF-8"), "{message}");
    let empty = TempFile::new("empty.tsv", b"\n\n");
    assert!(error_message(read_parallel(&empty.0)).contains("empty"));
}

#[test]
fn the_parallel_grammar_is_deterministic_and_distinct() {
    let pairs = parallel_corpus(9, 300);
    assert_eq!(pairs, parallel_corpus(9, 300));
    assert_ne!(pairs, parallel_corpus(10, 300));
    assert_eq!(pairs[0].target, "le chat a chassé la souris .");
    let mut sources: Vec<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    assert_eq!(sources.len(), 300);
    assert!(
        pairs
            .iter()
            .all(|p| p.source.ends_with(" .") && p.target.ends_with(" ."))
    );
}

// ---------------------------------------------------------------------------------------------
// Built-in data sets
// ---------------------------------------------------------------------------------------------

#[test]
fn builtin_generators_are_deterministic_by_seed() {
    assert_eq!(toy_english_corpus(7, 50), toy_english_corpus(7, 50));
    assert_ne!(toy_english_corpus(7, 50), toy_english_corpus(8, 50));
    assert_eq!(sentiment_dataset(7, 40), sentiment_dataset(7, 40));
    assert_ne!(sentiment_dataset(7, 40), sentiment_dataset(8, 40));
    assert_eq!(qa_dataset(7, 40), qa_dataset(7, 40));
    assert_ne!(qa_dataset(7, 40), qa_dataset(8, 40));
    assert_eq!(generation_dataset(7, 40), generation_dataset(7, 40));
    assert_ne!(generation_dataset(7, 40), generation_dataset(8, 40));
    assert_eq!(nsp_documents(7, 20), nsp_documents(7, 20));
    assert_ne!(nsp_documents(7, 20), nsp_documents(8, 20));
}

#[test]
fn toy_corpus_is_one_sentence_per_line() {
    let corpus = toy_english_corpus(1, 200);
    let lines: Vec<&str> = corpus.lines().collect();
    assert_eq!(lines.len(), 200);
    for (i, line) in lines.iter().enumerate() {
        assert!(line.ends_with(" ."), "{line}");
        // Every other sentence starts with a capital, as written text does.
        let starts = if i % 2 == 1 {
            ["The ", "A "]
        } else {
            ["the ", "a "]
        };
        assert!(starts.iter().any(|s| line.starts_with(s)), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("cat chased the mouse")));
}

#[test]
fn homonyms_appear_in_both_meanings_each_in_its_own_company() {
    let corpus = toy_english_corpus(3, 2000);
    let stories: Vec<String> = nsp_documents(3, 300).concat();
    for sentences in [
        corpus.lines().map(str::to_string).collect::<Vec<_>>(),
        stories,
    ] {
        let with = |word: &str| -> Vec<&String> {
            sentences
                .iter()
                .filter(|s| s.split(' ').any(|w| w == word))
                .collect()
        };
        let banks = with("bank");
        let (river, money): (Vec<&String>, Vec<&String>) =
            banks.into_iter().partition(|s| s.contains("river"));
        assert!(
            river.len() > 20 && money.len() > 20,
            "{} / {}",
            river.len(),
            money.len()
        );
        assert!(money.iter().all(|s| s.contains("money")), "{money:?}");
        let bats = with("bat");
        let (flying, hitting): (Vec<&String>, Vec<&String>) =
            bats.into_iter().partition(|s| s.contains("fl"));
        assert!(flying.len() > 5 && hitting.len() > 5);
        assert!(hitting.iter().all(|s| s.contains("ball")), "{hitting:?}");
    }
}

#[test]
fn sentiment_is_balanced_and_polar() {
    let examples = sentiment_dataset(3, 101);
    assert_eq!(examples.len(), 101);
    assert_eq!(label_names(&examples), ["negative", "positive"]);
    let positive = examples.iter().filter(|e| e.label == "positive").count();
    assert_eq!(positive, 51);
}

#[test]
fn qa_answers_are_exact_spans() {
    for example in qa_dataset(5, 300) {
        let span = &example.context[example.answer_start..];
        assert!(span.starts_with(&example.answer), "{example:?}");
        assert!(example.question.ends_with(" ?"), "{example:?}");
    }
}

#[test]
fn generation_pairs_continue_the_prompt() {
    for example in generation_dataset(5, 50) {
        assert!(example.prompt.ends_with(" the"), "{example:?}");
        assert!(example.completion.starts_with(' '), "{example:?}");
        assert!(example.completion.ends_with(" ."), "{example:?}");
    }
}

#[test]
fn nsp_documents_are_stories() {
    for document in nsp_documents(9, 30) {
        assert!((4..=9).contains(&document.len()), "{document:?}");
        assert!(document[0].starts_with("one morning"), "{document:?}");
        assert!(document[document.len() - 1].starts_with("at night"));
    }
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

#[test]
fn train_val_split_is_shuffled_deterministic_and_never_empty() {
    let items: Vec<u32> = (0..100).collect();
    let (train, val) = train_val_split(&items, 0.1, 42);
    assert_eq!((train.len(), val.len()), (90, 10));
    assert_eq!(
        (train.clone(), val.clone()),
        train_val_split(&items, 0.1, 42)
    );
    assert_ne!(train[..10], items[..10], "should be shuffled");
    let mut all: Vec<u32> = train.iter().chain(&val).copied().collect();
    all.sort_unstable();
    assert_eq!(all, items);

    assert_eq!(train_val_split(&[1, 2], 0.0, 1).1.len(), 1);
    assert_eq!(train_val_split(&[1, 2], 1.0, 1).0.len(), 1);
    assert_eq!(train_val_split(&[1], 0.5, 1), (vec![1], vec![]));
}

#[test]
fn split_text_cuts_on_a_char_boundary() {
    let (train, val) = split_text("abcdefghij", 0.1);
    assert_eq!((train.as_str(), val.as_str()), ("abcdefghi", "j"));
    let text = "ééééé";
    let (train, val) = split_text(text, 0.4);
    assert_eq!((train.as_str(), val.as_str()), ("ééé", "éé"));
}

// ---------------------------------------------------------------------------------------------
// Batching
// ---------------------------------------------------------------------------------------------

#[test]
fn token_stream_targets_are_inputs_shifted_by_one() {
    let stream = TokenStream {
        ids: (0..50).collect(),
    };
    let mut rng = StdRng::seed_from_u64(0);
    let (inputs, targets) = stream.random_batch(4, 8, &mut rng).unwrap();
    assert_eq!(inputs.len(), 4);
    for (input, target) in inputs.iter().zip(&targets) {
        assert_eq!(input.len(), 8);
        assert_eq!(input[1..], target[..7]);
        assert_eq!(target[7], input[7] + 1);
    }

    let batches = stream.sequential_batches(4, 8, 10).unwrap();
    let windows: usize = batches.iter().map(|(i, _)| i.len()).sum();
    assert_eq!(windows, 6); // 49 / 8
}

#[test]
fn token_stream_too_short_says_how_many_tokens() {
    let stream = TokenStream { ids: vec![1, 2, 3] };
    let mut rng = StdRng::seed_from_u64(0);
    let message = error_message(stream.random_batch(2, 8, &mut rng));
    assert!(message.contains("has 3 tokens"), "{message}");
    assert!(message.contains("at least 9"), "{message}");
}

#[test]
fn pad_batch_pads_right_with_attention() {
    let (ids, attention) = pad_batch(&[vec![5, 6, 7], vec![8]], 0);
    assert_eq!(ids, [vec![5, 6, 7], vec![8, 0, 0]]);
    assert_eq!(attention, [vec![1, 1, 1], vec![1, 0, 0]]);
}

// ---------------------------------------------------------------------------------------------
// Masking and NSP
// ---------------------------------------------------------------------------------------------

#[test]
fn masking_follows_bert_statistics_and_spares_special_tokens() {
    const MASK: u32 = 4;
    const VOCAB: usize = 1000;
    let mut rng = StdRng::seed_from_u64(123);
    let config = MaskingConfig::default();
    let (mut positions, mut chosen, mut masked, mut random, mut kept) = (0, 0, 0, 0, 0);
    for _ in 0..400 {
        // [CLS] w1 .. w98 [SEP]
        let ids: Vec<u32> = (0..100).map(|i| 100 + (i * 7 % 800) as u32).collect();
        let mut special = vec![0u32; 100];
        special[0] = 1;
        special[99] = 1;
        let (inputs, labels) = mask_tokens(&ids, &special, MASK, VOCAB, &config, &mut rng);
        for i in 0..ids.len() {
            if special[i] == 1 {
                assert_eq!(inputs[i], ids[i]);
                assert_eq!(labels[i], IGNORE_INDEX);
                continue;
            }
            positions += 1;
            if labels[i] == IGNORE_INDEX {
                assert_eq!(inputs[i], ids[i]);
                continue;
            }
            assert_eq!(labels[i], i64::from(ids[i]));
            chosen += 1;
            if inputs[i] == MASK {
                masked += 1;
            } else if inputs[i] == ids[i] {
                kept += 1;
            } else {
                random += 1;
            }
        }
    }
    let fraction = |n: usize, of: usize| n as f64 / of as f64;
    assert!(
        (fraction(chosen, positions) - 0.15).abs() < 0.01,
        "{chosen}/{positions}"
    );
    assert!(
        (fraction(masked, chosen) - 0.8).abs() < 0.02,
        "{masked}/{chosen}"
    );
    assert!(
        (fraction(random, chosen) - 0.1).abs() < 0.02,
        "{random}/{chosen}"
    );
    assert!(
        (fraction(kept, chosen) - 0.1).abs() < 0.02,
        "{kept}/{chosen}"
    );
}

#[test]
fn masking_always_chooses_one_non_special_token() {
    let config = MaskingConfig::default();
    for seed in 0..50 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (_, labels) = mask_tokens(&[1, 50, 2], &[1, 0, 1], 4, 100, &config, &mut rng);
        assert_eq!(labels, [IGNORE_INDEX, 50, IGNORE_INDEX]);
    }
    let mut rng = StdRng::seed_from_u64(0);
    let (inputs, labels) = mask_tokens(&[1, 2], &[1, 1], 4, 100, &config, &mut rng);
    assert_eq!(inputs, [1, 2]);
    assert_eq!(labels, [IGNORE_INDEX, IGNORE_INDEX]);
}

#[test]
fn nsp_pairs_are_half_true_and_true_ones_follow() {
    let documents = nsp_documents(11, 60);
    let pairs = make_nsp_pairs(&documents, 1000, 5);
    assert_eq!(pairs.len(), 1000);
    assert_eq!(pairs, make_nsp_pairs(&documents, 1000, 5));
    let true_count = pairs.iter().filter(|p| p.is_next).count();
    assert!((450..=550).contains(&true_count), "{true_count}");
    let follows = |p: &NspPair| {
        documents
            .iter()
            .any(|d| d.windows(2).any(|w| w[0] == p.first && w[1] == p.second))
    };
    for pair in &pairs {
        if pair.is_next {
            assert!(follows(pair), "{pair:?}");
        }
    }
    assert!(make_nsp_pairs(&[vec!["only one".into()]], 10, 0).is_empty());
}
