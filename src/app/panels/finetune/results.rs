//! Steps 5–7 of the Fine-tune view: the run, its evaluation (with predictions before and after) and saving the model.

use super::*;

impl FinetunePanel {
    // ---- 5 train ------------------------------------------------------------------------------

    pub(super) fn step_train(&mut self, ui: &mut Ui, shared: &Shared) {
        let live = self.run.as_ref().is_some_and(LiveRun::is_live);
        if let Some(preview) = self.preview.value()
            && !preview.errors.is_empty()
        {
            error_label(
                ui,
                &format!(
                    "the data file has {} bad row(s) (step 2); fix them before training",
                    preview.errors.len()
                ),
            );
        }
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !live,
                    egui::Button::new(RichText::new("Start fine-tuning").strong()),
                )
                .clicked()
            {
                self.start(shared);
            }
            match self.config(shared) {
                Ok(config) => {
                    ui.weak(format!(
                        "{} from {} · {} steps · batch {} · lr {:.1e}",
                        config.objective.name(),
                        config
                            .model
                            .init_from
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        config.training.steps,
                        config.training.batch_size,
                        config.optimizer.lr
                    ));
                }
                Err(message) if !live => error_label(ui, &message),
                Err(_) => {}
            }
        });
        if let Some(message) = &self.start_error {
            error_label(ui, message);
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        run.controls(ui);
        run.status(ui);
        if run.summary.is_some() {
            ui.label(RichText::new("Done — go on to 6 Evaluate.").strong());
        }
        ui.separator();
        run.curves.show(ui, "finetune", &shared.export_dir);
        let causal = run.config.objective.is_causal();
        egui::CollapsingHeader::new("Attention of the probe text while it learns")
            .id_salt("finetune_probe")
            .show(ui, |ui| {
                self.probe_view
                    .show(ui, &run.probes, causal, &shared.export_dir, "finetune");
            });
    }

    // ---- 6 evaluate ---------------------------------------------------------------------------

    pub(super) fn step_evaluate(&mut self, ui: &mut Ui, shared: &Shared) {
        let Some(run) = self.run.as_ref() else {
            ui.weak("Step 5: train first.");
            return;
        };
        if run.is_live() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!(
                    "Training… step {} of {}; the final evaluation comes at the end.",
                    run.step(),
                    run.total_steps()
                ));
            });
        }
        if let Some(failure) = &run.failure {
            error_label(ui, &failure.message);
        }
        let Some(after) = run.last_eval().cloned() else {
            ui.weak("No evaluation yet.");
            return;
        };
        let before = run.first_eval().filter(|b| b.step != after.step).cloned();
        let objective = run.config.objective;
        ui.heading(format!("Validation metrics at step {}", after.step));
        let names: Vec<(&str, &str)> = match objective {
            Objective::Classification => vec![("accuracy", "Accuracy"), ("macro_f1", "Macro F1")],
            Objective::Qa => vec![("exact_match", "Exact match"), ("f1", "F1")],
            _ => vec![("perplexity", "Perplexity")],
        };
        for (key, title) in &names {
            if let Some(value) = after.metrics.get(*key) {
                ui.label(
                    RichText::new(format!("{title}: {value:.4}"))
                        .size(18.0)
                        .strong(),
                )
                .on_hover_text(format!("{key} = {value}"));
            }
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut table = vec![(
            "validation loss".to_string(),
            before.as_ref().map(|b| f64::from(b.val_loss)),
            f64::from(after.val_loss),
        )];
        for (key, value) in &after.metrics {
            table.push((
                key.clone(),
                before.as_ref().and_then(|b| b.metrics.get(key).copied()),
                *value,
            ));
        }
        Grid::new("finetune_metrics")
            .striped(true)
            .num_columns(3)
            .show(ui, |ui| {
                ui.strong("metric");
                ui.strong("before (step 0)");
                ui.strong(format!("after (step {})", after.step));
                ui.end_row();
                for (name, b, a) in &table {
                    ui.label(name);
                    ui.label(b.map_or("—".to_string(), |v| format!("{v:.4}")));
                    ui.label(format!("{a:.4}"));
                    ui.end_row();
                    rows.push(vec![
                        name.clone(),
                        b.map(|v| v.to_string()).unwrap_or_default(),
                        a.to_string(),
                    ]);
                }
            });
        export_buttons(
            ui,
            "finetune-metrics",
            &shared.export_dir,
            "finetune-metrics",
            &[ExportFormat::Csv, ExportFormat::Json],
            |format| match format {
                ExportFormat::Json => serde_json::to_vec_pretty(&serde_json::json!({
                    "before": before,
                    "after": after,
                }))
                .map_err(|e| e.to_string()),
                _ => Ok(table_csv(&["metric", "before", "after"], &rows).into_bytes()),
            },
        );

        if let Some(confusion) = &after.confusion {
            ui.separator();
            ui.heading("Confusion matrix");
            ui.weak("Rows: the true label; columns: the predicted label; the diagonal is right.");
            let n = confusion.labels.len();
            let data: Vec<f32> = confusion
                .counts
                .iter()
                .flatten()
                .map(|&c| c as f32)
                .collect();
            let matrix = Matrix::new(n, n, data);
            let max = matrix.range().1.max(1.0);
            let scale = ColorScale::fit((0.0, max));
            Heatmap::new(&matrix, "confusion matrix")
                .row_labels(&confusion.labels)
                .col_labels(&confusion.labels)
                .scale(scale)
                .axis_titles("true", "predicted")
                .show_values(true)
                .max_cell(72.0)
                .max_size(Vec2::new(ui.available_width().min(460.0), 360.0))
                .show(ui);
            let labels = confusion.labels.clone();
            export_buttons(
                ui,
                "finetune-confusion",
                &shared.export_dir,
                "finetune-confusion",
                &[ExportFormat::Png, ExportFormat::Csv, ExportFormat::Json],
                |format| match format {
                    ExportFormat::Png => heatmap_png(&matrix, None, scale),
                    ExportFormat::Csv => Ok(matrix_csv(&matrix, &labels, &labels).into_bytes()),
                    ExportFormat::Json => matrix_json(
                        &matrix,
                        &labels,
                        &labels,
                        serde_json::json!({"rows": "true label", "cols": "predicted label"}),
                    ),
                },
            );
        }

        ui.separator();
        ui.heading("Before vs after on validation examples");
        self.comparison_view(ui, shared);
    }

    pub(super) fn comparison_view(&mut self, ui: &mut Ui, shared: &Shared) {
        let Some(run) = self.run.as_ref() else {
            return;
        };
        let Some(checkpoint) = run.checkpoint().cloned() else {
            if run.is_live() {
                ui.weak("The predictions are compared once the run has saved its model.");
            } else {
                ui.weak("The run saved no checkpoint to compare with.");
            }
            return;
        };
        if run.is_live() {
            ui.weak("Waiting for the end of the run.");
            return;
        }
        let run_dir = run
            .config
            .out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs"));
        let wanted = self.compared.as_ref() != Some(&run_dir);
        if wanted && !self.comparison.is_pending() {
            let config = run.config.clone();
            let examples = self.held_out(&config, 8);
            match examples {
                Ok(examples) => {
                    let before_dir = run_dir.join("before");
                    self.comparison.spawn(ui.ctx(), "before-after", move || {
                        compare_before_after(&config, &before_dir, &checkpoint, &examples)
                    });
                }
                Err(message) => error_label(ui, &message),
            }
            self.compared = Some(run_dir);
        }
        ui.weak(
            "\"Before\" is the starting model with its new, untrained head (seeded like the run); \
             \"after\" is the saved checkpoint. Both run on a background thread.",
        );
        let Some(rows) = self
            .comparison
            .status_ui(ui, "running both models on the examples")
        else {
            return;
        };
        Grid::new("finetune_compare")
            .striped(true)
            .num_columns(4)
            .show(ui, |ui| {
                ui.strong("input");
                ui.strong("expected");
                ui.strong("before");
                ui.strong("after");
                ui.end_row();
                for row in rows {
                    ui.add(egui::Label::new(&row.input).truncate());
                    ui.label(&row.expected);
                    ui.label(&row.before);
                    let right = row.after.trim().starts_with(row.expected.trim())
                        && !row.expected.trim().is_empty();
                    let color = if right {
                        Color32::from_rgb(90, 180, 90)
                    } else {
                        ui.visuals().text_color()
                    };
                    ui.colored_label(color, &row.after);
                    ui.end_row();
                }
            });
        let rows = rows.clone();
        export_buttons(
            ui,
            "finetune-compare",
            &shared.export_dir,
            "finetune-before-after",
            &[ExportFormat::Csv, ExportFormat::Json],
            |format| {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.input.clone(),
                            r.expected.clone(),
                            r.before.clone(),
                            r.after.clone(),
                        ]
                    })
                    .collect();
                match format {
                    ExportFormat::Json => {
                        serde_json::to_vec_pretty(&table).map_err(|e| e.to_string())
                    }
                    _ => {
                        Ok(table_csv(&["input", "expected", "before", "after"], &table)
                            .into_bytes())
                    }
                }
            },
        );
    }

    /// The first `n` examples of the validation split the run held out (the same split the
    /// trainer made: same data, fraction and seed).
    pub(super) fn held_out(&self, config: &TrainConfig, n: usize) -> Result<Vec<Example>, String> {
        let preview = self
            .preview
            .value()
            .ok_or("the data set is not read yet (step 2)")?;
        Ok(validation_examples(&preview.examples, config, n))
    }

    // ---- 7 save -------------------------------------------------------------------------------

    pub(super) fn step_save(&mut self, ui: &mut Ui, shared: &mut Shared) {
        let checkpoint = self.run.as_ref().and_then(|r| r.checkpoint().cloned());
        let Some(checkpoint) = checkpoint else {
            ui.weak(
                "Step 5: train (and let the run finish) first; its checkpoint is what is saved.",
            );
            return;
        };
        if self.run.as_ref().is_some_and(LiveRun::is_live) {
            ui.weak("The run is still going; saving now writes its latest checkpoint.");
        }
        ui.label(format!("Checkpoint of the run: {}", checkpoint.display()));
        if self.settings.save_path.trim().is_empty() {
            self.settings.save_path = format!("exports/finetuned-{}", self.settings.task.name());
        }
        ui.horizontal(|ui| {
            let label = ui.label("Save to folder");
            ui.add(egui::TextEdit::singleline(&mut self.settings.save_path).desired_width(420.0))
                .labelled_by(label.id);
            let target = PathBuf::from(self.settings.save_path.trim());
            let confirmed = self.replace_confirmed.as_ref() == Some(&target);
            let label = if confirmed {
                "Replace the model there"
            } else {
                "Save model"
            };
            if ui
                .add_enabled(!self.saved.is_pending(), egui::Button::new(label))
                .on_hover_text("Write config.json, model.safetensors and the tokenizer files")
                .clicked()
            {
                // A folder that already holds a model is replaced only when asked twice.
                if !confirmed && !crate::train::export_conflicts(&target).is_empty() {
                    self.replace_confirmed = Some(target);
                } else {
                    self.replace_confirmed = None;
                    let from = checkpoint.clone();
                    self.saved.spawn(ui.ctx(), "save-model", move || {
                        crate::train::export_checkpoint(&from, &target, confirmed)
                            .map(|files| {
                                files
                                    .into_iter()
                                    .map(|(path, size)| (path.canonicalize().unwrap_or(path), size))
                                    .collect()
                            })
                            .map_err(|e| e.to_string())
                    });
                }
            }
        });
        if let Some(target) = &self.replace_confirmed {
            if target.as_os_str() == self.settings.save_path.trim() {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "{} already holds a model: \"Replace the model there\" overwrites it, or \
                         choose another folder.",
                        target.display()
                    ),
                );
            } else {
                self.replace_confirmed = None;
            }
        }
        if let Some(files) = self.saved.status_ui(ui, "writing the folder") {
            ui.label(RichText::new("Files written:").strong());
            for (path, size) in files {
                ui.label(format!("{}  ({})", path.display(), format_size(*size)));
            }
            let folder = files
                .first()
                .and_then(|(p, _)| p.parent())
                .map(Path::to_path_buf);
            if let Some(folder) = folder
                && ui
                    .button("Open it in the Model view")
                    .on_hover_text("Load the fine-tuned model and look inside it")
                    .clicked()
            {
                shared.load_model(ModelSource::Folder(folder));
                shared.requested_view = Some(ViewName::Model);
            }
        }
        ui.separator();
        ui.label(RichText::new("Share it on the Hugging Face Hub").strong());
        let folder = self.settings.save_path.trim().to_string();
        ui.label(
            "The folder is a standard Hugging Face model folder: `transformers` loads it with \
             from_pretrained(folder). To publish it, log in once (`huggingface-cli login`, with a \
             write token from huggingface.co/settings/tokens), then upload the folder:",
        );
        ui.add(
            egui::Label::new(
                RichText::new(format!("huggingface-cli upload <user>/<repo> {folder}")).monospace(),
            )
            .selectable(true),
        );
        ui.label("or from Python:");
        ui.add(
            egui::Label::new(
                RichText::new(format!(
                    "from huggingface_hub import HfApi\nHfApi().create_repo(\"<user>/<repo>\", exist_ok=True)\nHfApi().upload_folder(folder_path=\"{folder}\", repo_id=\"<user>/<repo>\")"
                ))
                .monospace(),
            )
            .selectable(true),
        );
        ui.weak("Glassbox itself never uploads anything; these commands run outside the app.");
    }
}
