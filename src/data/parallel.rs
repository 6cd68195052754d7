//! Parallel corpora for translation: the built-in English → French grammar, and the user's own
//! pairs from a TSV (`source<TAB>target`) or JSONL (`{"source": ..., "target": ...}`) file.
//!
//! The grammar is small but has what makes cross-attention worth watching: French nouns have a
//! gender that the articles follow (le/la, un/une, les), most adjectives move after the noun
//! ("the black cat" → "le chat noir") while a few stay before it ("the small cat" → "le petit
//! chat"), plurals change articles, nouns, adjectives and verbs together, and the past tense is
//! two words ("chased" → "a chassé"). "the cat chased the mouse ." → "le chat a chassé la
//! souris ." is one of its sentences.

use std::collections::HashSet;
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::files::{RowError, json_objects, read_nonempty, strict, string_field};
use crate::error::Result;

/// One sentence and its translation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TranslationPair {
    pub source: String,
    pub target: String,
}

impl TranslationPair {
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The lexicon
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gender {
    Masculine,
    Feminine,
}

/// A noun: English singular and plural, French singular and plural, French gender. No French
/// noun starts with a vowel, so the articles never elide (no "l'").
struct Noun {
    en: &'static str,
    en_plural: &'static str,
    fr: &'static str,
    fr_plural: &'static str,
    gender: Gender,
}

const fn noun(
    en: &'static str,
    en_plural: &'static str,
    fr: &'static str,
    fr_plural: &'static str,
    gender: Gender,
) -> Noun {
    Noun {
        en,
        en_plural,
        fr,
        fr_plural,
        gender,
    }
}

use Gender::{Feminine as F, Masculine as M};

/// Who acts (subjects, and objects too).
const ANIMALS: &[Noun] = &[
    noun("cat", "cats", "chat", "chats", M),
    noun("dog", "dogs", "chien", "chiens", M),
    noun("mouse", "mice", "souris", "souris", F),
    noun("fox", "foxes", "renard", "renards", M),
    noun("horse", "horses", "cheval", "chevaux", M),
    noun("frog", "frogs", "grenouille", "grenouilles", F),
    noun("rabbit", "rabbits", "lapin", "lapins", M),
    noun("duck", "ducks", "canard", "canards", M),
    noun("cow", "cows", "vache", "vaches", F),
    noun("girl", "girls", "fille", "filles", F),
    noun("boy", "boys", "garçon", "garçons", M),
    noun("goat", "goats", "chèvre", "chèvres", F),
];

/// What is acted on.
const THINGS: &[Noun] = &[
    noun("ball", "balls", "balle", "balles", F),
    noun("apple", "apples", "pomme", "pommes", F),
    noun("cheese", "cheeses", "fromage", "fromages", M),
    noun("carrot", "carrots", "carotte", "carottes", F),
    noun("fish", "fish", "poisson", "poissons", M),
    noun("book", "books", "livre", "livres", M),
    noun("hat", "hats", "chapeau", "chapeaux", M),
    noun("box", "boxes", "boîte", "boîtes", F),
    noun("cake", "cakes", "gâteau", "gâteaux", M),
    noun("door", "doors", "porte", "portes", F),
];

/// Where things happen, after "in", "under", "on" or "near".
const PLACES: &[Noun] = &[
    noun("garden", "gardens", "jardin", "jardins", M),
    noun("house", "houses", "maison", "maisons", F),
    noun("barn", "barns", "grange", "granges", F),
    noun("field", "fields", "champ", "champs", M),
    noun("kitchen", "kitchens", "cuisine", "cuisines", F),
    noun("forest", "forests", "forêt", "forêts", F),
];

/// English, then French (masculine, feminine, masculine plural, feminine plural), and whether
/// the French adjective comes before the noun (petit, grand) rather than after it.
struct Adjective {
    en: &'static str,
    fr: [&'static str; 4],
    before_noun: bool,
}

const fn adjective(en: &'static str, fr: [&'static str; 4], before_noun: bool) -> Adjective {
    Adjective {
        en,
        fr,
        before_noun,
    }
}

const ADJECTIVES: &[Adjective] = &[
    adjective("black", ["noir", "noire", "noirs", "noires"], false),
    adjective("white", ["blanc", "blanche", "blancs", "blanches"], false),
    adjective("red", ["rouge", "rouge", "rouges", "rouges"], false),
    adjective("green", ["vert", "verte", "verts", "vertes"], false),
    adjective("grey", ["gris", "grise", "gris", "grises"], false),
    adjective(
        "happy",
        ["content", "contente", "contents", "contentes"],
        false,
    ),
    adjective(
        "tired",
        ["fatigué", "fatiguée", "fatigués", "fatiguées"],
        false,
    ),
    adjective("small", ["petit", "petite", "petits", "petites"], true),
    adjective("big", ["grand", "grande", "grands", "grandes"], true),
];

/// A transitive verb: English past, present (he/she) and present (they); French past
/// participle, present (il/elle) and present (ils/elles). The past is "a"/"ont" + participle.
struct Verb {
    en_past: &'static str,
    en_present: &'static str,
    en_present_plural: &'static str,
    fr_participle: &'static str,
    fr_present: &'static str,
    fr_present_plural: &'static str,
}

const fn verb(en: [&'static str; 3], fr: [&'static str; 3]) -> Verb {
    Verb {
        en_past: en[0],
        en_present: en[1],
        en_present_plural: en[2],
        fr_participle: fr[0],
        fr_present: fr[1],
        fr_present_plural: fr[2],
    }
}

const VERBS: &[Verb] = &[
    verb(
        ["chased", "chases", "chase"],
        ["chassé", "chasse", "chassent"],
    ),
    verb(["saw", "sees", "see"], ["vu", "voit", "voient"]),
    verb(["found", "finds", "find"], ["trouvé", "trouve", "trouvent"]),
    verb(["ate", "eats", "eat"], ["mangé", "mange", "mangent"]),
    verb(
        ["carried", "carries", "carry"],
        ["porté", "porte", "portent"],
    ),
    verb(
        ["watched", "watches", "watch"],
        ["regardé", "regarde", "regardent"],
    ),
    verb(
        ["followed", "follows", "follow"],
        ["suivi", "suit", "suivent"],
    ),
    verb(
        ["heard", "hears", "hear"],
        ["entendu", "entend", "entendent"],
    ),
    verb(
        ["pushed", "pushes", "push"],
        ["poussé", "pousse", "poussent"],
    ),
    verb(["liked", "likes", "like"], ["aimé", "aime", "aiment"]),
];

/// Intransitive verbs, in the same layout.
const INTRANSITIVE_VERBS: &[Verb] = &[
    verb(["slept", "sleeps", "sleep"], ["dormi", "dort", "dorment"]),
    verb(["ran", "runs", "run"], ["couru", "court", "courent"]),
    verb(["jumped", "jumps", "jump"], ["sauté", "saute", "sautent"]),
    verb(["played", "plays", "play"], ["joué", "joue", "jouent"]),
];

const PREPOSITIONS: &[(&str, &str)] = &[
    ("in", "dans"),
    ("under", "sous"),
    ("on", "sur"),
    ("near", "près de"),
];

// ---------------------------------------------------------------------------------------------
// The grammar
// ---------------------------------------------------------------------------------------------

/// A noun phrase in both languages.
struct Phrase {
    en: String,
    fr: String,
    plural: bool,
}

/// "the/a [adjective] noun" and its French, with gender and number agreement.
fn noun_phrase(rng: &mut StdRng, nouns: &[Noun], allow_adjective: bool) -> Phrase {
    let noun = nouns.choose(rng).expect("the lexicon is not empty");
    let plural = rng.random_bool(0.25);
    let definite = plural || rng.random_bool(0.75);
    let adjective = (allow_adjective && rng.random_bool(0.4))
        .then(|| ADJECTIVES.choose(rng).expect("the lexicon is not empty"));
    let feminine = noun.gender == F;
    let en_determiner = if definite { "the" } else { "a" };
    let fr_determiner = match (definite, plural, feminine) {
        (_, true, _) => "les",
        (true, false, false) => "le",
        (true, false, true) => "la",
        (false, false, false) => "un",
        (false, false, true) => "une",
    };
    let en_noun = if plural { noun.en_plural } else { noun.en };
    let fr_noun = if plural { noun.fr_plural } else { noun.fr };
    let (en, fr) = match adjective {
        None => (
            format!("{en_determiner} {en_noun}"),
            format!("{fr_determiner} {fr_noun}"),
        ),
        Some(adjective) => {
            let form = adjective.fr[usize::from(feminine) + 2 * usize::from(plural)];
            let fr = if adjective.before_noun {
                format!("{fr_determiner} {form} {fr_noun}")
            } else {
                format!("{fr_determiner} {fr_noun} {form}")
            };
            (format!("{en_determiner} {} {en_noun}", adjective.en), fr)
        }
    };
    Phrase { en, fr, plural }
}

/// The verb in both languages, agreeing with the subject's number.
fn verb_forms(verb: &Verb, past: bool, plural_subject: bool) -> (String, String) {
    match (past, plural_subject) {
        (true, false) => (verb.en_past.into(), format!("a {}", verb.fr_participle)),
        (true, true) => (verb.en_past.into(), format!("ont {}", verb.fr_participle)),
        (false, false) => (verb.en_present.into(), verb.fr_present.into()),
        (false, true) => (verb.en_present_plural.into(), verb.fr_present_plural.into()),
    }
}

/// "near the garden" → "près du jardin": French contracts "de le" to "du" and "de les" to "des".
fn place_phrase(rng: &mut StdRng) -> (String, String) {
    let (en_preposition, fr_preposition) = *PREPOSITIONS.choose(rng).expect("not empty");
    let place = noun_phrase(rng, PLACES, false);
    let fr = format!("{fr_preposition} {}", place.fr)
        .replace("de le ", "du ")
        .replace("de les ", "des ");
    (format!("{en_preposition} {}", place.en), fr)
}

/// One sentence pair of the grammar.
fn sentence(rng: &mut StdRng) -> TranslationPair {
    let subject = noun_phrase(rng, ANIMALS, true);
    let past = rng.random_bool(0.6);
    let (en, fr) = if rng.random_bool(0.8) {
        // Subject, verb, object.
        let verb = VERBS.choose(rng).expect("not empty");
        let objects = if rng.random_bool(0.5) {
            ANIMALS
        } else {
            THINGS
        };
        let object = noun_phrase(rng, objects, true);
        let (en_verb, fr_verb) = verb_forms(verb, past, subject.plural);
        (
            format!("{} {en_verb} {}", subject.en, object.en),
            format!("{} {fr_verb} {}", subject.fr, object.fr),
        )
    } else {
        // Subject, intransitive verb, a place.
        let verb = INTRANSITIVE_VERBS.choose(rng).expect("not empty");
        let (en_verb, fr_verb) = verb_forms(verb, past, subject.plural);
        let (en_place, fr_place) = place_phrase(rng);
        (
            format!("{} {en_verb} {en_place}", subject.en),
            format!("{} {fr_verb} {fr_place}", subject.fr),
        )
    };
    TranslationPair::new(format!("{en} ."), format!("{fr} ."))
}

/// `size` distinct English → French sentence pairs of the grammar, generated from `seed` (the
/// same seed, the same pairs). Distinct, so a held-out split never repeats a training pair and
/// its exact-match rate measures translating new sentences. The first pair is always "the cat
/// chased the mouse ." → "le chat a chassé la souris .", the course's example.
pub fn parallel_corpus(seed: u64, size: usize) -> Vec<TranslationPair> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7a11_5e1a_7e00_f4e1);
    let example =
        TranslationPair::new("the cat chased the mouse .", "le chat a chassé la souris .");
    let mut seen: HashSet<String> = HashSet::new();
    let mut pairs = Vec::with_capacity(size);
    if size > 0 {
        seen.insert(example.source.clone());
        pairs.push(example);
    }
    // The grammar has millions of sentences; the cap only guards against a tiny lexicon.
    let mut attempts = 0usize;
    while pairs.len() < size && attempts < size.saturating_mul(50) {
        attempts += 1;
        let pair = sentence(&mut rng);
        if seen.insert(pair.source.clone()) {
            pairs.push(pair);
        }
    }
    pairs
}

// ---------------------------------------------------------------------------------------------
// Parallel files
// ---------------------------------------------------------------------------------------------

/// The layout of a parallel file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParallelFormat {
    /// `source<TAB>target` per line.
    Tsv,
    /// `{"source": ..., "target": ...}` per line (or a JSON array of such objects).
    Jsonl,
}

impl ParallelFormat {
    /// By extension (`.jsonl`/`.json`, else TSV).
    pub fn of_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("jsonl") || ext.eq_ignore_ascii_case("json") => {
                ParallelFormat::Jsonl
            }
            _ => ParallelFormat::Tsv,
        }
    }
}

/// Parses a parallel file leniently: the good pairs and one [`RowError`] per bad row (a line
/// without exactly one tab, an empty side, a missing field). Blank lines are skipped.
pub fn parse_parallel(text: &str, format: ParallelFormat) -> (Vec<TranslationPair>, Vec<RowError>) {
    match format {
        ParallelFormat::Tsv => parse_tsv(text),
        ParallelFormat::Jsonl => parse_jsonl(text),
    }
}

fn parse_tsv(text: &str) -> (Vec<TranslationPair>, Vec<RowError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pairs = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let row = raw.trim_end_matches('\r');
        if row.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = row.split('\t').collect();
        if fields.len() != 2 {
            errors.push(RowError {
                line,
                column: None,
                message: format!(
                    "expected source<TAB>target (2 fields), found {} field{}",
                    fields.len(),
                    if fields.len() == 1 { "" } else { "s" }
                ),
            });
            continue;
        }
        match checked_pair(line, fields[0], fields[1]) {
            Ok(pair) => pairs.push(pair),
            Err(error) => errors.push(error),
        }
    }
    (pairs, errors)
}

fn parse_jsonl(text: &str) -> (Vec<TranslationPair>, Vec<RowError>) {
    let (objects, mut errors) = json_objects(text);
    let mut pairs = Vec::new();
    for (line, object) in objects {
        let pair = string_field(line, &object, "source").and_then(|source| {
            let target = string_field(line, &object, "target")?;
            checked_pair(line, &source, &target)
        });
        match pair {
            Ok(pair) => pairs.push(pair),
            Err(error) => errors.push(error),
        }
    }
    errors.sort_by_key(|e| e.line);
    (pairs, errors)
}

fn checked_pair(
    line: usize,
    source: &str,
    target: &str,
) -> std::result::Result<TranslationPair, RowError> {
    for (name, side) in [("source", source), ("target", target)] {
        if side.trim().is_empty() {
            return Err(RowError {
                line,
                column: Some(name.into()),
                message: format!("the {name} side is empty"),
            });
        }
    }
    Ok(TranslationPair::new(source.trim(), target.trim()))
}

/// Reads a parallel file strictly (UTF-8 checked; any bad row, or no rows, is an error naming
/// the file and line). The format follows the extension: `.jsonl`/`.json`, else TSV.
pub fn read_parallel(path: &Path) -> Result<Vec<TranslationPair>> {
    let text = read_nonempty(path)?;
    let (pairs, errors) = parse_parallel(&text, ParallelFormat::of_path(path));
    strict(path, pairs, errors, "source/target pairs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_course_example_is_in_the_language() {
        let pairs = parallel_corpus(1, 50);
        assert_eq!(pairs.len(), 50);
        assert_eq!(pairs[0].source, "the cat chased the mouse .");
        assert_eq!(pairs[0].target, "le chat a chassé la souris .");
        assert_eq!(pairs, parallel_corpus(1, 50), "same seed, same pairs");
        let sources: HashSet<_> = pairs.iter().map(|p| &p.source).collect();
        assert_eq!(sources.len(), pairs.len(), "pairs are distinct");
    }

    #[test]
    fn agreement_and_word_order() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut saw_moved_adjective = false;
        for _ in 0..2000 {
            let pair = sentence(&mut rng);
            // A colour after the noun in French: "the black cat" → "le chat noir".
            if pair.source.contains("the black cat ") {
                assert!(pair.target.contains("le chat noir "), "{pair:?}");
                saw_moved_adjective = true;
            }
            if pair.source.starts_with("the small mouse ") {
                assert!(pair.target.starts_with("la petite souris "), "{pair:?}");
            }
            if pair.source.starts_with("the cats chased ") {
                assert!(pair.target.starts_with("les chats ont chassé "), "{pair:?}");
            }
            assert!(!pair.target.contains(" de le ") && !pair.target.contains(" de les "));
        }
        assert!(saw_moved_adjective);
    }

    #[test]
    fn tsv_and_jsonl_rows() {
        let (pairs, errors) = parse_parallel(
            "the cat .\tle chat .\n\nno tab here\na\tb\tc\n \tle vide\n",
            ParallelFormat::Tsv,
        );
        assert_eq!(pairs, vec![TranslationPair::new("the cat .", "le chat .")]);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(errors[0].message.contains("found 1 field"));
        assert_eq!(errors[2].column.as_deref(), Some("source"));

        let (pairs, errors) = parse_parallel(
            "{\"source\": \"a dog .\", \"target\": \"un chien .\"}\n{\"source\": \"x\"}\n\
             {\"source\": \"y\", \"target\": \"\"}\n",
            ParallelFormat::Jsonl,
        );
        assert_eq!(pairs.len(), 1);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].column.as_deref(), Some("target"));
        assert!(errors[1].message.contains("empty"));
    }
}
