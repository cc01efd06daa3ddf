//! Pictures the binary draws. Drawing lives here, not in the libraries,
//! which only return numbers.

mod font;
mod heatmap_figure;
mod palette;

pub(crate) use heatmap_figure::HeatmapFigure;
