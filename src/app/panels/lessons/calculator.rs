//! The compute calculator of the Lessons view: training compute C = 6 · N · D, what it means in
//! GPU-days, days on a cluster and dollars, and how long this machine would take at the speed
//! its last training run measured. The maths is the library's ([`crate::lessons::compute`]).

use eframe::egui;
use egui::{RichText, Ui};

use crate::app::widgets::error_label;
use crate::lessons::compute::{
    self, ComputeEstimate, Gpu, Hardware, MachineEstimate, MeasuredRun, format_duration,
    format_scientific,
};
use crate::lessons::question::format_value;
use crate::lessons::{ComputeInputs, ParamCount, parse_number};
use crate::model::params::group_thousands;

/// The calculator's inputs as typed, and what they parse to.
pub struct Calculator {
    pub inputs: ComputeInputs,
    params_text: String,
    tokens_text: String,
    price_text: String,
    /// Open the section (and bring it into view) on the next frame.
    reveal: bool,
}

impl Default for Calculator {
    fn default() -> Self {
        let mut calculator = Self {
            inputs: ComputeInputs::default(),
            params_text: String::new(),
            tokens_text: String::new(),
            price_text: String::new(),
            reveal: false,
        };
        calculator.set(ComputeInputs::default());
        calculator.reveal = false;
        calculator
    }
}

impl Calculator {
    /// Fills in the inputs (a lesson's `compute:`) and opens the section.
    pub fn set(&mut self, inputs: ComputeInputs) {
        self.params_text = match inputs.parameters {
            ParamCount::Number(n) => format_scientific(n),
            ParamCount::Preset(preset) => preset.cli_name().to_string(),
        };
        self.tokens_text = format_scientific(inputs.tokens);
        self.price_text = inputs
            .price_per_gpu_hour
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.inputs = inputs;
        self.reveal = true;
    }

    /// Time and cost on the chosen GPUs (an error for "this machine", which needs a run).
    pub fn estimate(&self) -> Result<ComputeEstimate, String> {
        compute::estimate(
            self.inputs.parameters.value(),
            self.inputs.tokens,
            self.inputs.hardware,
            self.inputs.gpus,
            self.inputs.utilisation,
        )
    }

    /// The same training at the speed a run measured on this machine.
    pub fn machine_estimate(&self, measured: &MeasuredRun) -> Result<MachineEstimate, String> {
        measured.estimate(self.inputs.parameters.value(), self.inputs.tokens)
    }

    pub fn ui(&mut self, ui: &mut Ui, measured: Option<MeasuredRun>) {
        let reveal = std::mem::take(&mut self.reveal);
        let header = egui::CollapsingHeader::new(RichText::new("Compute calculator").strong())
            .id_salt("compute_calculator")
            .open(reveal.then_some(true))
            .show(ui, |ui| {
                ui.label(
                    "Training takes about 6 operations per parameter per token (2 for the \
                     forward pass, 4 for the backward pass): C = 6 · N · D.",
                );
                self.inputs_ui(ui);
                ui.separator();
                self.results_ui(ui, measured);
            });
        if reveal {
            header.header_response.scroll_to_me(Some(egui::Align::TOP));
        }
    }

    fn inputs_ui(&mut self, ui: &mut Ui) {
        let mut problems = Vec::new();
        egui::Grid::new("calculator_inputs")
            .num_columns(3)
            .spacing([10.0, 4.0])
            .show(ui, |ui| {
                let label = ui.label("Parameters (N)");
                let edit = ui
                    .add(egui::TextEdit::singleline(&mut self.params_text).desired_width(160.0))
                    .labelled_by(label.id);
                match self.params_text.parse::<ParamCount>() {
                    Ok(count) => {
                        if edit.changed() {
                            self.inputs.parameters = count;
                        }
                        ui.weak(format!(
                            "= {} (a number like 175e9, or a preset like gpt3-175b)",
                            format_scientific(count.value())
                        ));
                    }
                    Err(message) => {
                        problems.push(message);
                        ui.weak("a number like 175e9, or a preset like gpt3-175b");
                    }
                }
                ui.end_row();

                let label = ui.label("Training tokens (D)");
                let edit = ui
                    .add(egui::TextEdit::singleline(&mut self.tokens_text).desired_width(160.0))
                    .labelled_by(label.id);
                match parse_number(&self.tokens_text).filter(|t| *t > 0.0) {
                    Some(tokens) => {
                        if edit.changed() {
                            self.inputs.tokens = tokens;
                        }
                        ui.weak(format!("= {}", format_scientific(tokens)));
                    }
                    None => {
                        problems.push(format!(
                            "{:?} is not a positive number of tokens",
                            self.tokens_text
                        ));
                        ui.weak("");
                    }
                }
                ui.end_row();

                ui.label("Hardware");
                let hardware = &mut self.inputs.hardware;
                egui::ComboBox::from_id_salt("calculator_hardware")
                    .selected_text(hardware_name(*hardware))
                    .show_ui(ui, |ui| {
                        for gpu in Gpu::TABLE {
                            ui.selectable_value(
                                hardware,
                                Hardware::Gpu(gpu),
                                hardware_name(Hardware::Gpu(gpu)),
                            );
                        }
                        let custom = Hardware::Gpu(Gpu::Custom { peak_tflops: 500.0 });
                        if ui
                            .selectable_label(
                                matches!(hardware, Hardware::Gpu(Gpu::Custom { .. })),
                                "custom peak",
                            )
                            .clicked()
                        {
                            *hardware = custom;
                        }
                        ui.selectable_value(hardware, Hardware::ThisMachine, "this machine");
                    });
                if let Hardware::Gpu(Gpu::Custom { peak_tflops }) = hardware {
                    ui.add(
                        egui::DragValue::new(peak_tflops)
                            .range(0.001..=1.0e6)
                            .suffix(" TFLOP/s"),
                    );
                } else {
                    ui.weak("peak TFLOP/s of dense 16-bit maths");
                }
                ui.end_row();

                let machine = self.inputs.hardware == Hardware::ThisMachine;
                ui.label("GPUs");
                ui.add_enabled(
                    !machine,
                    egui::DragValue::new(&mut self.inputs.gpus).range(1..=10_000_000),
                );
                ui.weak("working in parallel");
                ui.end_row();

                ui.label("Utilisation");
                ui.add_enabled(
                    !machine,
                    egui::Slider::new(&mut self.inputs.utilisation, 0.01..=1.0)
                        .custom_formatter(|u, _| format!("{:.0}%", u * 100.0))
                        .custom_parser(|text| {
                            let text = text.trim().trim_end_matches('%');
                            text.parse::<f64>().ok().map(|p| p / 100.0)
                        }),
                );
                let (low, high) = compute::TYPICAL_UTILISATION;
                ui.weak(format!(
                    "share of the peak really achieved; {:.0}–{:.0}% is typical",
                    low * 100.0,
                    high * 100.0
                ));
                ui.end_row();

                let label = ui.label("Price per GPU-hour ($)");
                let edit = ui
                    .add_enabled(
                        !machine,
                        egui::TextEdit::singleline(&mut self.price_text).desired_width(80.0),
                    )
                    .labelled_by(label.id);
                if edit.changed() {
                    self.inputs.price_per_gpu_hour =
                        parse_number(self.price_text.trim_start_matches('$')).filter(|p| *p > 0.0);
                }
                ui.weak("empty: no cost estimate");
                ui.end_row();
            });
        for problem in problems {
            error_label(ui, &problem);
        }
    }

    fn results_ui(&self, ui: &mut Ui, measured: Option<MeasuredRun>) {
        let n = self.inputs.parameters.value();
        let d = self.inputs.tokens;
        let flops = compute::training_flops(n, d);
        ui.label(
            RichText::new(format!(
                "Training compute: 6 × {} × {} = {} FLOPs = {} petaflop/s-days",
                format_scientific(n),
                format_scientific(d),
                format_scientific(flops),
                readable(compute::petaflop_s_days(flops)),
            ))
            .strong(),
        );
        if let Hardware::Gpu(gpu) = self.inputs.hardware {
            match self.estimate() {
                Ok(e) => {
                    ui.label(format!(
                        "One {gpu} at {:.0}% of its peak does {} FLOP/s: {} GPU-days.",
                        e.utilisation * 100.0,
                        format_scientific(e.achieved_flops_per_gpu),
                        readable(e.gpu_days),
                    ));
                    ui.label(format!(
                        "On {} GPUs: {} days ({}).",
                        group_thousands(e.gpus),
                        readable(e.wall_days),
                        format_duration(e.wall_days * compute::SECONDS_PER_DAY)
                    ));
                    if let Some(price) = self.inputs.price_per_gpu_hour {
                        ui.label(format!(
                            "Cost: {} GPU-hours × ${} = ${}.",
                            format_value(e.gpu_hours().round()),
                            format_value(price),
                            format_value(e.cost(price).round())
                        ));
                    }
                }
                Err(message) => error_label(ui, &message),
            }
        }
        ui.add_space(4.0);
        match measured {
            Some(run) => match self.machine_estimate(&run) {
                Ok(m) => {
                    ui.label(format!(
                        "This machine: your last training run moved {} parameters at {:.0} \
                         tokens/s, about {} FLOP/s. At that speed this training would take {} \
                         — {}× slower than one A100 at its peak.",
                        format_value(run.parameters),
                        run.tokens_per_second,
                        format_scientific(m.achieved_flops_per_s),
                        format_duration(m.seconds),
                        format_value(m.times_slower_than_one_a100.round()),
                    ));
                }
                Err(message) => error_label(ui, &message),
            },
            None => {
                ui.weak(
                    "This machine: start a training run (Train view) and let it take a few \
                     steps; its measured speed then shows how long this training would take here.",
                );
            }
        }
    }
}

/// A figure to read at a glance: 33,387 · 32.6 · 0.42 (scientific beyond a trillion).
fn readable(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() || magnitude >= 1e12 {
        format_scientific(value)
    } else if magnitude >= 100.0 {
        group_thousands(value.round() as u64)
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn hardware_name(hardware: Hardware) -> String {
    match hardware {
        Hardware::Gpu(Gpu::Custom { .. }) => "custom peak".into(),
        Hardware::Gpu(gpu) => format!("{} ({} TFLOP/s)", gpu.name(), gpu.peak_tflops()),
        Hardware::ThisMachine => "this machine".into(),
    }
}
