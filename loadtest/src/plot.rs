//! SVG figures: latency CDFs and server CPU per viewer against viewer count.

use std::path::Path;

use plotters::prelude::*;

use crate::Error;
use crate::stats::Report;

fn perr(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Series name of a report: the server, plus the forced layer if any.
pub fn label(r: &Report) -> String {
    match &r.rid {
        Some(rid) => format!("{} rid={rid}", r.server),
        None => r.server.clone(),
    }
}

/// Draws the latency CDFs of `reports` into an SVG file: per report, to the frame complete (solid)
/// and to the frame's first packet (dashed).
pub fn latency_cdf(reports: &[Report], path: &Path) -> Result<(), Error> {
    let max_x = reports
        .iter()
        .flat_map(|r| [r.latency_ms.max, r.frame_latency_ms.max])
        .flatten()
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(perr)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency CDF, publisher stamp to frame complete (solid) / first packet (dashed)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.1f64..max_x.max(1.0)).log_scale(), 0f64..1f64)
        .map_err(perr)?;
    chart.configure_mesh().x_desc("latency (ms, log scale)").y_desc("fraction of frames").draw().map_err(perr)?;
    for (i, r) in reports.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = |cdf: &[(f64, f64)]| cdf.iter().map(|&(x, y)| (x.max(0.1), y)).collect::<Vec<_>>();
        chart
            .draw_series(LineSeries::new(points(&r.frame_latency_cdf), color.stroke_width(2)))
            .map_err(perr)?
            .label(format!("{} {} viewers", label(r), r.viewers))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(points(&r.latency_cdf), 6, 4, color.stroke_width(1)))
            .map_err(perr)?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::LowerRight).draw().map_err(perr)?;
    root.present().map_err(perr)?;
    Ok(())
}

/// Draws server CPU per viewer (% of a core) against viewer count, one line per server.
pub fn cpu_per_viewer(reports: &[Report], path: &Path) -> Result<(), Error> {
    let mut servers: Vec<String> = reports.iter().map(label).collect();
    servers.sort();
    servers.dedup();
    let pts = |s: &str| {
        let mut v: Vec<(f64, f64)> = reports
            .iter()
            .filter(|r| label(r) == s)
            .filter_map(|r| r.efficiency.cpu_percent_per_viewer.map(|c| (r.viewers as f64, c)))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let max_x = reports.iter().map(|r| r.viewers as f64).fold(1.0, f64::max) * 1.1;
    let max_y = servers.iter().flat_map(|s| pts(s)).map(|p| p.1).fold(0.01, f64::max) * 1.2;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(perr)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Server CPU per viewer", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y)
        .map_err(perr)?;
    chart.configure_mesh().x_desc("viewers").y_desc("% of one core per viewer").draw().map_err(perr)?;
    for (i, s) in servers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let p = pts(s);
        chart
            .draw_series(LineSeries::new(p.clone(), color.stroke_width(2)))
            .map_err(perr)?
            .label(s.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(p.into_iter().map(|xy| Circle::new(xy, 4, color.filled()))).map_err(perr)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(perr)?;
    root.present().map_err(perr)?;
    Ok(())
}
