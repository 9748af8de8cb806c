//! SVG plots for the study report, drawn with `plotters`' SVG backend (no font backend: the
//! browser renders the `<text>` elements, plotters only places them).
//!
//! Each function takes plain numbers, not trials, and returns one `<svg>` element ready to inline
//! in HTML5 (without the `xmlns` attribute, which HTML does not need and which would put a URL in
//! a file that must contain none). Callers decide when there is too little data to plot and show
//! a note instead: these functions always draw what they are given.

use plotters::coord::Shift;
use plotters::prelude::*;

/// Plot size in pixels.
const WIDTH: u32 = 760;
const HEIGHT: u32 = 340;

const FEASIBLE: RGBColor = RGBColor(31, 119, 180);
const MISSED: RGBColor = RGBColor(230, 126, 34);
const PRUNED: RGBColor = RGBColor(127, 127, 127);
const INFEASIBLE: RGBColor = RGBColor(200, 40, 40);
const BEST: RGBColor = RGBColor(44, 160, 44);

/// How a trial is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Complete and meeting every SLO: filled blue circle.
    Feasible,
    /// Complete but missing an SLO: hollow orange circle.
    Missed,
    /// Stopped early, partial figures: grey triangle.
    Pruned,
    /// Never served: red cross on the bottom edge (it has no value).
    Infeasible,
}

/// One trial in the history plot.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    pub number: i64,
    /// Objective value; `None` for trials that have none (infeasible, interrupted).
    pub objective: Option<f64>,
    pub mark: Mark,
}

/// One measured trial in the Pareto plot.
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoPoint {
    pub number: i64,
    pub ttft_p95_ms: f64,
    pub output_tok_per_s: f64,
    pub is_feasible: bool,
}

/// Indices of the points on the Pareto front (lower TTFT p95 and higher tok/s are better),
/// sorted by TTFT. A point is on the front when no other point is at least as good on both
/// axes and better on one. Exact duplicates are all kept.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let (ti, yi) = points[i];
            !points.iter().any(|&(t, y)| t <= ti && y >= yi && (t < ti || y > yi))
        })
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    front
}

/// A value range around `values` with a margin, never empty (one value, or all equal, still
/// gets a visible span).
pub fn padded_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 { span * 0.08 } else { (hi.abs() * 0.1).max(1.0) };
    let lo = if lo >= 0.0 && lo - pad < 0.0 { 0.0 } else { lo - pad };
    (lo, hi + pad)
}

/// Short axis label for a number: no more digits than the magnitude needs.
pub fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn finish(svg: String) -> String {
    // Inline SVG in HTML5 needs no namespace; leaving it out keeps the file free of URLs.
    svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw_mark(root: &Area<'_>, at: (i32, i32), mark: Mark) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    match mark {
        Mark::Feasible => root.draw(&Circle::new(at, 5, FEASIBLE.filled())),
        Mark::Missed => root.draw(&Circle::new(at, 5, MISSED.stroke_width(2))),
        Mark::Pruned => root.draw(&TriangleMarker::new(at, 6, PRUNED.filled())),
        Mark::Infeasible => root.draw(&Cross::new(at, 5, INFEASIBLE.stroke_width(2))),
    }
}

/// Objective per trial, in trial order, with the best-so-far line over feasible trials.
/// Trials without a value sit on the bottom edge as crosses.
pub fn history(points: &[HistoryPoint], metric: &str, is_maximize: bool) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_history(&root, points, metric, is_maximize).expect("drawing into a string cannot fail");
        root.present().expect("drawing into a string cannot fail");
    }
    finish(svg)
}

fn draw_history(
    root: &Area<'_>,
    points: &[HistoryPoint],
    metric: &str,
    is_maximize: bool,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let first = points.iter().map(|p| p.number).min().unwrap_or(1);
    let last = points.iter().map(|p| p.number).max().unwrap_or(1);
    let (y_lo, y_hi) = padded_range(points.iter().filter_map(|p| p.objective));
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((first as f64 - 0.5)..(last as f64 + 0.5), y_lo..y_hi)?;
    let span = (last - first + 1) as usize;
    chart
        .configure_mesh()
        .x_desc("trial")
        .y_desc(metric)
        .x_labels(span.min(12) + 1)
        .y_labels(6)
        .x_label_formatter(&|x| {
            // Trial numbers are integers: label only the whole ticks.
            if (x - x.round()).abs() < 1e-9 { format!("{}", x.round() as i64) } else { String::new() }
        })
        .y_label_formatter(&|y| tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;

    // Best so far among feasible trials: a step line.
    let mut best: Option<f64> = None;
    let mut steps = Vec::new();
    for p in points {
        if let (Mark::Feasible, Some(v)) = (p.mark, p.objective) {
            let better = best.is_none_or(|b| if is_maximize { v > b } else { v < b });
            if better {
                if let Some(b) = best {
                    steps.push((p.number as f64, b));
                }
                best = Some(v);
            }
            steps.push((p.number as f64, best.expect("just set")));
        }
    }
    if let (Some(b), Some(&(x, _))) = (best, steps.last()) {
        if x < last as f64 {
            steps.push((last as f64, b));
        }
        chart.draw_series(LineSeries::new(steps, BEST.stroke_width(2)))?;
    }

    for p in points {
        let y = p.objective.unwrap_or(y_lo);
        let at = chart.backend_coord(&(p.number as f64, y));
        let at = if p.objective.is_none() { (at.0, at.1 - 6) } else { at };
        draw_mark(root, at, p.mark)?;
    }
    Ok(())
}

/// TTFT p95 against output tok/s for measured trials, the Pareto front as a line, each point
/// labelled with its trial number.
pub fn pareto(points: &[ParetoPoint]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_pareto(&root, points).expect("drawing into a string cannot fail");
        root.present().expect("drawing into a string cannot fail");
    }
    finish(svg)
}

fn draw_pareto(root: &Area<'_>, points: &[ParetoPoint]) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let (x_lo, x_hi) = padded_range(points.iter().map(|p| p.ttft_p95_ms));
    let (y_lo, y_hi) = padded_range(points.iter().map(|p| p.output_tok_per_s));
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("TTFT p95 (ms), lower is better")
        .y_desc("output tok/s, higher is better")
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;

    // The front among feasible trials when there are any, else among all measured ones.
    let pool: Vec<&ParetoPoint> = if points.iter().any(|p| p.is_feasible) {
        points.iter().filter(|p| p.is_feasible).collect()
    } else {
        points.iter().collect()
    };
    let xy: Vec<(f64, f64)> = pool.iter().map(|p| (p.ttft_p95_ms, p.output_tok_per_s)).collect();
    let front: Vec<(f64, f64)> = pareto_front(&xy).into_iter().map(|i| xy[i]).collect();
    if front.len() > 1 {
        chart.draw_series(LineSeries::new(front, BEST.stroke_width(2)))?;
    }
    for p in points {
        let at = chart.backend_coord(&(p.ttft_p95_ms, p.output_tok_per_s));
        draw_mark(root, at, if p.is_feasible { Mark::Feasible } else { Mark::Missed })?;
        root.draw(&Text::new(
            format!("#{}", p.number),
            (at.0 + 7, at.1 - 14),
            ("sans-serif", 13).into_font().color(&BLACK.mix(0.7)),
        ))?;
    }
    Ok(())
}

/// One parameter's effect: the objective of each measured trial, grouped by the parameter's
/// value (a strip plot, points spread sideways by a fixed pattern so equal values stay visible).
/// `points` are `(category index, objective, mark)`.
pub fn effect(categories: &[String], points: &[(usize, f64, Mark)], metric: &str) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH / 2 + 20, HEIGHT - 60)).into_drawing_area();
        draw_effect(&root, categories, points, metric).expect("drawing into a string cannot fail");
        root.present().expect("drawing into a string cannot fail");
    }
    finish(svg)
}

fn draw_effect(
    root: &Area<'_>,
    categories: &[String],
    points: &[(usize, f64, Mark)],
    metric: &str,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    root.fill(&WHITE)?;
    let n = categories.len().max(1);
    let (y_lo, y_hi) = padded_range(points.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), y_lo..y_hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(metric)
        .y_labels(5)
        .y_label_formatter(&|y| tick(*y))
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (i, name) in categories.iter().enumerate() {
        let at = chart.backend_coord(&(i as f64, y_lo));
        root.draw(&Text::new(
            name.clone(),
            (at.0, at.1 + 10),
            TextStyle::from(("sans-serif", 14).into_font()).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            )),
        ))?;
    }
    let mut seen = vec![0usize; n];
    for &(i, y, mark) in points {
        // Spread points of one category: 0, +1, -1, +2, -2 ... steps of 0.06.
        let k = seen[i.min(n - 1)];
        seen[i.min(n - 1)] += 1;
        let offset = if k % 2 == 1 { (k / 2 + 1) as f64 } else { -((k / 2) as f64) } * 0.06;
        let at = chart.backend_coord(&(i as f64 + offset.clamp(-0.35, 0.35), y));
        draw_mark(root, at, mark)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_keeps_non_dominated_points_sorted_by_ttft() {
        // (ttft, tok/s): 1 dominates 3; 0, 1 and 2 trade off; 4 duplicates 2.
        let pts = [(100.0, 10.0), (200.0, 30.0), (300.0, 40.0), (250.0, 20.0), (300.0, 40.0)];
        assert_eq!(pareto_front(&pts), vec![0, 1, 2, 4]);
        assert_eq!(pareto_front(&[(5.0, 5.0)]), vec![0]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(padded_range([]), (0.0, 1.0));
        assert_eq!(padded_range([5.0]), (4.0, 6.0));
        assert_eq!(padded_range([50.0, 50.0]), (45.0, 55.0));
        assert_eq!(padded_range([0.5, 1.5]), (0.42, 1.58));
        // Positive data never gets a negative axis.
        assert_eq!(padded_range([0.01, 10.0]).0, 0.0);
        assert_eq!(padded_range([f64::NAN, 2.0]), (1.0, 3.0));
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(1234.567), "1235");
        assert_eq!(tick(42.25), "42.2");
        assert_eq!(tick(1.5), "1.50");
        assert_eq!(tick(0.0123), "0.012");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn plots_have_axes_labels_and_marks_and_no_namespace_url() {
        let h = history(
            &[
                HistoryPoint { number: 1, objective: Some(1.0), mark: Mark::Feasible },
                HistoryPoint { number: 2, objective: None, mark: Mark::Infeasible },
                HistoryPoint { number: 3, objective: Some(2.0), mark: Mark::Feasible },
                HistoryPoint { number: 4, objective: Some(0.5), mark: Mark::Pruned },
            ],
            "goodput_rps",
            true,
        );
        assert!(h.starts_with("<svg width=\"760\""), "{h}");
        assert!(!h.contains("http"));
        assert!(h.contains(">\ntrial\n</text>") && h.contains("goodput_rps"), "{h}");
        assert_eq!(h.matches("<circle").count(), 2);
        assert!(h.contains("polygon") || h.contains("<polyline"), "pruned triangle and lines");
        // The best-so-far line steps from 1.0 to 2.0 and runs to trial 4.
        assert!(h.contains(&format!("stroke=\"#{:02X}{:02X}{:02X}\"", BEST.0, BEST.1, BEST.2)), "{h}");

        let p = pareto(&[
            ParetoPoint { number: 1, ttft_p95_ms: 100.0, output_tok_per_s: 10.0, is_feasible: true },
            ParetoPoint { number: 2, ttft_p95_ms: 300.0, output_tok_per_s: 40.0, is_feasible: true },
            ParetoPoint { number: 3, ttft_p95_ms: 250.0, output_tok_per_s: 5.0, is_feasible: false },
        ]);
        assert_eq!(p.matches("<circle").count(), 3);
        assert!(p.contains("#1") && p.contains("#3") && p.contains("TTFT p95"));

        let e = effect(
            &["on".into(), "<off>".into()],
            &[(0, 1.0, Mark::Feasible), (0, 1.0, Mark::Feasible), (1, 3.0, Mark::Missed)],
            "goodput_rps",
        );
        assert_eq!(e.matches("<circle").count(), 3);
        // Category names come from the database: plotters escapes them.
        assert!(e.contains("&lt;off&gt;") && !e.contains("<off>"), "{e}");
    }
}
