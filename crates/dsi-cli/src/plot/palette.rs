//! Speedup colours: pink for slowdowns, viridis from 1x up, as in the paper.

use plotters::style::RGBColor;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};

/// The paper's colour for a slowdown (speedup below 1).
pub(crate) const SLOWDOWN_PINK: RGBColor = RGBColor(248, 24, 148);

/// The colour of `speedup` on a scale whose top is `vmax`.
pub(crate) fn speedup_color(speedup: f64, vmax: f64) -> RGBColor {
    if speedup < 1.0 {
        return SLOWDOWN_PINK;
    }
    let top = vmax.max(1.0 + 1e-9);
    ViridisRGB.get_color_normalized(speedup.min(top) as f32, 1.0, top as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowdowns_are_pink_and_speedups_are_not() {
        assert_eq!(speedup_color(0.99, 3.0), SLOWDOWN_PINK);
        assert_ne!(speedup_color(1.0, 3.0), SLOWDOWN_PINK);
        assert_ne!(speedup_color(1.0, 3.0), speedup_color(3.0, 3.0));
    }
}
