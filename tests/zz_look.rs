mod app_support;
use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use glassbox::app::{Action, GlassboxApp};

#[test]
fn look() {
    let view = std::env::var("LOOK_VIEW").unwrap_or("Translate".into());
    let clicks: Vec<String> = std::env::var("LOOK_CLICKS")
        .unwrap_or_default()
        .split('|')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let app = app_support::new_app(None);
    let mut h = egui_kittest::Harness::builder()
        .with_size([1400.0, 1000.0])
        .wgpu()
        .build_ui_state(|ui, app: &mut GlassboxApp| app.ui(ui), app);
    h.state_mut().apply(Action::SetText(
        std::env::var("LOOK_TEXT").unwrap_or("the black cat chased the mouse .".into()),
    ));
    app_support::settle_within(&mut h, 120);
    h.get_by_role_and_label(Role::Button, &view).click();
    app_support::settle_within(&mut h, 120);
    for c in clicks {
        h.get_by_label(&c).click();
        app_support::settle_within(&mut h, 600);
    }
    h.render()
        .unwrap()
        .save(std::env::var("LOOK_OUT").unwrap_or("/tmp/look.png".into()))
        .unwrap();
}
