//! SVG plot of the nodes holding the patch over time.
//!
//! plotters' SVG backend writes text as `<text>` elements and, without its
//! `ttf` feature, estimates text sizes itself, so no system fonts are read.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// Writes a step plot of `completed` (seconds per node) to `path`, with a
/// vertical line at `lower_bound` seconds.
pub fn write(path: &Path, completed: &[Option<f64>], lower_bound: f64) -> Result<()> {
    let mut times: Vec<f64> = completed.iter().flatten().copied().collect();
    times.sort_by(f64::total_cmp);
    let end = times.last().copied().unwrap_or(0.0).max(lower_bound) * 1.05 + 1.0;
    let nodes = completed.len();

    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    let draw = |e: DrawingAreaErrorKind<_>| anyhow!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("nodes holding the patch", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0usize..nodes + nodes / 20 + 1)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("seconds since publication")
        .y_desc("nodes")
        .draw()
        .map_err(draw)?;

    let mut points = vec![(0.0, 0usize)];
    for (held, time) in times.iter().enumerate() {
        points.push((*time, held));
        points.push((*time, held + 1));
    }
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(draw)?
        .label("nodes holding the patch")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            vec![(lower_bound, 0), (lower_bound, nodes)],
            &RED,
        ))
        .map_err(draw)?
        .label("patch size / office link rate")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}
