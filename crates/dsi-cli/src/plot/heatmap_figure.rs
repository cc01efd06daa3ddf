//! The four-panel Figure 1: SI/non-SI, DSI/SI, DSI/non-SI, DSI/min(SI, non-SI).
//!
//! Each panel is a grid over drafter latency `c` (x) and acceptance rate `a`
//! (y), coloured by speedup, with its own colour bar.

use super::font::{self, FAMILY};
use super::palette::{SLOWDOWN_PINK, speedup_color};
use anyhow::Context;
use dsi_core::sim::heatmap::{Cell, HeatmapSpec};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const WIDTH: u32 = 1600;
const HEIGHT: u32 = 1300;
const BAR_STEPS: usize = 120;

/// One panel: a title and a value per grid cell, by grid index.
struct Panel {
    title: &'static str,
    values: Vec<(usize, usize, f64)>,
}

/// Figure 1 ready to draw.
pub(crate) struct HeatmapFigure {
    ndim: usize,
    subtitle: String,
    panels: Vec<Panel>,
}

impl HeatmapFigure {
    /// Lays out `cells` of the grid `spec` on four panels.
    pub(crate) fn new(spec: &HeatmapSpec, cells: &[Cell]) -> Self {
        let c_values = spec.c_values();
        let a_values = spec.a_values();
        let index = |values: &[f64], v: f64| values.iter().position(|&x| x == v).unwrap_or(0);
        let panel = |title, f: fn(&Cell) -> f64| Panel {
            title,
            values: cells
                .iter()
                .map(|cell| (index(&c_values, cell.c), index(&a_values, cell.a), f(cell)))
                .collect(),
        };
        Self {
            ndim: spec.ndim,
            subtitle: format!(
                "offline simulation, best lookahead k in 1..={} per cell, {} target servers, {} tokens, {} repeats",
                spec.ndim, spec.servers, spec.tokens, spec.repeats
            ),
            panels: vec![
                panel("SI over non-SI", Cell::speedup_si_over_nonsi),
                panel("DSI over SI", Cell::speedup_dsi_over_si),
                panel("DSI over non-SI", Cell::speedup_dsi_over_nonsi),
                panel("DSI over min(SI, non-SI)", Cell::speedup_dsi_over_baseline),
            ],
        }
    }

    /// Writes the figure as SVG.
    pub(crate) fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        font::ensure_registered()?;
        self.render(SVGBackend::new(path, (WIDTH, HEIGHT)), path)
    }

    /// Writes the figure as PNG.
    pub(crate) fn write_png(&self, path: &Path) -> anyhow::Result<()> {
        font::ensure_registered()?;
        self.render(BitMapBackend::new(path, (WIDTH, HEIGHT)), path)
    }

    fn render<DB: DrawingBackend>(&self, backend: DB, path: &Path) -> anyhow::Result<()> {
        let root = backend.into_drawing_area();
        self.draw(&root)
            .and_then(|()| root.present().map_err(|e| anyhow::anyhow!("{e}")))
            .with_context(|| format!("drawing {}", path.display()))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e}");
        root.fill(&WHITE).map_err(fail)?;
        let root = root
            .titled("DSI speedups (Timor et al. 2025, Figure 1)", (FAMILY, 30))
            .map_err(fail)?;
        let (subtitle, body) = root.split_vertically(30);
        subtitle
            .draw_text(
                &self.subtitle,
                &(FAMILY, 18).into_text_style(&subtitle),
                (20, 5),
            )
            .map_err(fail)?;
        for (panel, area) in self.panels.iter().zip(body.split_evenly((2, 2))) {
            self.draw_panel(panel, &area).map_err(fail)?;
        }
        Ok(())
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        panel: &Panel,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let vmax = panel.values.iter().map(|&(_, _, v)| v).fold(1.0, f64::max);
        let (width, _) = area.dim_in_pixel();
        let (grid_area, bar_area) = area.split_horizontally(width * 84 / 100);

        let step = 1.0 / self.ndim.max(1) as f64;
        let half = step / 2.0;
        let mut chart = ChartBuilder::on(&grid_area)
            .caption(panel.title, (FAMILY, 24))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(-half..1.0 + half, -half..1.0 + half)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("drafter latency c (target forwards)")
            .y_desc("acceptance rate a")
            .label_style((FAMILY, 15))
            .x_labels(6)
            .y_labels(6)
            .draw()?;
        chart.draw_series(panel.values.iter().map(|&(ci, ai, v)| {
            let (x, y) = (ci as f64 * step, ai as f64 * step);
            Rectangle::new(
                [(x - half, y - half), (x + half, y + half)],
                speedup_color(v, vmax).filled(),
            )
        }))?;

        draw_color_bar(&bar_area, vmax)
    }
}

/// A vertical colour bar from 0 to `vmax`: pink below 1, viridis above.
fn draw_color_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    vmax: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut bar = ChartBuilder::on(area)
        .margin_top(50)
        .margin_bottom(57)
        .margin_right(10)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..1.0, 0.0..vmax)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("speedup")
        .label_style((FAMILY, 14))
        .y_labels(8)
        .draw()?;
    let slice = vmax / BAR_STEPS as f64;
    bar.draw_series((0..BAR_STEPS).map(|i| {
        let low = i as f64 * slice;
        let color = if low + slice / 2.0 < 1.0 {
            SLOWDOWN_PINK
        } else {
            speedup_color(low + slice / 2.0, vmax)
        };
        Rectangle::new([(0.0, low), (1.0, low + slice)], color.filled())
    }))?;
    Ok(())
}
