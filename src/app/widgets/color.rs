//! Colour scales for heatmaps and a stable colour per token.

use eframe::egui;
use egui::Color32;

use crate::model::family::AttentionKind;
use crate::model::map::BoxKind;

/// How values map to colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorScale {
    /// `min` → dark purple, `max` → yellow (viridis), for probabilities and magnitudes.
    Sequential { min: f32, max: f32 },
    /// `-max_abs` → blue, 0 → neutral, `+max_abs` → red, for signed values (scores, activations).
    Diverging { max_abs: f32 },
}

impl ColorScale {
    /// A sequential scale over 0..=1 (attention probabilities).
    pub const PROBABILITY: ColorScale = ColorScale::Sequential { min: 0.0, max: 1.0 };

    /// Sequential from the data's range, or diverging if it has both signs.
    pub fn fit(range: (f32, f32)) -> ColorScale {
        let (lo, hi) = range;
        if lo < 0.0 && hi > 0.0 {
            ColorScale::Diverging {
                max_abs: lo.abs().max(hi.abs()).max(f32::MIN_POSITIVE),
            }
        } else if hi > lo {
            ColorScale::Sequential { min: lo, max: hi }
        } else {
            ColorScale::Sequential {
                min: lo,
                max: lo + 1.0,
            }
        }
    }

    pub fn min(&self) -> f32 {
        match *self {
            ColorScale::Sequential { min, .. } => min,
            ColorScale::Diverging { max_abs } => -max_abs,
        }
    }

    pub fn max(&self) -> f32 {
        match *self {
            ColorScale::Sequential { max, .. } => max,
            ColorScale::Diverging { max_abs } => max_abs,
        }
    }

    /// Where `value` falls on the scale, 0..=1.
    pub fn position(&self, value: f32) -> f32 {
        let (lo, hi) = (self.min(), self.max());
        if !value.is_finite() {
            return if value > 0.0 { 1.0 } else { 0.0 };
        }
        if hi <= lo {
            return 0.5;
        }
        ((value - lo) / (hi - lo)).clamp(0.0, 1.0)
    }

    pub fn color(&self, value: f32) -> Color32 {
        let t = self.position(value);
        match self {
            ColorScale::Sequential { .. } => viridis(t),
            ColorScale::Diverging { .. } => diverging(t),
        }
    }

    /// The colour at position `t` (0..=1) along the scale, for legends.
    pub fn color_at(&self, t: f32) -> Color32 {
        match self {
            ColorScale::Sequential { .. } => viridis(t),
            ColorScale::Diverging { .. } => diverging(t),
        }
    }
}

const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

fn lerp_u8(a: u8, b: u8, t: f32) -> u8 {
    (a as f32 + (b as f32 - a as f32) * t)
        .round()
        .clamp(0.0, 255.0) as u8
}

fn lerp_table(table: &[[u8; 3]], t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0) * (table.len() - 1) as f32;
    let i = (t.floor() as usize).min(table.len() - 2);
    let f = t - i as f32;
    let (a, b) = (table[i], table[i + 1]);
    Color32::from_rgb(
        lerp_u8(a[0], b[0], f),
        lerp_u8(a[1], b[1], f),
        lerp_u8(a[2], b[2], f),
    )
}

/// The viridis colour map at `t` in 0..=1.
pub fn viridis(t: f32) -> Color32 {
    lerp_table(&VIRIDIS, t)
}

const DIVERGING: [[u8; 3]; 5] = [
    [33, 102, 172],
    [146, 197, 222],
    [240, 240, 240],
    [244, 165, 130],
    [178, 24, 43],
];

/// Blue (0) – light grey (0.5) – red (1).
pub fn diverging(t: f32) -> Color32 {
    lerp_table(&DIVERGING, t)
}

/// Black or white, whichever reads better on `background`.
pub fn text_on(background: Color32) -> Color32 {
    let [r, g, b, _] = background.to_array();
    let luma = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
    if luma > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// The fill of a box of the model map, by what the box is: one hue per kind of block (embeddings
/// violet, LayerNorm teal, attention blue / orange (causal) / green (cross), feed-forward amber,
/// heads rose), deep in the dark theme and pale in the light one, so black or white text reads on
/// it ([`text_on`]).
pub fn map_box_fill(kind: BoxKind, dark: bool) -> Color32 {
    let (deep, pale) = match kind {
        BoxKind::Input | BoxKind::Residual => ([70, 74, 82], [228, 230, 234]),
        BoxKind::Embedding => ([88, 64, 138], [228, 216, 248]),
        BoxKind::LayerNorm => ([38, 96, 100], [206, 236, 236]),
        BoxKind::Attention(AttentionKind::CausalSelf) => ([140, 74, 26], [253, 222, 192]),
        BoxKind::Attention(AttentionKind::BidirectionalSelf) => ([34, 86, 148], [204, 224, 250]),
        BoxKind::Attention(AttentionKind::Cross) => ([34, 110, 66], [204, 240, 212]),
        BoxKind::FeedForward => ([122, 98, 20], [248, 236, 186]),
        BoxKind::Head => ([136, 42, 72], [250, 210, 222]),
    };
    let [r, g, b] = if dark { deep } else { pale };
    Color32::from_rgb(r, g, b)
}

/// A pastel colour that is always the same for the same token id.
pub fn token_color(id: u32) -> Color32 {
    // Golden-ratio hue steps spread neighbouring ids apart.
    let hue = (id as f32 * 0.618_034).fract();
    let (r, g, b) = hsv_to_rgb(hue, 0.35, 0.95);
    Color32::from_rgb(r, g, b)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (u8, u8, u8) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let p = v * (1.0 - s);
    let q = v * (1.0 - f * s);
    let t = v * (1.0 - (1.0 - f) * s);
    let (r, g, b) = match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    let to = |x: f32| (x * 255.0).round().clamp(0.0, 255.0) as u8;
    (to(r), to(g), to(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_clamp_and_order() {
        let s = ColorScale::PROBABILITY;
        assert_eq!(s.position(-1.0), 0.0);
        assert_eq!(s.position(2.0), 1.0);
        assert_eq!(s.color(0.0), viridis(0.0));
        assert_eq!(s.color(1.0), Color32::from_rgb(253, 231, 37));
        let d = ColorScale::fit((-2.0, 1.0));
        assert_eq!(d, ColorScale::Diverging { max_abs: 2.0 });
        assert!((d.position(0.0) - 0.5).abs() < 1e-6);
        assert_eq!(ColorScale::fit((3.0, 3.0)).max(), 4.0);
    }
}
