//! Where the shipped models are: `assets/tiny-gpt`, `assets/tiny-bert` and `assets/tiny-translator`,
//! looked for next to the
//! crate (`CARGO_MANIFEST_DIR`), next to the executable (and two levels up, for `target/release`),
//! in the current directory, and in `$GLASSBOX_ASSETS`. In a source checkout without them the
//! random test fixtures stand in, with a message saying so.

use std::path::{Path, PathBuf};

use super::data::Slot;

/// The folder names of the shipped models under `assets/` (one per family place; extra places
/// have no shipped model).
pub fn shipped_folder_name(slot: Slot) -> &'static str {
    match slot {
        Slot::Gpt => "tiny-gpt",
        Slot::Translator => "tiny-translator",
        _ => "tiny-bert",
    }
}

fn fixture_folder_name(slot: Slot) -> &'static str {
    match slot {
        Slot::Gpt => "gpt2",
        Slot::Translator => "marian",
        _ => "bert",
    }
}

/// The shipped models that were found, and what to tell the user.
#[derive(Debug, Clone, Default)]
pub struct ShippedModels {
    pub gpt: Option<PathBuf>,
    pub bert: Option<PathBuf>,
    /// The tiny English → French translator (optional: without it the translation views say how
    /// to load one).
    pub translator: Option<PathBuf>,
    /// The tiny BERT fine-tuned for extractive question answering (`assets/tiny-bert-qa`).
    pub bert_qa: Option<PathBuf>,
    /// The real all-MiniLM-L6-v2, where `scripts/fetch-minilm.sh` put it (`.cache/minilm/model`,
    /// or `$GLASSBOX_MINILM_DIR`): not shipped, offered where it is on the machine.
    pub minilm: Option<PathBuf>,
    /// Set when the real shipped models are missing (fixtures used, or nothing found).
    pub message: Option<String>,
    /// The `assets/` folders that were searched, for the message.
    pub searched: Vec<PathBuf>,
}

impl ShippedModels {
    pub fn get(&self, slot: Slot) -> Option<&PathBuf> {
        match slot {
            Slot::Gpt => self.gpt.as_ref(),
            Slot::Bert => self.bert.as_ref(),
            Slot::Translator => self.translator.as_ref(),
            _ => None,
        }
    }

    /// A model by its name in lesson files and in `assets/`: `tiny-gpt`, `tiny-bert`,
    /// `tiny-bert-qa`, `tiny-translator`, `minilm`.
    pub fn named(&self, name: &str) -> Option<&PathBuf> {
        match name {
            "tiny-gpt" => self.gpt.as_ref(),
            "tiny-bert" => self.bert.as_ref(),
            "tiny-bert-qa" => self.bert_qa.as_ref(),
            "tiny-translator" => self.translator.as_ref(),
            "minilm" => self.minilm.as_ref(),
            _ => None,
        }
    }

    /// Searches the usual places.
    pub fn find() -> Self {
        let mut roots: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("GLASSBOX_ASSETS") {
            roots.push(PathBuf::from(dir));
        }
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        roots.push(manifest.join("assets"));
        if let Ok(exe) = std::env::current_exe()
            && let Some(dir) = exe.parent()
        {
            roots.push(dir.join("assets"));
            if let Some(up) = dir.parent().and_then(Path::parent) {
                roots.push(up.join("assets"));
            }
        }
        if let Ok(cwd) = std::env::current_dir() {
            roots.push(cwd.join("assets"));
        }
        let mut unique: Vec<PathBuf> = Vec::new();
        for root in roots {
            let key = root.canonicalize().unwrap_or_else(|_| root.clone());
            if !unique
                .iter()
                .any(|u| u.canonicalize().unwrap_or_else(|_| u.clone()) == key)
            {
                unique.push(root);
            }
        }
        let roots = unique;
        let fixtures = [
            manifest.join("tests").join("fixtures"),
            PathBuf::from("tests").join("fixtures"),
        ];
        let mut found = Self::search(&roots, &fixtures);
        let mut minilm_dirs: Vec<PathBuf> = std::env::var_os("GLASSBOX_MINILM_DIR")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        minilm_dirs.push(manifest.join(".cache").join("minilm").join("model"));
        minilm_dirs.push(PathBuf::from(".cache").join("minilm").join("model"));
        found.minilm = minilm_dirs.into_iter().find(|d| is_model_dir(d));
        found
    }

    /// Searches `roots` for the shipped folders, then `fixtures` for stand-ins.
    pub fn search(roots: &[PathBuf], fixtures: &[PathBuf]) -> Self {
        let find = |slot: Slot| {
            roots
                .iter()
                .map(|r| r.join(shipped_folder_name(slot)))
                .find(|p| is_model_dir(p))
        };
        let mut found = Self {
            gpt: find(Slot::Gpt),
            bert: find(Slot::Bert),
            translator: find(Slot::Translator),
            bert_qa: roots
                .iter()
                .map(|r| r.join("tiny-bert-qa"))
                .find(|p| is_model_dir(p)),
            minilm: None,
            message: None,
            searched: roots.to_vec(),
        };
        let mut stand_ins = Vec::new();
        for slot in Slot::FAMILY_PLACES {
            if found.get(slot).is_some() {
                continue;
            }
            let fixture = fixtures
                .iter()
                .map(|f| f.join(fixture_folder_name(slot)))
                .find(|p| is_model_dir(p));
            if let Some(path) = &fixture {
                stand_ins.push(format!("{} → {}", slot.short(), path.display()));
            }
            match slot {
                Slot::Gpt => found.gpt = fixture,
                Slot::Translator => found.translator = fixture,
                _ => found.bert = fixture,
            }
        }
        let searched = roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if found.gpt.is_none() || found.bert.is_none() {
            found.message = Some(format!(
                "The shipped models (assets/tiny-gpt, assets/tiny-bert) were not found (searched: \
                 {searched}). Load a model from a folder or the Hub in the Model view, or set \
                 GLASSBOX_ASSETS to the assets folder."
            ));
        } else if !stand_ins.is_empty() {
            found.message = Some(format!(
                "The shipped models were not found (searched: {searched}); using the random test \
                 models instead ({}). Their predictions are noise.",
                stand_ins.join(", ")
            ));
        }
        found
    }
}

/// Whether `dir` looks like a model folder (has a config.json).
pub fn is_model_dir(dir: &Path) -> bool {
    dir.join(crate::model::checkpoint::CONFIG_FILE).is_file()
}

/// Training-run checkpoint folders: sub-folders with a config.json under `runs/` (and
/// `checkpoints/`) in the current directory and next to the crate, newest first.
pub fn run_checkpoints() -> Vec<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut bases = vec![PathBuf::from("runs"), PathBuf::from("checkpoints")];
    bases.push(manifest.join("runs"));
    bases.push(manifest.join("checkpoints"));
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for base in bases {
        collect_model_dirs(&base, 3, &mut found);
    }
    found.sort_by_key(|b| std::cmp::Reverse(b.0));
    let mut out: Vec<PathBuf> = Vec::new();
    for (_, path) in found {
        let canonical = path.canonicalize().unwrap_or(path);
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    out
}

fn collect_model_dirs(dir: &Path, depth: usize, out: &mut Vec<(std::time::SystemTime, PathBuf)>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if is_model_dir(&path) {
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            out.push((modified, path));
        } else {
            collect_model_dirs(&path, depth - 1, out);
        }
    }
}
