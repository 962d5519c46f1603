//! The charts of a run: per scenario, context tokens, cumulative tokens,
//! recall, the token budget breakdown and summary quality over turns; across
//! scenarios, recall, tokens and where recalled facts sit in the context.
//! Every figure is drawn from the run's files ([`RunData`]).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FONT, Figure, Key, PALETTE, Swatch, err, header, save, strategy_color, thousands};

/// The colour of reference lines (budgets, windows).
const REFERENCE: RGBColor = RGBColor(70, 70, 70);
use crate::results::read::{POSITION_BINS, RunData};

/// Longest series drawn point by point; longer ones are thinned to the
/// largest value of each stretch, so that peaks survive.
const MAX_POINTS: usize = 1200;

/// Most points of a recall line; more probe turns are averaged in stretches.
const RECALL_POINTS: usize = 40;

/// One line of a line chart.
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// Draw a marker at every point (sparse series: probes, summaries).
    pub markers: bool,
}

/// A line chart: every strategy on one set of axes.
pub struct Lines {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// Horizontal reference lines: (label, y).
    pub references: Vec<(String, f64)>,
    /// Fixed y range; else from 0 to the data's maximum.
    pub y_range: Option<(f64, f64)>,
    /// A logarithmic y axis (for series that differ by orders of magnitude).
    pub log_y: bool,
    /// Format y labels as ratios rather than counts.
    pub ratio: bool,
    /// Format x labels as ratios rather than counts.
    pub x_ratio: bool,
}

/// Keeps at most `max` points: the largest of each equal stretch.
pub fn thin(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            *c.iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("chunks are not empty")
        })
        .collect()
}

fn fmt_y(ratio: bool) -> impl Fn(&f64) -> String {
    move |y| {
        if ratio {
            format!("{y:.2}")
        } else {
            thousands(*y)
        }
    }
}

impl Lines {
    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        if lo > hi {
            (0.0, 1.0)
        } else if lo == hi {
            (lo - 1.0, hi + 1.0)
        } else {
            (lo, hi)
        }
    }

    fn y_max(&self) -> f64 {
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let refs = self.references.iter().map(|r| r.1);
        ys.chain(refs).fold(0.0, f64::max)
    }

    fn draw_on<DB, Y>(&self, root: &DrawingArea<DB, Shift>, y: Y) -> Result<(), String>
    where
        DB: DrawingBackend,
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let (x0, x1) = self.x_range();
        let mut keys: Vec<Key> = self
            .references
            .iter()
            .map(|(l, _)| (l.clone(), REFERENCE, Swatch::Dashed))
            .collect();
        keys.extend(
            self.series
                .iter()
                .map(|s| (s.name.clone(), s.color, Swatch::Line)),
        );
        let area = header(root, &self.title, &keys)?;
        let mut c = ChartBuilder::on(&area)
            .margin(16)
            .margin_top(4)
            .x_label_area_size(48)
            .y_label_area_size(76)
            .build_cartesian_2d(x0..x1, y)
            .map_err(err)?;
        let fy = fmt_y(self.ratio);
        let fx = fmt_y(self.x_ratio);
        c.configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (_, v) in &self.references {
            c.draw_series(DashedLineSeries::new(
                [(x0, *v), (x1, *v)],
                8,
                5,
                REFERENCE.stroke_width(2),
            ))
            .map_err(err)?;
        }
        // Earlier series are drawn wider, so that series lying on one
        // another (every strategy at recall 1.0) show as nested stripes.
        let n = self.series.len() as u32;
        for (i, s) in self.series.iter().enumerate() {
            let color = s.color;
            let under = n - 1 - i as u32;
            let width = under + 1;
            c.draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(err)?;
            if s.markers {
                c.draw_series(
                    s.points
                        .iter()
                        .map(|&p| Circle::new(p, 3 + 2 * under, color.filled())),
                )
                .map_err(err)?;
            }
        }
        Ok(())
    }
}

impl Figure for Lines {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let top = self.y_max();
        match (self.y_range, self.log_y) {
            (Some((lo, hi)), _) => self.draw_on(root, lo..hi),
            (None, true) => {
                let low = self
                    .series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.1))
                    .filter(|&y| y > 0.0)
                    .fold(top, f64::min);
                let floor = 10f64.powf(low.max(1.0).log10().floor());
                self.draw_on(root, (floor..top.max(floor * 10.0) * 1.3).log_scale())
            }
            (None, false) => self.draw_on(root, 0.0..(top * 1.08).max(1.0)),
        }
    }
}

/// Horizontal grouped bars: one group per scenario, one bar per strategy.
pub struct Bars {
    pub title: String,
    pub x_desc: String,
    /// Group names, top to bottom.
    pub groups: Vec<String>,
    /// (strategy, value per group; None where absent).
    pub series: Vec<(String, Vec<Option<f64>>)>,
    pub log_x: bool,
    pub ratio: bool,
}

impl Bars {
    fn draw_on<DB, X>(&self, root: &DrawingArea<DB, Shift>, x: X, base: f64) -> Result<(), String>
    where
        DB: DrawingBackend,
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let n = self.groups.len() as f64;
        let k = self.series.len().max(1) as f64;
        let keys: Vec<Key> = self
            .series
            .iter()
            .map(|(name, _)| (name.clone(), strategy_color(name), Swatch::Block))
            .collect();
        let area = header(root, &self.title, &keys)?;
        let mut c = ChartBuilder::on(&area)
            .margin(16)
            .margin_top(4)
            .margin_right(60)
            .x_label_area_size(48)
            .y_label_area_size(190)
            .build_cartesian_2d(x, 0.0..n)
            .map_err(err)?;
        let groups = self.groups.clone();
        let label = move |y: &f64| {
            // Group i spans (n - i - 1)..(n - i); its label sits at the middle.
            let i = (n - y - 0.5).round();
            if (n - y - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < groups.len() {
                groups[i as usize].clone()
            } else {
                String::new()
            }
        };
        let fx = fmt_y(self.ratio);
        c.configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .y_labels(self.groups.len() * 2 + 1)
            .y_label_formatter(&label)
            .x_label_formatter(&fx)
            .x_desc(&self.x_desc)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let band = 0.8 / k;
        let value_font = (FONT, 11).into_font().color(&RGBColor(60, 60, 60));
        for (si, (name, values)) in self.series.iter().enumerate() {
            let color = strategy_color(name);
            let bars = values.iter().enumerate().filter_map(|(gi, v)| {
                let top = n - gi as f64 - 0.1 - band * si as f64;
                v.map(|v| (top, v))
            });
            c.draw_series(bars.clone().map(|(top, v)| {
                Rectangle::new(
                    [(base, top - band * 0.9), (v.max(base), top)],
                    color.filled(),
                )
            }))
            .map_err(err)?;
            // The value at the end of each bar: a zero is a visible "0.000".
            c.draw_series(bars.map(|(top, v)| {
                Text::new(
                    format!(" {}", fmt_y(self.ratio)(&v)),
                    (v.max(base), top - band * 0.45),
                    value_font.clone().pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }))
            .map_err(err)?;
        }
        Ok(())
    }
}

impl Figure for Bars {
    fn size(&self) -> (u32, u32) {
        let rows = self.groups.len() as u32 * (self.series.len() as u32 * 11 + 14);
        (1100, (rows + 170).max(380))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let top = self
            .series
            .iter()
            .flat_map(|s| s.1.iter().flatten().copied())
            .fold(0.0, f64::max);
        if self.log_x {
            let lo = self
                .series
                .iter()
                .flat_map(|s| s.1.iter().flatten().copied())
                .filter(|v| *v > 0.0)
                .fold(f64::MAX, f64::min)
                .min(top);
            let base = 10f64.powf((lo.max(1.0)).log10().floor());
            self.draw_on(root, (base..top.max(base * 10.0) * 1.5).log_scale(), base)
        } else if self.ratio {
            self.draw_on(root, 0.0..1.05, 0.0)
        } else {
            self.draw_on(root, 0.0..(top * 1.08).max(1.0), 0.0)
        }
    }
}

/// The context of each call by section, stacked, one panel per strategy:
/// the tutorial's token budget dashboard over time.
pub struct Budget {
    pub title: String,
    pub budget: f64,
    /// (strategy, its calls).
    pub panels: Vec<(String, Vec<StackRow>)>,
}

/// One call: (message number, [system, summary, retrieved, buffer] tokens).
pub type StackRow = (f64, [f64; 4]);

/// Section names and colours, bottom to top of the stack.
pub const SECTIONS: [(&str, RGBColor); 4] = [
    ("system", PALETTE[6]),
    ("summary", PALETTE[0]),
    ("retrieved", PALETTE[2]),
    ("buffer", PALETTE[4]),
];

impl Figure for Budget {
    fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(2).max(1) as u32;
        (1200, 80 + rows * 290)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let mut keys: Vec<Key> = SECTIONS
            .iter()
            .map(|(name, color)| (name.to_string(), *color, Swatch::Block))
            .collect();
        keys.push(("max_context_tokens".into(), REFERENCE, Swatch::Dashed));
        let body = header(root, &self.title, &keys)?;
        let cols = if self.panels.len() > 1 { 2 } else { 1 };
        let rows = self.panels.len().div_ceil(cols).max(1);
        let areas = body.split_evenly((rows, cols));
        for ((name, rows), area) in self.panels.iter().zip(areas) {
            let x0 = rows.first().map_or(0.0, |r| r.0);
            let x1 = rows.last().map_or(1.0, |r| r.0).max(x0 + 1.0);
            let top = rows
                .iter()
                .map(|r| r.1.iter().sum::<f64>())
                .fold(self.budget, f64::max);
            let mut c = ChartBuilder::on(&area)
                .caption(name, (FONT, 17))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(x0..x1, 0.0..top * 1.08)
                .map_err(err)?;
            c.configure_mesh()
                .light_line_style(RGBColor(242, 242, 242))
                .x_desc("message number")
                .y_desc("tokens")
                .x_label_formatter(&|x| thousands(*x))
                .y_label_formatter(&|y| thousands(*y))
                .axis_desc_style((FONT, 13))
                .label_style((FONT, 12))
                .draw()
                .map_err(err)?;
            // Each layer is drawn as the sum of itself and those below it,
            // top layer first, so the lower ones paint over its lower part.
            for layer in (0..SECTIONS.len()).rev() {
                let color = SECTIONS[layer].1;
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .map(|(x, parts)| (*x, parts[..=layer].iter().sum()))
                    .collect();
                c.draw_series(AreaSeries::new(pts, 0.0, color.mix(0.85)).border_style(color))
                    .map_err(err)?;
            }
            c.draw_series(DashedLineSeries::new(
                [(x0, self.budget), (x1, self.budget)],
                8,
                5,
                REFERENCE.stroke_width(2),
            ))
            .map_err(err)?;
        }
        Ok(())
    }
}

/// A chart that was written: its file stem under the output folder and a
/// caption for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub stem: String,
    pub caption: String,
    /// The scenario it belongs to (None: the overview).
    pub scenario: Option<String>,
}

fn series_per_strategy(
    data: &RunData,
    mut points: impl FnMut(&str) -> Vec<(f64, f64)>,
    markers: bool,
) -> Vec<Series> {
    data.strategies
        .iter()
        .map(|s| Series {
            name: s.clone(),
            color: strategy_color(s),
            points: points(s),
            markers,
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Series whose largest values differ by more than this factor get a log axis.
const LOG_SPREAD: f64 = 8.0;

fn spread(series: &[Series]) -> f64 {
    let peaks: Vec<f64> = series
        .iter()
        .map(|s| s.points.iter().map(|p| p.1).fold(0.0, f64::max))
        .filter(|&p| p > 0.0)
        .collect();
    let hi = peaks.iter().copied().fold(0.0, f64::max);
    let lo = peaks.iter().copied().fold(f64::MAX, f64::min);
    if peaks.is_empty() { 1.0 } else { hi / lo }
}

/// Saves one chart under `charts/` (creating its folder) and says what it is.
fn emit(
    fig: &impl Figure,
    stem: String,
    caption: String,
    scenario: Option<&str>,
    charts: &Path,
) -> Result<Written, String> {
    if let Some(parent) = charts.join(&stem).parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    save(fig, charts, &stem)?;
    Ok(Written {
        stem: format!("charts/{stem}"),
        caption,
        scenario: scenario.map(String::from),
    })
}

/// Writes every chart of a run under `dir/charts/`, returning what it wrote;
/// the scenarios' charts are drawn in parallel.
pub fn write_all(data: &RunData, dir: &Path) -> Result<Vec<Written>, String> {
    let drawn = &data.drawn;
    let of_all = if drawn.len() < data.scenarios.len() {
        format!(
            " (the first {} of {} scenarios)",
            drawn.len(),
            data.scenarios.len()
        )
    } else {
        String::new()
    };
    // Drawn afresh: a chart of an earlier drawing must not linger.
    let charts = dir.join("charts");
    if charts.exists() {
        std::fs::remove_dir_all(&charts).map_err(|e| format!("{}: {e}", charts.display()))?;
    }
    std::fs::create_dir_all(&charts).map_err(|e| format!("{}: {e}", charts.display()))?;
    let mut written = Vec::new();
    // Overview across scenarios.
    let value =
        |f: &dyn Fn(&crate::results::Aggregate) -> Option<f64>| -> Vec<(String, Vec<Option<f64>>)> {
            data.strategies
                .iter()
                .map(|k| {
                    let v = drawn
                        .iter()
                        .map(|s| data.result(s, k).and_then(f))
                        .collect();
                    (k.clone(), v)
                })
                .collect()
        };
    written.push(emit(
        &Bars {
            title: format!("Mean recall per scenario{of_all}"),
            x_desc: "mean recall over the probes asked (0-1)".into(),
            groups: drawn.to_vec(),
            series: value(&|a| a.mean_recall),
            log_x: false,
            ratio: true,
        },
        "overview-recall".into(),
        "Mean recall per scenario and strategy.".into(),
        None,
        &charts,
    )?);
    written.push(emit(
        &Bars {
            title: format!("Total tokens per scenario{of_all}"),
            x_desc: "tokens spent: calls, summaries and embeddings (log scale)".into(),
            groups: drawn.to_vec(),
            series: value(&|a| Some(a.total_tokens as f64)),
            log_x: true,
            ratio: false,
        },
        "overview-tokens".into(),
        "Total tokens spent per scenario and strategy (log scale).".into(),
        None,
        &charts,
    )?);
    written.push(emit(
&Lines {
            title: "Where recalled facts sit in the context".into(),
            x_desc: "relative position in the context (0 = start, 1 = end)".into(),
            y_desc: "share of probes".into(),
            series: series_per_strategy(
                data,
                |k| {
                    let Some(bins) = data.positions.get(k) else {
                        return Vec::new();
                    };
                    let n: u64 = bins.iter().sum();
                    bins.iter()
                        .enumerate()
                        .map(|(i, &c)| {
                            let mid = (i as f64 + 0.5) / POSITION_BINS as f64;
                            (mid, c as f64 / n as f64)
                        })
                        .collect()
                },
                true,
            ),
            references: Vec::new(),
            y_range: None,
            log_y: false,
            ratio: true,
            x_ratio: true,
        },
"overview-position".into(),
"Where the recalled facts sit in the context, over all probes: models attend least to the middle.".into(),
None,
&charts,
)?);

    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_scenario = crate::par::par_map(
        drawn,
        jobs,
        |sc| data.in_scenario(&data.turns, sc).len() as u64,
        |sc| scenario_charts(data, sc, &charts),
    )?;
    written.extend(per_scenario.into_iter().flatten());
    Ok(written)
}

/// A scenario name as a folder name. Names are `[A-Za-z0-9._-]`, so the
/// only ones a file system reads specially are `.` and `..`: they become
/// `%2E` and `%2E%2E` (no name holds a `%`), so that no chart lands outside
/// its own folder.
pub fn path_component(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().all(|b| b == b'.') {
        name.replace('.', "%2E").into()
    } else {
        name.into()
    }
}

/// The charts of one scenario.
fn scenario_charts(data: &RunData, sc: &str, charts: &Path) -> Result<Vec<Written>, String> {
    let mut written = Vec::new();
    for chart in [
        context_chart,
        cumulative_chart,
        recall_chart,
        budget_chart,
        quality_chart,
    ] {
        written.extend(chart(data, sc, charts)?);
    }
    Ok(written)
}

/// Context tokens per call, with the budget line.
fn context_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, String> {
    let mut written = Vec::new();
    let context = series_per_strategy(
        data,
        |k| {
            thin(
                data.of(&data.turns, sc, k)
                    .iter()
                    .filter(|t| t.call == 1)
                    .map(|t| (f64::from(t.turn), f64::from(t.context_tokens)))
                    .collect(),
                MAX_POINTS,
            )
        },
        false,
    );
    let log_y = spread(&context) > LOG_SPREAD;
    written.push(emit(
        &Lines {
            title: format!("{sc}: context tokens per call"),
            x_desc: "message number".into(),
            y_desc: format!(
                "tokens in the prompt{}",
                if log_y { " (log scale)" } else { "" }
            ),
            series: context,
            references: vec![(
                format!("max_context_tokens ({})", thousands(data.budget as f64)),
                data.budget as f64,
            )],
            y_range: None,
            log_y,
            ratio: false,
            x_ratio: false,
        },
        format!("{}/context", path_component(sc)),
        "Tokens in the prompt of each call, with the context budget.".into(),
        Some(sc),
        charts,
    )?);
    Ok(written.pop())
}

/// Everything spent so far, per message.
fn cumulative_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, String> {
    let mut written = Vec::new();
    let cumulative = series_per_strategy(
        data,
        |k| {
            thin(
                data.of(&data.turns, sc, k)
                    .iter()
                    .map(|t| (f64::from(t.turn), t.cumulative_tokens as f64))
                    .collect(),
                MAX_POINTS,
            )
        },
        false,
    );
    let cost: f64 = data
        .in_scenario(&data.turns, sc)
        .iter()
        .map(|t| t.cost_usd)
        .fold(0.0, f64::max);
    written.push(emit(
        &Lines {
            title: if cost > 0.0 {
                format!("{sc}: cumulative tokens (up to ${cost:.2})")
            } else {
                format!("{sc}: cumulative tokens")
            },
            x_desc: "message number".into(),
            y_desc: "tokens spent so far".into(),
            series: cumulative,
            references: Vec::new(),
            y_range: None,
            log_y: false,
            ratio: false,
            x_ratio: false,
        },
        format!("{}/cumulative", path_component(sc)),
        "Everything spent so far: calls, summaries and embeddings.".into(),
        Some(sc),
        charts,
    )?);
    Ok(written.pop())
}

/// Recall over the conversation (none without recall to draw).
fn recall_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, String> {
    let mut written = Vec::new();
    // Many probe turns are averaged over equal stretches of the
    // conversation, so the chart shows a trend rather than a comb.
    let probe_turns: std::collections::BTreeSet<u32> = data
        .in_scenario(&data.probes, sc)
        .iter()
        .map(|p| p.turn)
        .collect();
    let last = probe_turns.last().copied().unwrap_or(0);
    let stretch = if probe_turns.len() > RECALL_POINTS {
        last.div_ceil(RECALL_POINTS as u32).max(1)
    } else {
        1
    };
    let recall = series_per_strategy(
        data,
        |k| {
            let mut by_turn: BTreeMap<u32, (f64, u32)> = BTreeMap::new();
            for p in data.of(&data.probes, sc, k) {
                if let Some(r) = p.recall {
                    let e = by_turn.entry(p.turn / stretch * stretch).or_default();
                    e.0 += r;
                    e.1 += 1;
                }
            }
            by_turn
                .into_iter()
                .map(|(t, (sum, n))| {
                    let end = (t + stretch - 1).min(last).max(t);
                    (f64::from(end), sum / f64::from(n))
                })
                .collect()
        },
        true,
    );
    if !recall.is_empty() {
        written.push(emit(
            &Lines {
                title: format!("{sc}: recall over the conversation"),
                x_desc: if stretch > 1 {
                    format!("message number (probes averaged over each {stretch} messages)")
                } else {
                    "message number at which the probes were asked".into()
                },
                y_desc: "recall (mean over the probes asked)".into(),
                series: recall,
                references: Vec::new(),
                y_range: Some((0.0, 1.05)),
                log_y: false,
                ratio: true,
                x_ratio: false,
            },
            format!("{}/recall", path_component(sc)),
            "Recall at each probe turn: when each strategy starts to forget.".into(),
            Some(sc),
            charts,
        )?);
    }
    Ok(written.pop())
}

/// The token budget dashboard: each call's context by section.
fn budget_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, String> {
    let mut written = Vec::new();
    written.push(emit(
&Budget {
                title: format!("{sc}: the context of each call, by section"),
                budget: data.budget as f64,
                panels: data
                    .strategies
                    .iter()
                    .map(|k| {
                        let rows: Vec<StackRow> = data
                            .of(&data.turns, sc, k).iter()
                            .filter(|t| t.call == 1)
                            .map(|t| {
                                (
                                    f64::from(t.turn),
                                    [
                                        f64::from(t.tokens_system),
                                        f64::from(t.tokens_summary),
                                        f64::from(t.tokens_retrieved),
                                        f64::from(t.tokens_buffer),
                                    ],
                                )
                            })
                            .collect();
                        (k.clone(), thin_rows(rows))
                    })
                    .collect(),
            },
format!("{}/budget", path_component(sc)),
"The token budget dashboard over time: system prompt, summary, retrieved messages and buffer in each call.".into(),
Some(sc),
charts,
)?);
    Ok(written.pop())
}

/// The judged quality of each summary (none without judged summaries).
fn quality_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, String> {
    let mut written = Vec::new();
    let quality = series_per_strategy(
        data,
        |k| {
            data.of(&data.summaries, sc, k)
                .iter()
                .filter_map(|s| s.quality.map(|q| (f64::from(s.turn), q)))
                .collect()
        },
        true,
    );
    if !quality.is_empty() {
        written.push(emit(
            &Lines {
                title: format!("{sc}: judged quality of each summary"),
                x_desc: "message number at which the summary was written".into(),
                y_desc: "quality (0-1)".into(),
                series: quality,
                references: Vec::new(),
                y_range: Some((0.0, 1.05)),
                log_y: false,
                ratio: true,
                x_ratio: false,
            },
            format!("{}/quality", path_component(sc)),
            "The judge's score of each summary over its sampled messages.".into(),
            Some(sc),
            charts,
        )?);
    }
    Ok(written.pop())
}

/// Thins stacked rows to at most [`MAX_POINTS`], keeping the largest call of
/// each stretch.
fn thin_rows(rows: Vec<StackRow>) -> Vec<StackRow> {
    if rows.len() <= MAX_POINTS {
        return rows;
    }
    let per = rows.len().div_ceil(MAX_POINTS);
    rows.chunks(per)
        .map(|c| {
            *c.iter()
                .max_by(|a, b| a.1.iter().sum::<f64>().total_cmp(&b.1.iter().sum::<f64>()))
                .expect("chunks are not empty")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_peaks_and_bounds_the_count() {
        let pts: Vec<(f64, f64)> = (0..5000).map(|i| (i as f64, (i % 97) as f64)).collect();
        let t = thin(pts.clone(), 1000);
        assert!(t.len() <= 1000);
        assert_eq!(t.iter().map(|p| p.1).fold(0.0, f64::max), 96.0);
        assert_eq!(thin(pts[..10].to_vec(), 1000), pts[..10].to_vec());
    }
}
