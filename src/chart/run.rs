//! The charts of a run: per scenario, context tokens, cumulative tokens,
//! recall, the token budget breakdown and summary quality over turns; across
//! scenarios, recall, tokens and where recalled facts sit in the context.
//! Every figure is drawn from the run's files ([`RunData`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::{ChartError, Figure, save, strategy_color, thousands};

pub use super::figures::{Bars, Budget, Lines, SECTIONS, Series, StackRow, thin};
use crate::results::read::{POSITION_BINS, RunData};

/// Longest series drawn point by point; longer ones are thinned to the
/// largest value of each stretch, so that peaks survive.
const MAX_POINTS: usize = 1200;

/// Most points of a recall line; more probe turns are averaged in stretches.
const RECALL_POINTS: usize = 40;

/// A chart that was written: its file stem under the output folder and a
/// caption for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub stem: String,
    pub caption: String,
    /// The scenario it belongs to (None: the overview).
    pub scenario: Option<String>,
    /// Where its x axis lies, for a chart over one axis.
    pub axis: Option<super::Axis>,
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
) -> Result<Written, ChartError> {
    if let Some(parent) = charts.join(&stem).parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let axis = save(fig, charts, &stem)?;
    Ok(Written {
        stem: format!("charts/{stem}"),
        caption,
        scenario: scenario.map(String::from),
        axis,
    })
}

/// Writes every chart of a run under `dir/charts/`, returning what it wrote;
/// the scenarios' charts are drawn in parallel.
pub fn write_all(data: &RunData, dir: &Path) -> Result<Vec<Written>, ChartError> {
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
    // The overview across scenarios, drawn beside the scenarios' charts.
    let overview = || -> Result<Vec<Written>, ChartError> {
        let mut written = Vec::new();
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

        Ok(written)
    };
    // Every scenario's charts, each one a task: a run of one scenario
    // draws its charts side by side too.
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let tasks: Vec<(&String, ScenarioChart)> = drawn
        .iter()
        .flat_map(|sc| SCENARIO_CHARTS.iter().map(move |&chart| (sc, chart)))
        .collect();
    let (overview, per_scenario) = std::thread::scope(|scope| {
        let per_scenario = scope.spawn(|| {
            crate::par::par_map(
                &tasks,
                jobs,
                |(sc, _)| data.in_scenario(&data.turns, sc).len() as u64,
                |&(sc, chart)| chart(data, sc, &charts),
            )
        });
        let overview = overview();
        (
            overview,
            per_scenario.join().expect("drawing does not panic"),
        )
    });
    let mut written = overview?;
    written.extend(per_scenario?.into_iter().flatten());
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

/// One chart of a scenario, if its data has one.
type ScenarioChart = fn(&RunData, &str, &Path) -> Result<Option<Written>, ChartError>;

/// The charts of one scenario, in the order the report shows them.
const SCENARIO_CHARTS: [ScenarioChart; 5] = [
    context_chart,
    cumulative_chart,
    recall_chart,
    budget_chart,
    quality_chart,
];

/// Context tokens per call, with the budget line.
fn context_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, ChartError> {
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
fn cumulative_chart(
    data: &RunData,
    sc: &str,
    charts: &Path,
) -> Result<Option<Written>, ChartError> {
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
fn recall_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, ChartError> {
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
fn budget_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, ChartError> {
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
fn quality_chart(data: &RunData, sc: &str, charts: &Path) -> Result<Option<Written>, ChartError> {
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
