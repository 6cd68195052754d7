//! The course in `lessons/`: every file parses, every "try it" names real views, presets, models,
//! layers and settings, every question's answer is what the library computes, broken files are
//! reported with their file and line, and progress survives a save and a load.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use glassbox::lessons::compute::{self, Gpu, Hardware, MeasuredRun};
use glassbox::lessons::question::{format_value, number_matches};
use glassbox::lessons::{
    ActionCommand, Block, Lesson, LessonError, ModelRef, Progress, QuestionKind, ShippedModel,
    Side, TokenRef, ViewName, load_lessons, parse_lesson,
};
use glassbox::model::config::ModelConfig;
use glassbox::model::params::Preset;
use glassbox::tokenizer::Tokenizer;
use glassbox::train::config::TrainConfig;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn course() -> Vec<Lesson> {
    let (lessons, errors) = load_lessons(&root().join("lessons"));
    assert!(
        errors.is_empty(),
        "lesson files with errors:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    lessons
}

/// A folder under the system temp dir, fresh for each test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-lessons-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

// ---------------------------------------------------------------------------------------------
// The course parses
// ---------------------------------------------------------------------------------------------

#[test]
fn every_lesson_file_parses() {
    let lessons = course();
    let files = std::fs::read_dir(root().join("lessons"))
        .expect("lessons/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter(|p| p.file_name().is_some_and(|n| n != "README.md"))
        .count();
    assert_eq!(lessons.len(), files, "every lesson file becomes a lesson");
    assert!(lessons.len() >= 8, "the course has eight topics");

    let ids: HashSet<&str> = lessons.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids.len(), lessons.len(), "lesson ids are unique");
    let orders: HashSet<i64> = lessons.iter().map(|l| l.order).collect();
    assert_eq!(orders.len(), lessons.len(), "each lesson has its own place");

    println!(
        "{:<24} {:>5} {:>7} {:>9}",
        "lesson", "steps", "actions", "questions"
    );
    for lesson in &lessons {
        let actions = lesson.actions().count();
        let questions = lesson.questions().count();
        println!(
            "{:<24} {:>5} {:>7} {:>9}",
            lesson.id,
            lesson.steps.len(),
            actions,
            questions
        );
        assert!(!lesson.summary.is_empty(), "{}: has a summary", lesson.id);
        assert!(actions >= 2, "{}: has try-it actions", lesson.id);
        assert!(questions >= 3, "{}: has questions", lesson.id);
        // Questions come at the end: the last step holds them and nothing after them is an action.
        let last = lesson.steps.last().expect("a lesson has steps");
        assert!(
            last.questions().count() > 0,
            "{}: the last step has the questions",
            lesson.id
        );
        assert!(
            last.actions().next().is_none(),
            "{}: the question step has no actions",
            lesson.id
        );
        for (index, step) in lesson.steps.iter().enumerate() {
            assert!(
                !step.title.is_empty(),
                "{}: step {} has a title",
                lesson.id,
                index + 1
            );
            assert!(
                !step.blocks.is_empty(),
                "{}: step {:?} is not empty",
                lesson.id,
                step.title
            );
        }
    }
}

#[test]
fn readme_examples_parse() {
    let readme = std::fs::read_to_string(root().join("lessons/README.md")).expect("README.md");
    // The full example sits between `~~~markdown` and `~~~`.
    let start = readme
        .find("~~~markdown\n")
        .expect("README has a full example")
        + 12;
    let end = start + readme[start..].find("\n~~~").expect("example is closed");
    let lesson = parse_lesson("README example", &readme[start..=end]).expect("example parses");
    assert_eq!(lesson.id, "attention");
    assert_eq!(lesson.steps.len(), 2);
    assert_eq!(lesson.actions().count(), 1);
    assert_eq!(lesson.questions().count(), 1);
    let question = lesson.questions().next().expect("one question");
    let verify = question.verify.as_ref().expect("with verify");
    assert_eq!(verify.evaluate(), Ok(4_194_304.0));

    // The question examples, wrapped into a lesson.
    let mut blocks = String::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("\n```question\n") {
        let block = &rest[at + 1..];
        let close = block[4..].find("\n```\n").expect("closed") + 4;
        blocks.push_str(&block[..close + 5]);
        blocks.push('\n');
        rest = &block[close..];
    }
    let text = format!("---\nid: readme\ntitle: README\n---\n## Questions\n{blocks}");
    let lesson = parse_lesson("README questions", &text).expect("README questions parse");
    assert!(lesson.questions().count() >= 3);
    for question in lesson.questions() {
        if let Some(verify) = &question.verify {
            let QuestionKind::Number { answer, tolerance } = question.kind else {
                panic!("verify on a number question");
            };
            let computed = verify.evaluate().expect("computes");
            assert!(number_matches(answer, tolerance, computed));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every action resolves
// ---------------------------------------------------------------------------------------------

/// What the shipped models look like: from `assets/NAME/config.json` when the model has been
/// made, else from the recipe that makes it, else unknown.
struct Shape {
    layers: usize,
    heads: usize,
    source: String,
}

fn shipped_shape(model: ShippedModel) -> Option<Shape> {
    let dir = root().join("assets").join(model.name());
    let config = dir.join("config.json");
    if config.exists() {
        let config = ModelConfig::from_file(&config).expect("shipped config.json loads");
        return Some(Shape {
            layers: config.num_layers(),
            heads: config.num_heads(),
            source: dir.join("config.json").display().to_string(),
        });
    }
    let recipe = dir.join("recipe.toml");
    if recipe.exists() {
        println!(
            "note: {} has no config.json yet; checking layers and heads against its recipe",
            dir.display()
        );
        let recipe = TrainConfig::from_file(&recipe, &[]).expect("shipped recipe parses");
        return Some(Shape {
            layers: recipe.model.n_layer,
            heads: recipe.model.n_head,
            source: dir.join("recipe.toml").display().to_string(),
        });
    }
    println!(
        "note: {} not found; layer/head ranges not checked for it",
        dir.display()
    );
    None
}

fn shipped_tokenizer(model: ShippedModel) -> Option<Tokenizer> {
    let path = root()
        .join("assets")
        .join(model.name())
        .join("tokenizer.json");
    if !path.exists() {
        println!(
            "note: {} not found; token names not checked against it",
            path.display()
        );
        return None;
    }
    Some(Tokenizer::from_file(&path).expect("shipped tokenizer loads"))
}

fn contains_word(text: &str, word: &str) -> bool {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .any(|w| w == word.to_lowercase())
}

#[test]
fn every_action_resolves() {
    let lessons = course();
    let gpt_shape = shipped_shape(ShippedModel::TinyGpt);
    let bert_shape = shipped_shape(ShippedModel::TinyBert);
    let gpt_tokenizer = shipped_tokenizer(ShippedModel::TinyGpt);
    let bert_tokenizer = shipped_tokenizer(ShippedModel::TinyBert);
    let translator_shape = shipped_shape(ShippedModel::TinyTranslator);
    let shape = |side: Side| match side {
        Side::Gpt => gpt_shape.as_ref(),
        Side::Bert => bert_shape.as_ref(),
        Side::Translator => translator_shape.as_ref(),
    };

    // Views the app has now; a view the lessons use that is not there yet is reported.
    let app_views: BTreeSet<String> = glassbox::app::panels::all()
        .iter()
        .map(|p| p.id().to_string())
        .collect();
    for id in &app_views {
        assert!(
            id.parse::<ViewName>().is_ok(),
            "the app's view {id:?} has a ViewName"
        );
    }
    let mut missing_views = BTreeSet::new();

    for lesson in &lessons {
        // The text the views show, as the lesson's buttons set it in reading order.
        let mut text = String::new();
        for action in lesson.actions() {
            let at = format!(
                "{}:{} ({:?})",
                lesson.file.display(),
                action.line,
                action.label
            );
            assert!(!action.label.trim().is_empty(), "{at}: has a label");
            for command in &action.commands {
                match command {
                    ActionCommand::LoadModel(model) => assert!(
                        matches!(model, ModelRef::Shipped(_)),
                        "{at}: the course works offline, so it loads only shipped models, not {model}"
                    ),
                    ActionCommand::SetText(t) => text = t.clone(),
                    ActionCommand::OpenView(view) if !app_views.contains(view.id()) => {
                        missing_views.insert(view.id());
                    }
                    ActionCommand::SelectLayerHead { side, layer, head } => {
                        let sides = match side {
                            Some(side) => vec![*side],
                            None => vec![Side::Gpt, Side::Bert],
                        };
                        for side in sides {
                            if let Some(shape) = shape(side) {
                                assert!(
                                    *layer < shape.layers,
                                    "{at}: layer {layer} does not exist in {} ({} layers)",
                                    shape.source,
                                    shape.layers
                                );
                                if let Some(head) = head {
                                    assert!(
                                        *head < shape.heads,
                                        "{at}: head {head} does not exist in {} ({} heads)",
                                        shape.source,
                                        shape.heads
                                    );
                                }
                            }
                        }
                    }
                    ActionCommand::SelectToken { side, token } => {
                        check_token(&at, &text, token, *side, &gpt_tokenizer, &bert_tokenizer)
                    }
                    ActionCommand::MaskToken(token) => check_token(
                        &at,
                        &text,
                        token,
                        Some(Side::Bert),
                        &gpt_tokenizer,
                        &bert_tokenizer,
                    ),
                    ActionCommand::SelectPreset(preset) => {
                        assert!(preset.breakdown().exact_total > 0, "{at}: preset counts")
                    }
                    ActionCommand::SetCustomConfig(spec) => {
                        let breakdown = glassbox::model::params::breakdown(
                            spec,
                            glassbox::model::params::Heads::base_model(spec),
                        );
                        assert!(breakdown.exact_total > 0, "{at}: custom config counts");
                    }
                    ActionCommand::StartTraining(settings) => {
                        settings
                            .to_train_config()
                            .validate()
                            .unwrap_or_else(|e| panic!("{at}: training settings: {e}"));
                        assert!(
                            settings.steps <= 1000,
                            "{at}: a lesson's run stays short on a laptop"
                        );
                    }
                    ActionCommand::StartFinetune(settings) => {
                        let ModelRef::Shipped(from) = &settings.from else {
                            panic!("{at}: fine-tunes a shipped model");
                        };
                        assert_eq!(
                            from.side() == Side::Gpt,
                            settings.objective.is_causal(),
                            "{at}: the model fits the task"
                        );
                        let init = root().join("assets").join(from.name());
                        settings
                            .to_train_config(init)
                            .validate()
                            .unwrap_or_else(|e| panic!("{at}: fine-tuning settings: {e}"));
                        assert!(settings.steps <= 1000, "{at}: stays short");
                    }
                    ActionCommand::ShowCalculator(inputs) => {
                        if let Hardware::Gpu(_) = inputs.hardware {
                            compute::estimate(
                                inputs.parameters.value(),
                                inputs.tokens,
                                inputs.hardware,
                                inputs.gpus,
                                inputs.utilisation,
                            )
                            .unwrap_or_else(|e| panic!("{at}: calculator: {e}"));
                        }
                    }
                    ActionCommand::CompareWord {
                        word,
                        sentence_a,
                        sentence_b,
                    } => {
                        assert!(contains_word(sentence_a, word), "{at}: word in sentence A");
                        assert!(contains_word(sentence_b, word), "{at}: word in sentence B");
                    }
                    ActionCommand::AskQuestion(_) => {
                        assert!(!text.is_empty(), "{at}: QA needs a context text first")
                    }
                    _ => {}
                }
                // Every command names the view it acts in (the lesson runner switches to it).
                let _ = command.view();
                assert!(!command.describe().is_empty());
            }
        }
    }
    if !missing_views.is_empty() {
        println!(
            "note: views used by the lessons that the app does not have yet: {}",
            missing_views.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}

/// A token named by a button exists in the current text (and, when the shipped tokenizer is
/// there, among its tokens).
fn check_token(
    at: &str,
    text: &str,
    token: &TokenRef,
    side: Option<Side>,
    gpt: &Option<Tokenizer>,
    bert: &Option<Tokenizer>,
) {
    assert!(
        !text.is_empty(),
        "{at}: a token is selected after a text is set"
    );
    if let TokenRef::Word(word) = token {
        assert!(
            contains_word(text, word),
            "{at}: the word {word:?} is in the text {text:?}"
        );
    }
    let sides = match side {
        Some(side) => vec![side],
        None => vec![Side::Gpt, Side::Bert],
    };
    for side in sides {
        let tokenizer = match side {
            Side::Gpt => gpt,
            Side::Bert => bert,
            // The translator's tokens are checked by tests/train/assets.rs.
            Side::Translator => &None,
        };
        let Some(tokenizer) = tokenizer else { continue };
        let tokens = tokenizer.encode(text, true).expect("encodes").tokens;
        assert!(
            token.find(&tokens).is_some(),
            "{at}: token {token} is one of the {} tokens {tokens:?}",
            side.name()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Every answer is what the library computes
// ---------------------------------------------------------------------------------------------

#[test]
fn every_answer_is_what_the_library_computes() {
    let mut checked = 0;
    for lesson in course() {
        for question in lesson.questions() {
            let at = format!("{}:{}", lesson.file.display(), question.line);
            match &question.kind {
                QuestionKind::MultipleChoice {
                    choices,
                    answer_index,
                    why_wrong,
                } => {
                    assert!(*answer_index < choices.len(), "{at}: answer is a choice");
                    // Questions that teach: every wrong pick says why it is wrong.
                    for (i, choice) in choices.iter().enumerate() {
                        if i != *answer_index {
                            let why = why_wrong.get(i).map_or("", String::as_str);
                            assert!(!why.is_empty(), "{at}: no `why-{}:` for {choice:?}", i + 1);
                            let verdict = question.check_choice(i);
                            assert!(verdict.message.contains(why), "{at}: {verdict:?}");
                        }
                    }
                    let unique: HashSet<&String> = choices.iter().collect();
                    assert_eq!(unique.len(), choices.len(), "{at}: choices differ");
                    assert!(question.check_choice(*answer_index).correct, "{at}");
                    assert!(
                        question.check(&(answer_index + 1).to_string()).correct,
                        "{at}"
                    );
                    let wrong = (answer_index + 1) % choices.len();
                    assert!(!question.check_choice(wrong).correct, "{at}");
                }
                QuestionKind::Number { answer, tolerance } => {
                    let verify = question.verify.as_ref().unwrap_or_else(|| {
                        panic!("{at}: a number question says how the app computes it (verify:)")
                    });
                    let computed = verify
                        .evaluate()
                        .unwrap_or_else(|e| panic!("{at}: verify {verify}: {e}"));
                    assert!(
                        number_matches(*answer, *tolerance, computed),
                        "{at}: the stated answer {answer} (± {tolerance}) is not what the \
                         library computes for `{verify}`: {computed}"
                    );
                    // A tolerance is there for rounding, not for sloppiness.
                    assert!(
                        *tolerance <= 0.02 * answer.abs(),
                        "{at}: tolerance at most 2%"
                    );
                    assert!(question.check(&format_value(*answer)).correct, "{at}");
                    assert!(question.check(&computed.to_string()).correct, "{at}");
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 24,
        "the course asks enough questions ({checked})"
    );
}

#[test]
fn questions_accept_numbers_as_people_type_them() {
    let text = "---\nid: t\ntitle: T\n---\n## Q\n```question\nask: 4·1024²?\nanswer: 4194304\n\
                explain: 4 × 1024².\n```\n```question\nask: Which?\nchoices:\n- GPT\n- BERT\n\
                answer: 2\n```\n";
    let lesson = parse_lesson("t.md", text).expect("parses");
    let questions: Vec<_> = lesson.questions().collect();
    let number = questions[0];
    for given in [
        "4194304",
        "4,194,304",
        "4_194_304",
        " 4 194 304 ",
        "4.194304e6",
        "4.194304M",
    ] {
        assert!(number.check(given).correct, "{given:?}");
    }
    let wrong = number.check("4000000");
    assert!(!wrong.correct);
    assert!(wrong.message.contains("too low"), "{}", wrong.message);
    assert!(!number.check("four million").correct);
    assert!(number.check("4194304").message.contains("4 × 1024²"));

    let choice = questions[1];
    for given in ["2", "b", "B)", "bert", "BERT"] {
        assert!(choice.check(given).correct, "{given:?}");
    }
    for given in ["1", "a", "GPT", "3", "z", ""] {
        assert!(!choice.check(given).correct, "{given:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The compute calculator against the course's figures
// ---------------------------------------------------------------------------------------------

#[test]
fn calculator_matches_the_course_figures_for_gpt3() {
    // 175B parameters, 300B tokens: ≈ 3.14e23 FLOPs ≈ 3,640 petaflop/s-days (GPT-3 paper).
    let flops = compute::training_flops(175e9, 300e9);
    assert!((flops / 3.14e23 - 1.0).abs() < 0.005, "{flops:e}");
    let exact = Preset::Gpt3_175b.breakdown().exact_total as f64;
    let flops_exact = compute::training_flops(exact, 300e9);
    assert!(
        (flops_exact / 3.14e23 - 1.0).abs() < 0.001,
        "{flops_exact:e}"
    );
    let pf_days = compute::petaflop_s_days(flops_exact);
    assert!((pf_days / 3640.0 - 1.0).abs() < 0.002, "{pf_days}");

    // The course's "~34 days on 1,024 A100s" is 6·N·T at about a third of peak.
    let a100 =
        compute::estimate(175e9, 300e9, Hardware::Gpu(Gpu::A100), 1024, 0.33).expect("estimate");
    assert!((33.0..36.0).contains(&a100.wall_days), "{}", a100.wall_days);
    assert!((a100.gpu_days / a100.wall_days - 1024.0).abs() < 1e-6);

    // The $4.6M estimate: V100s at 28 TFLOP/s sustained, $1.50 per GPU-hour.
    let v100 = compute::estimate(175e9, 300e9, Hardware::Gpu(Gpu::V100), 1, 28.0 / 125.0)
        .expect("estimate");
    let cost = v100.cost(1.5);
    assert!((cost / 4.6e6 - 1.0).abs() < 0.03, "{cost}");

    // The H100 is faster by the ratio of the peaks.
    let h100 =
        compute::estimate(175e9, 300e9, Hardware::Gpu(Gpu::H100Sxm), 1024, 0.33).expect("estimate");
    assert!((a100.wall_days / h100.wall_days - 989.0 / 312.0).abs() < 1e-9);
}

#[test]
fn calculator_turns_a_measured_run_into_gpt3_time() {
    // A mini run: 120k parameters at 20,000 tokens/s.
    let run = MeasuredRun::new(120_000.0, 20_000.0).expect("valid run");
    assert!((run.achieved_flops_per_s() - 1.44e10).abs() < 1.0);
    let gpt3 = run.estimate(175e9, 300e9).expect("estimate");
    assert!((gpt3.seconds * gpt3.achieved_flops_per_s - gpt3.flops).abs() / gpt3.flops < 1e-12);
    assert!((gpt3.days - gpt3.seconds / 86_400.0).abs() < 1e-6);
    assert!(gpt3.years > 600_000.0, "{} years", gpt3.years);
    assert!((gpt3.times_slower_than_one_a100 - 312e12 / 1.44e10).abs() < 1e-6);
    assert!(compute::format_duration(gpt3.seconds).ends_with("years"));
    assert!(MeasuredRun::new(120_000.0, 0.0).is_err());
    assert!(run.estimate(0.0, 1.0).is_err());
}

// ---------------------------------------------------------------------------------------------
// Broken lessons are reported with file and line
// ---------------------------------------------------------------------------------------------

fn error_of(text: &str) -> LessonError {
    parse_lesson("broken.md", text).expect_err("the lesson is malformed")
}

const HEAD: &str = "---\nid: broken\ntitle: Broken\norder: 9\n---\n";

#[test]
fn malformed_lessons_name_file_and_line() {
    // (lesson text, line of the problem, words the message contains)
    let cases: Vec<(String, usize, &str)> = vec![
        ("## Step\nText.\n".to_string(), 1, "front matter"),
        ("---\nid: x\ntitle: X\n".to_string(), 1, "never closed"),
        (
            "---\nid: Bad Id\ntitle: X\n---\n## S\nt\n".to_string(),
            2,
            "id",
        ),
        ("---\nid: x\ncolour: red\n---\n".to_string(), 3, "colour"),
        (
            format!("{HEAD}## S\n\n```try\nlabel: Go\nview: atention\n```\n"),
            10,
            "unknown view",
        ),
        (
            format!("{HEAD}## S\n```try\nlabel: Go\nview: attention\n"),
            7,
            "never closed",
        ),
        (
            format!("{HEAD}## S\n```try\nview: attention\n```\n"),
            7,
            "label",
        ),
        (
            format!("{HEAD}## S\n```try\nlabel: Go\npreset: gpt5\n```\n"),
            9,
            "unknown preset",
        ),
        // A button's view must not depend on what an earlier button left.
        (
            format!("{HEAD}## S\n```try\nlabel: Go\nstage: softmax\nlayer: 0\n```\n"),
            7,
            "give it a `text:` line",
        ),
        (
            format!("{HEAD}## S\n```try\nlabel: Go\ntext: the cat\nview: predict\n```\n"),
            7,
            "`side: gpt` or `side: bert`",
        ),
        (
            format!(
                "{HEAD}## S\n```try\nlabel: Go\nload: tiny-translator\ntext: a\nview: predict\n```\n"
            ),
            7,
            "Translate view",
        ),
        (
            format!("{HEAD}## S\n```try\nlabel: Go\nhead: 2\n```\n"),
            9,
            "layer",
        ),
        (
            format!("{HEAD}## S\n```try\nlabel: Go\nflavour: sweet\n```\n"),
            9,
            "unknown key",
        ),
        (
            format!("{HEAD}## S\n```try\nlabel: Go\nsteps: 10\n```\n"),
            9,
            "train",
        ),
        (
            format!(
                "{HEAD}## S\n```try\nlabel: Go\ntrain: causal-lm\nsize: layers=2 heads=3 embd=64\n```\n"
            ),
            10,
            "divisible",
        ),
        (
            format!("{HEAD}## S\n```try\nlabel: Go\nfinetune: generation\nfrom: tiny-bert\n```\n"),
            9,
            "GPT",
        ),
        (
            format!("{HEAD}## S\n```question\nask: Which?\nchoices:\n- a\n- b\nanswer: 3\n```\n"),
            12,
            "1 to 2",
        ),
        (
            format!("{HEAD}## S\n```question\nask: How many?\nanswer: lots\n```\n"),
            9,
            "number",
        ),
        (
            format!("{HEAD}## S\n```question\nanswer: 3\n```\n"),
            7,
            "ask",
        ),
        (
            format!(
                "{HEAD}## S\n```question\nask: How many?\nanswer: 3\nverify: params bert-huge exact\n```\n"
            ),
            10,
            "unknown preset",
        ),
        (
            format!(
                "{HEAD}## S\n```question\nask: Q\nanswer: 1\n```\n```question\nid: q1\nask: R\nanswer: 2\n```\n"
            ),
            11,
            "twice",
        ),
        (
            format!("{HEAD}## S\nText\n```python\nprint(1)\n"),
            8,
            "never closed",
        ),
        (HEAD.to_string(), 5, "no steps"),
    ];
    for (text, line, words) in cases {
        let error = error_of(&text);
        assert_eq!(error.file, Path::new("broken.md"), "{error}");
        assert_eq!(
            error.line, line,
            "wrong line for: {error}\n--- lesson ---\n{text}"
        );
        assert!(
            error.message.to_lowercase().contains(&words.to_lowercase()),
            "{error:?} should mention {words:?}"
        );
        let shown = error.to_string();
        assert!(shown.starts_with(&format!("broken.md:{line}: ")), "{shown}");
    }
}

#[test]
fn a_broken_file_does_not_stop_the_others() {
    let dir = temp_dir("broken");
    let good = format!("{HEAD}## S\nHello.\n");
    std::fs::write(dir.join("01-good.md"), good.replace("broken", "good")).expect("write");
    std::fs::write(
        dir.join("02-bad.md"),
        format!("{HEAD}## S\n```try\nlabel: Go\nview: nowhere\n```\n"),
    )
    .expect("write");
    std::fs::write(dir.join("03-same-id.md"), good.replace("broken", "good")).expect("write");
    std::fs::write(dir.join("README.md"), "not a lesson").expect("write");
    std::fs::write(dir.join("notes.txt"), "not a lesson either").expect("write");

    let (lessons, errors) = load_lessons(&dir);
    assert_eq!(lessons.len(), 1);
    assert_eq!(lessons[0].id, "good");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].file, dir.join("02-bad.md"));
    assert_eq!(errors[0].line, 9);
    assert!(errors[0].message.contains("unknown view"));
    assert_eq!(errors[1].file, dir.join("03-same-id.md"));
    assert!(errors[1].message.contains("already used"));

    let (none, missing) = load_lessons(&dir.join("does-not-exist"));
    assert!(none.is_empty());
    assert_eq!(missing.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn steps_split_at_headings_and_rules_but_not_inside_code() {
    let text = format!(
        "{HEAD}Intro text.\n\n## First\nA\n\n```python\n---\n## not a step\n```\n---\n## Second\n\
         B\n---\nC, untitled\n"
    );
    let lesson = parse_lesson("x.md", &text).expect("parses");
    let titles: Vec<&str> = lesson.steps.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(titles, ["", "First", "Second", ""]);
    let Block::Markdown(first) = &lesson.steps[1].blocks[0] else {
        panic!("markdown");
    };
    assert!(first.contains("## not a step"), "{first}");
    assert_eq!(lesson.steps[3].display_title(3), "Step 4");
    assert_eq!(lesson.order, 9);
}

#[test]
fn an_action_keeps_its_commands_in_order() {
    let text = format!(
        "{HEAD}## S\n```try\nlabel: \"Both, # not a comment\"\nload: tiny-gpt   # a comment\n\
         text: the cat # chased\nview: Step through\nside: gpt\nstage: softmax\nlayer: 1\nhead: 3\n\
         temperature: 0.5\ntop-k: 4\n```\n"
    );
    let lesson = parse_lesson("x.md", &text).expect("parses");
    let action = lesson.actions().next().expect("an action");
    assert_eq!(action.label, "Both, # not a comment");
    use glassbox::lessons::{Sampling, Stage};
    assert_eq!(
        action.commands,
        vec![
            ActionCommand::LoadModel(ModelRef::Shipped(ShippedModel::TinyGpt)),
            ActionCommand::SetText("the cat # chased".into()),
            // Added by the parser: a new text is one sentence unless `pair:` says otherwise.
            ActionCommand::SetPair(None),
            ActionCommand::OpenView(ViewName::StepThrough),
            ActionCommand::StepThrough {
                side: Some(Side::Gpt),
                stage: Stage::Softmax
            },
            ActionCommand::SelectLayerHead {
                side: Some(Side::Gpt),
                layer: 1,
                head: Some(3)
            },
            ActionCommand::SetSampling(Sampling {
                temperature: Some(0.5),
                top_k: Some(4),
                top_p: None
            }),
            // Added by the parser: sampling is GPT's, so the Predict view shows the GPT.
            ActionCommand::ShowSide(Side::Gpt),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------

#[test]
fn progress_round_trips_through_a_file() {
    let lessons = course();
    let lesson = &lessons[0];
    let dir = temp_dir("progress");
    let path = dir.join("nested").join("progress.json");

    // No file yet: a fresh start.
    let mut progress = Progress::load(&path).expect("missing file is fine");
    assert_eq!(progress, Progress::default());
    assert_eq!(progress.summary(lesson).steps_done, 0);

    progress.complete_step(&lesson.id, 0);
    progress.complete_step(&lesson.id, 1);
    progress.set_position(&lesson.id, 2);
    let question = lesson.questions().next().expect("a question");
    let wrong = question.check("definitely wrong");
    progress.record_answer(&lesson.id, &question.id, "definitely wrong", &wrong);
    let right_text = match &question.kind {
        QuestionKind::MultipleChoice { answer_index, .. } => (answer_index + 1).to_string(),
        QuestionKind::Number { answer, .. } => format_value(*answer),
    };
    let right = question.check(&right_text);
    assert!(right.correct);
    progress.record_answer(&lesson.id, &question.id, &right_text, &right);
    // A later wrong answer does not undo a correct one.
    progress.record_answer(&lesson.id, &question.id, "oops", &wrong);

    progress.save(&path).expect("saves");
    let loaded = Progress::load(&path).expect("loads");
    assert_eq!(loaded, progress);
    assert_eq!(loaded.current_lesson.as_deref(), Some(lesson.id.as_str()));
    let record = loaded.answer(&lesson.id, &question.id).expect("recorded");
    assert!(record.correct);
    assert_eq!(record.attempts, 3);
    assert_eq!(record.given, "oops");
    let summary = loaded.summary(lesson);
    assert_eq!(summary.steps_done, 2);
    assert_eq!(summary.questions_correct, 1);
    assert_eq!(summary.questions_answered, 1);
    assert!(!summary.is_complete());
    assert!(summary.fraction() > 0.0 && summary.fraction() < 1.0);
    assert!(loaded.is_step_complete(&lesson.id, 1));

    // A file that is not progress JSON is an error naming it, and is left alone.
    std::fs::write(&path, "{ not json").expect("write");
    let error = Progress::load(&path).expect_err("corrupt file");
    assert!(error.to_string().contains("progress.json"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "{ not json");

    // The default location is the user's data folder.
    if let Some(default) = Progress::default_path() {
        assert!(
            default.ends_with("glassbox/progress.json"),
            "{}",
            default.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// What the lessons say the shipped models do
// ---------------------------------------------------------------------------------------------

fn load_shipped(model: ShippedModel) -> Option<glassbox::model::checkpoint::LoadedModel> {
    let dir = root().join("assets").join(model.name());
    if !dir.join("model.safetensors").exists() {
        println!(
            "note: {} has no weights yet; the lessons' claims about it are not checked",
            dir.display()
        );
        return None;
    }
    Some(
        glassbox::model::checkpoint::load_dir(&dir, &candle_core::Device::Cpu)
            .expect("shipped model loads"),
    )
}

fn plain(token: &str) -> String {
    token.trim_start_matches('Ġ').trim().to_string()
}

#[test]
fn the_lessons_claims_about_the_shipped_models_hold() {
    use glassbox::inspect::{Predictions, inspect};
    if let Some(gpt) = load_shipped(ShippedModel::TinyGpt) {
        // Lessons 1 and 6: cats chase mice, dogs chase cats, foxes chase rabbits.
        for (text, next) in [
            ("the cat chased the", "mouse"),
            ("the dog chased the", "cat"),
            ("the fox chased the", "rabbit"),
        ] {
            let inspection = inspect(&gpt, text, None, 5).expect("inspects");
            let Predictions::NextToken { top } = inspection.predictions else {
                panic!("GPT predicts the next token");
            };
            assert_eq!(plain(&top[0].token), next, "{text:?} → {top:?}");
        }
    }
    if let Some(bert) = load_shipped(ShippedModel::TinyBert) {
        // Lesson 5: fill-mask.
        for (text, hidden) in [
            ("the cat chased the [MASK] .", "mouse"),
            ("the [MASK] ate the cheese .", "mouse"),
        ] {
            let inspection = inspect(&bert, text, None, 5).expect("inspects");
            let Predictions::FillMask { masks, .. } = inspection.predictions else {
                panic!("BERT fills masks");
            };
            assert_eq!(masks[0].top[0].token, hidden, "{text:?} → {masks:?}");
        }
        // Lesson 5: next-sentence prediction prefers the true continuation.
        let first = "one morning the cat woke up in the barn .";
        let is_next = |second: &str| {
            let inspection = inspect(&bert, first, Some(second), 5).expect("inspects");
            let Predictions::FillMask { is_next_prob, .. } = inspection.predictions else {
                panic!("BERT pretraining heads");
            };
            is_next_prob.expect("the tiny BERT has an NSP head")
        };
        let true_next = is_next("the cat saw a mouse near the river .");
        let random = is_next("at night the dog slept in the shed .");
        assert!(
            true_next > random,
            "NSP: true {true_next} vs random {random}"
        );
    }
}

/// Lesson files are user input: whatever a teacher's edit leaves behind, parsing returns a lesson
/// or an error, never a panic. Tried here with every lesson cut short at every line, and with
/// every single line removed or doubled.
#[test]
fn no_edit_of_a_lesson_panics() {
    let mut tried = 0;
    for lesson in course() {
        let text = std::fs::read_to_string(&lesson.file).expect("read lesson");
        let lines: Vec<&str> = text.lines().collect();
        for cut in 0..lines.len() {
            let variants = [
                lines[..cut].join("\n"),
                [&lines[..cut], &lines[cut + 1..]].concat().join("\n"),
                [&lines[..=cut], &lines[cut..]].concat().join("\n"),
            ];
            for variant in variants {
                match parse_lesson(&lesson.file, &variant) {
                    Ok(_) => {}
                    Err(error) => {
                        assert_eq!(error.file, lesson.file);
                        assert!(error.line <= lines.len() + 1, "{error}");
                        assert!(!error.message.is_empty());
                    }
                }
                tried += 1;
            }
        }
    }
    assert!(tried > 1000);
}
