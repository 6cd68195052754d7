//! Steps 1–4 of the Fine-tune view: the model, the data, its tokens and the training arguments.

use super::*;

impl FinetunePanel {
    // ---- 1 model ------------------------------------------------------------------------------

    pub(super) fn step_model(&mut self, ui: &mut Ui, shared: &Shared) {
        ui.label(
            "Start from a model that already knows the language; fine-tuning teaches it the task.",
        );
        let s = &mut self.settings;
        let shipped_bert = shared.shipped.bert.clone();
        let shipped_gpt = shared.shipped.gpt.clone();
        let describe = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("not found".to_string(), |p| p.display().to_string())
        };
        let before = s.model;
        ui.radio_value(
            &mut s.model,
            ModelChoice::ShippedBert,
            format!("Shipped tiny BERT ({})", describe(&shipped_bert)),
        );
        ui.radio_value(
            &mut s.model,
            ModelChoice::ShippedGpt,
            format!("Shipped tiny GPT ({})", describe(&shipped_gpt)),
        );
        ui.radio_value(
            &mut s.model,
            ModelChoice::Folder,
            "A local Hugging Face folder",
        );
        if s.model == ModelChoice::Folder {
            ui.horizontal(|ui| {
                let label = ui.label("Model folder");
                ui.add(
                    egui::TextEdit::singleline(&mut s.folder)
                        .hint_text("folder with config.json, model.safetensors, tokenizer.json")
                        .desired_width(420.0),
                )
                .labelled_by(label.id);
                if ui.button("Browse…").clicked() {
                    let start = PathBuf::from(s.folder.trim());
                    self.browser
                        .open_folder("Choose a model folder", Some(&start));
                }
            });
        }
        let s = &mut self.settings;
        ui.radio_value(
            &mut s.model,
            ModelChoice::Checkpoint,
            "A checkpoint of a training run",
        );
        if s.model == ModelChoice::Checkpoint {
            if self.checkpoints.result().is_none() && !self.checkpoints.is_pending() {
                self.checkpoints.spawn(ui.ctx(), "run-checkpoints", || {
                    Ok(crate::app::assets::run_checkpoints())
                });
            }
            ui.indent("checkpoints", |ui| {
                if ui.button("Refresh").clicked() {
                    self.checkpoints.spawn(ui.ctx(), "run-checkpoints", || {
                        Ok(crate::app::assets::run_checkpoints())
                    });
                }
                if let Some(list) = self.checkpoints.status_ui(ui, "looking for checkpoints") {
                    if list.is_empty() {
                        ui.weak("No checkpoints under runs/ yet: train one in the Train view.");
                    }
                    for path in list {
                        let text = path.display().to_string();
                        ui.radio_value(&mut self.settings.checkpoint, text.clone(), text);
                    }
                }
            });
        }
        if self.settings.model != before {
            // A GPT suggests generation; a BERT a BERT task.
            match self.settings.model {
                ModelChoice::ShippedGpt => self.settings.task = Objective::Generation,
                ModelChoice::ShippedBert if self.settings.task == Objective::Generation => {
                    self.settings.task = Objective::Classification;
                }
                _ => {}
            }
        }
        ui.separator();
        if let Some(info) = self.model_info.status_ui(ui, "reading the model's config") {
            let c = &info.config;
            let causal = c.is_causal();
            ui.label(format!(
                "{} · {} · {} layers, width {}, {} heads, {} positions, vocabulary {} · {} parameters",
                c.architecture.hf_name(),
                if causal { "GPT (causal)" } else { "BERT (bidirectional)" },
                crate::model::params::ArchSpec::from(c).layers(),
                crate::model::params::ArchSpec::from(c).hidden(),
                crate::model::params::ArchSpec::from(c).heads(),
                c.max_positions(),
                c.vocab_size(),
                group_thousands(info.parameters)
            ));
            if !info.has_tokenizer {
                error_label(
                    ui,
                    "this folder has no tokenizer.json; fine-tuning needs the model's tokenizer",
                );
            }
            ui.weak(if causal {
                "A GPT fine-tunes on prompt → completion pairs."
            } else {
                "A BERT fine-tunes for text classification or question answering."
            });
        } else if self.model_dir(shared).is_none() {
            ui.weak("Choose a model.");
        }
    }

    // ---- 2 data -------------------------------------------------------------------------------

    pub(super) fn step_data(&mut self, ui: &mut Ui, shared: &Shared) {
        let causal = self.model_info.value().map(|i| i.config.is_causal());
        let s = &mut self.settings;
        ui.horizontal(|ui| {
            ui.label(RichText::new("Task").strong());
            for task in Objective::finetuning() {
                ui.radio_value(&mut s.task, task, task.label());
            }
        });
        if let Some(causal) = causal
            && causal != s.task.is_causal()
        {
            error_label(
                ui,
                &format!(
                    "{} needs a {} model, but step 1 chose a {}",
                    s.task.label(),
                    if s.task.is_causal() { "GPT" } else { "BERT" },
                    if causal { "GPT" } else { "BERT" }
                ),
            );
        }
        ui.horizontal(|ui| {
            ui.label(RichText::new("Data").strong());
            ui.radio_value(
                &mut s.data,
                DataChoice::BuiltIn,
                format!("Built-in {} set", s.task.builtin_data_name()),
            );
            ui.radio_value(&mut s.data, DataChoice::File, "A file");
        });
        match s.data {
            DataChoice::BuiltIn => {
                ui.horizontal(|ui| {
                    ui.label("examples");
                    ui.add(
                        egui::DragValue::new(&mut s.builtin_size)
                            .range(10..=100_000)
                            .speed(10),
                    );
                    ui.label("seed");
                    ui.add(egui::DragValue::new(&mut s.seed));
                    ui.weak("generated by the library's own code, the same for the same seed");
                });
            }
            DataChoice::File => {
                ui.horizontal(|ui| {
                    let label = ui.label("Data file");
                    ui.add(
                        egui::TextEdit::singleline(&mut s.data_path)
                            .hint_text(s.task.data_file_hint())
                            .desired_width(420.0),
                    )
                    .labelled_by(label.id);
                    if ui.button("Browse…").clicked() {
                        let start = PathBuf::from(s.data_path.trim());
                        self.picker.open_file(
                            "Choose a data file",
                            Some(&start),
                            s.task.data_file_extensions(),
                        );
                    }
                    if ui
                        .button("Reload")
                        .on_hover_text("Read the file again")
                        .clicked()
                    {
                        self.preview_key = None;
                    }
                });
                ui.weak(format!("Expected: {}.", s.task.data_file_hint()));
            }
        }
        ui.separator();
        let Some(preview) = self.preview.status_ui(ui, "reading the data") else {
            return;
        };
        ui.label(format!(
            "{} examples from {}{}",
            preview.examples.len(),
            preview.source,
            if preview.labels.is_empty() {
                String::new()
            } else {
                format!(" · labels: {}", preview.labels.join(", "))
            }
        ));
        let val = preview.examples.len() - preview.train_count(self.settings.val_fraction);
        ui.weak(format!(
            "{} for training, {} held out for validation ({:.0}%, set in step 4)",
            preview.train_count(self.settings.val_fraction),
            val,
            self.settings.val_fraction * 100.0
        ));
        if !preview.errors.is_empty() {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!(
                    "{} row(s) have errors; the trainer refuses the file until they are fixed:",
                    preview.errors.len()
                ),
            );
            ScrollArea::vertical()
                .id_salt("finetune_errors")
                .max_height(140.0)
                .show(ui, |ui| {
                    Grid::new("finetune_error_grid")
                        .striped(true)
                        .num_columns(3)
                        .show(ui, |ui| {
                            ui.strong("line");
                            ui.strong("column");
                            ui.strong("message");
                            ui.end_row();
                            for error in preview.errors.iter().take(200) {
                                ui.label(error.line.to_string());
                                ui.label(error.column.clone().unwrap_or_else(|| "—".into()));
                                ui.colored_label(ui.visuals().error_fg_color, error.to_string());
                                ui.end_row();
                            }
                        });
                });
            let errors = preview.errors.clone();
            export_buttons(
                ui,
                "finetune-errors",
                &shared.export_dir,
                "finetune-data-errors",
                &[ExportFormat::Csv, ExportFormat::Json],
                |format| {
                    let rows: Vec<Vec<String>> = errors
                        .iter()
                        .map(|e| {
                            vec![
                                e.line.to_string(),
                                e.column.clone().unwrap_or_default(),
                                e.message.clone(),
                            ]
                        })
                        .collect();
                    match format {
                        ExportFormat::Json => {
                            serde_json::to_vec_pretty(&rows).map_err(|e| e.to_string())
                        }
                        _ => Ok(table_csv(&["line", "column", "message"], &rows).into_bytes()),
                    }
                },
            );
        }
        if preview.examples.is_empty() {
            error_label(ui, "no usable examples");
            return;
        }
        ui.add_space(4.0);
        ui.strong("Preview");
        let headers = preview.objective.data_columns();
        ScrollArea::both()
            .id_salt("finetune_preview")
            .max_height(260.0)
            .show(ui, |ui| {
                Grid::new("finetune_preview_grid")
                    .striped(true)
                    .num_columns(headers.len() + 1)
                    .show(ui, |ui| {
                        ui.strong("#");
                        for h in headers {
                            ui.strong(*h);
                        }
                        ui.end_row();
                        for (i, example) in preview.examples.iter().take(100).enumerate() {
                            ui.label((i + 1).to_string());
                            for cell in example.cells() {
                                ui.add(egui::Label::new(cell).truncate())
                                    .on_hover_text_at_pointer("full text in the export");
                            }
                            ui.end_row();
                        }
                    });
            });
        if preview.examples.len() > 100 {
            ui.weak(format!("(first 100 of {} shown)", preview.examples.len()));
        }
        let examples = preview.examples.clone();
        let task = preview.objective;
        export_buttons(
            ui,
            "finetune-data",
            &shared.export_dir,
            "finetune-data",
            &[ExportFormat::Csv, ExportFormat::Json],
            |format| {
                let rows: Vec<Vec<String>> = examples.iter().map(Example::cells).collect();
                match format {
                    ExportFormat::Json => {
                        let objects: Vec<serde_json::Value> = rows
                            .iter()
                            .map(|r| {
                                let map: serde_json::Map<String, serde_json::Value> = task
                                    .data_columns()
                                    .iter()
                                    .zip(r)
                                    .map(|(h, v)| {
                                        (h.to_string(), serde_json::Value::from(v.clone()))
                                    })
                                    .collect();
                                serde_json::Value::Object(map)
                            })
                            .collect();
                        serde_json::to_vec_pretty(&objects).map_err(|e| e.to_string())
                    }
                    _ => Ok(table_csv(task.data_columns(), &rows).into_bytes()),
                }
            },
        );
    }

    // ---- 3 tokenize ---------------------------------------------------------------------------

    pub(super) fn step_tokenize(&mut self, ui: &mut Ui, shared: &Shared) {
        ui.label(
            "Every example becomes token ids with the model's own tokenizer. Longer examples are \
             cut to the maximum length; shorter ones are padded in the batch.",
        );
        let positions = self.model_info.value().map(|i| i.config.max_positions());
        ui.horizontal(|ui| {
            let label = ui.label("Maximum length (tokens)");
            let max = positions.unwrap_or(4096).max(4);
            ui.add(egui::DragValue::new(&mut self.settings.max_len).range(4..=max))
                .labelled_by(label.id);
            if let Some(p) = positions {
                ui.weak(format!("the model reads at most {p} positions"));
            }
        });
        if self.model_info.value().is_none() {
            ui.weak("Step 1: choose a model first (its tokenizer is used).");
            return;
        }
        if self.preview.value().is_none() {
            ui.weak("Step 2: prepare the data first.");
            return;
        }
        let max_len = self.settings.max_len;
        let Some(stats) = self.tokens.status_ui(ui, "tokenizing the examples") else {
            return;
        };
        let n = stats.lengths.len();
        let truncated = stats.truncated(max_len);
        let longest = stats.lengths.iter().copied().max().unwrap_or(0);
        let mean = stats.lengths.iter().sum::<usize>() as f64 / n.max(1) as f64;
        ui.label(
            RichText::new(format!(
                "{truncated} of {n} examples are longer than {max_len} tokens and get truncated"
            ))
            .strong(),
        );
        ui.weak(format!(
            "lengths: mean {mean:.1}, longest {longest} tokens · tokenizer {} · special tokens included",
            stats.tokenizer
        ));
        let width = (longest / 40).max(1);
        let bins = stats.histogram(width);
        Plot::new("finetune_token_hist")
            .height(200.0)
            .legend(Legend::default())
            .allow_scroll(false)
            .x_axis_label("tokens per example")
            .y_axis_label("examples")
            .show(ui, |plot| {
                let (kept, cut): (Vec<Bar>, Vec<Bar>) = bins
                    .iter()
                    .map(|&(start, count)| {
                        Bar::new(start as f64 + width as f64 / 2.0, count as f64)
                            .width(width as f64 * 0.9)
                    })
                    .partition(|b| b.argument - width as f64 / 2.0 < max_len as f64);
                plot.bar_chart(BarChart::new("fits", kept).color(Color32::from_rgb(70, 150, 230)));
                if !cut.is_empty() {
                    plot.bar_chart(
                        BarChart::new("truncated", cut).color(Color32::from_rgb(230, 90, 70)),
                    );
                }
                plot.vline(VLine::new("maximum length", max_len as f64).color(Color32::GRAY));
            });
        let lengths = stats.lengths.clone();
        export_buttons(
            ui,
            "finetune-lengths",
            &shared.export_dir,
            "finetune-token-lengths",
            &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Png => bars_png(&[(
                    Color32::from_rgb(70, 150, 230),
                    bins.iter().map(|&(_, c)| c as f64).collect(),
                )]),
                ExportFormat::Csv => {
                    let rows: Vec<Vec<String>> = lengths
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            vec![
                                (i + 1).to_string(),
                                l.to_string(),
                                (*l > max_len).to_string(),
                            ]
                        })
                        .collect();
                    Ok(table_csv(&["example", "tokens", "truncated"], &rows).into_bytes())
                }
                ExportFormat::Json => serde_json::to_vec_pretty(&serde_json::json!({
                    "max_len": max_len,
                    "lengths": lengths,
                    "histogram": bins,
                }))
                .map_err(|e| e.to_string()),
            },
        );
    }

    // ---- 4 arguments --------------------------------------------------------------------------

    pub(super) fn step_arguments(&mut self, ui: &mut Ui) {
        let train_examples = self
            .preview
            .value()
            .map(|p| p.train_count(self.settings.val_fraction));
        let s = &mut self.settings;
        Grid::new("finetune_args")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                ui.label("learning rate");
                ui.add(
                    egui::DragValue::new(&mut s.lr)
                        .range(1e-7..=1.0)
                        .speed(1e-4)
                        .custom_formatter(|v, _| format!("{v:.1e}"))
                        .custom_parser(|t| t.trim().parse::<f64>().ok()),
                );
                ui.end_row();
                ui.label("batch size");
                ui.add(egui::DragValue::new(&mut s.batch).range(1..=512));
                ui.end_row();
                ui.label("length of training");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut s.use_epochs, true, "epochs");
                    ui.add_enabled(
                        s.use_epochs,
                        egui::DragValue::new(&mut s.epochs)
                            .range(0.1..=1000.0)
                            .speed(0.1),
                    );
                    ui.radio_value(&mut s.use_epochs, false, "steps");
                    ui.add_enabled(
                        !s.use_epochs,
                        egui::DragValue::new(&mut s.steps)
                            .range(1..=1_000_000)
                            .speed(5),
                    );
                });
                ui.end_row();
                ui.label("warm-up steps");
                ui.add(egui::DragValue::new(&mut s.warmup).range(0..=100_000));
                ui.end_row();
                ui.label("weight decay");
                ui.add(
                    egui::DragValue::new(&mut s.weight_decay)
                        .range(0.0..=1.0)
                        .speed(0.005),
                );
                ui.end_row();
                ui.label("validation split");
                ui.add(
                    egui::Slider::new(&mut s.val_fraction, 0.05..=0.5)
                        .custom_formatter(|v, _| format!("{:.0}%", v * 100.0))
                        .custom_parser(|t| {
                            t.trim()
                                .trim_end_matches('%')
                                .parse::<f64>()
                                .ok()
                                .map(|v| v / 100.0)
                        }),
                );
                ui.end_row();
                ui.label("evaluate every");
                ui.add(egui::DragValue::new(&mut s.eval_every).range(0..=100_000))
                    .on_hover_text(
                        "Steps between evaluations on the validation split (0: only at the end)",
                    );
                ui.end_row();
                ui.label("seed");
                ui.add(egui::DragValue::new(&mut s.seed));
                ui.end_row();
            });
        let steps = s.total_steps(train_examples);
        match (s.use_epochs, train_examples) {
            (true, Some(n)) => {
                ui.label(format!(
                    "{:.1} epochs × ⌈{n} examples / batch {}⌉ = {steps} optimizer steps",
                    s.epochs, s.batch
                ));
            }
            (true, None) => {
                ui.weak("Prepare the data (step 2) to turn epochs into steps.");
            }
            _ => {
                ui.label(format!("{steps} optimizer steps"));
            }
        }
        ui.weak(
            "AdamW with decoupled weight decay on matrices, linear warm-up then cosine decay to lr/10, \
             gradients clipped at norm 1.",
        );
    }
}
