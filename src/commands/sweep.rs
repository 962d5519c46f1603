//! `memeval sweep`: every combination of the given parameter values, run in
//! parallel through one strategy; the recall-versus-cost frontier, and a
//! recommendation, so tuning is a measurement rather than a guess.

use std::path::{Path, PathBuf};

use clap::Args;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use super::{ConfigArgs, Failure, expand_inputs, parse_jobs, resolve_config};
use crate::chart::{self, FONT, Figure, PALETTE, err, thousands};
use crate::config::{Config, StrategyName};
use crate::outdir;
use crate::par::par_map;
use crate::results::Aggregate;
use crate::runner::{self, Runtime};
use crate::scenario::{self, Scenario};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Scenario files, or folders of *.json files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The strategy to tune
    #[arg(long)]
    pub strategy: String,
    /// A parameter and its values, e.g. --param summary.trigger_tokens=1000,2000,4000 (repeatable; the grid is every combination)
    #[arg(long = "param", value_name = "KEY=V1,V2,...", required = true)]
    pub params: Vec<String>,
    /// Recommend the best recall within this many total tokens [default: the knee of the frontier]
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Output folder [default: reports/sweep-<timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it already holds files
    #[arg(long)]
    pub force: bool,
    /// Worker threads, 1 to 1024 [default: the number of cores]
    #[arg(long, value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Print nothing but errors and the recommendation
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

/// One combination's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// (parameter, value) in the order given.
    pub params: Vec<(String, String)>,
    pub mean_recall: f64,
    pub final_recall: Option<f64>,
    pub recall_auc: Option<f64>,
    pub total_tokens: u64,
    pub max_context_tokens: u64,
    pub mean_quality: Option<f64>,
    pub summaries: u64,
    pub pareto: bool,
    pub recommended: bool,
}

impl Point {
    /// `trigger_tokens=2000, buffer_message_limit=10`: the last part of each key.
    pub fn label(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `2000 / 10`: the values alone, in the order of the parameters.
    pub fn values_label(&self) -> String {
        self.params
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

/// Parses `key=v1,v2,...`.
pub fn parse_param(s: &str) -> Result<(String, Vec<String>), String> {
    let (k, vs) = s.split_once('=').ok_or_else(|| {
        format!("--param {s:?}: expected KEY=V1,V2,... e.g. summary.trigger_tokens=1000,2000")
    })?;
    let values: Vec<String> = vs
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if k.trim().is_empty() || values.is_empty() {
        return Err(format!(
            "--param {s:?}: name a parameter and at least one value"
        ));
    }
    Ok((k.trim().to_string(), values))
}

/// Every combination, the first parameter varying slowest.
pub fn grid(params: &[(String, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, values) in params {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
}

/// Marks the points no other point beats on both recall (higher) and
/// tokens (lower).
pub fn mark_pareto(points: &mut [Point]) {
    let snapshot: Vec<(f64, u64)> = points
        .iter()
        .map(|p| (p.mean_recall, p.total_tokens))
        .collect();
    for (i, p) in points.iter_mut().enumerate() {
        let (r, t) = snapshot[i];
        p.pareto = !snapshot
            .iter()
            .enumerate()
            .any(|(j, &(r2, t2))| j != i && r2 >= r && t2 <= t && (r2 > r || t2 < t));
    }
}

/// The recommended point and why: the best recall within `max_tokens`
/// (fewest tokens on ties), or else the knee of the frontier: the frontier
/// point farthest from the straight line joining its two ends, with both
/// axes scaled to 0..1.
pub fn recommend(points: &[Point], max_tokens: Option<u64>) -> Option<(usize, String)> {
    let better = |a: &Point, b: &Point| {
        a.mean_recall > b.mean_recall
            || (a.mean_recall == b.mean_recall && a.total_tokens < b.total_tokens)
    };
    if let Some(limit) = max_tokens {
        let mut best: Option<usize> = None;
        for (i, p) in points.iter().enumerate() {
            if p.total_tokens <= limit && best.is_none_or(|b| better(p, &points[b])) {
                best = Some(i);
            }
        }
        return best.map(|i| {
            (
                i,
                format!(
                    "the best mean recall ({:.3}) within {limit} total tokens ({} used)",
                    points[i].mean_recall, points[i].total_tokens
                ),
            )
        });
    }
    let mut frontier: Vec<usize> = (0..points.len()).filter(|&i| points[i].pareto).collect();
    frontier.sort_by_key(|&i| (points[i].total_tokens, i));
    // Combinations with the same outcome are one point; the first one stands for them.
    frontier.dedup_by_key(|&mut i| (points[i].total_tokens, points[i].mean_recall.to_bits()));
    match frontier.len() {
        0 => None,
        1 | 2 => {
            let best = *frontier.iter().reduce(|a, b| {
                if better(&points[*b], &points[*a]) {
                    b
                } else {
                    a
                }
            })?;
            Some((
                best,
                "the highest recall on a frontier of at most two points".into(),
            ))
        }
        _ => {
            let (lo, hi) = (&points[frontier[0]], &points[*frontier.last()?]);
            let tspan = (hi.total_tokens as f64 - lo.total_tokens as f64).max(1.0);
            let rspan = (hi.mean_recall - lo.mean_recall).abs().max(1e-9);
            let norm = |p: &Point| {
                (
                    (p.total_tokens as f64 - lo.total_tokens as f64) / tspan,
                    (p.mean_recall - lo.mean_recall) / rspan,
                )
            };
            let (x1, y1) = norm(hi);
            let dist = |p: &Point| {
                let (x, y) = norm(p);
                // Above the chord counts: gains in recall beyond the cost.
                (y * x1 - x * y1) / (x1 * x1 + y1 * y1).sqrt()
            };
            let knee = frontier[1..frontier.len() - 1]
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    dist(&points[a])
                        .total_cmp(&dist(&points[b]))
                        .then(b.cmp(&a))
                })?;
            if dist(&points[knee]) <= 0.0 {
                let best = *frontier.last()?;
                return Some((best, "the frontier has no knee: the highest recall".into()));
            }
            Some((
                knee,
                format!(
                    "the knee of the frontier: recall {:.3} for {} tokens, where more tokens stop buying much recall",
                    points[knee].mean_recall, points[knee].total_tokens
                ),
            ))
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Recall against total tokens, the frontier highlighted and every point
/// labelled.
pub struct SweepChart<'a> {
    pub points: &'a [Point],
    pub strategy: &'a str,
    pub scenarios: usize,
}

impl Figure for SweepChart<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 650)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<Option<chart::Axis>, chart::ChartError> {
        let points = self.points;
        let tmax = points.iter().map(|p| p.total_tokens).max().unwrap_or(1) as f64 / 1000.0;
        let tmin = points.iter().map(|p| p.total_tokens).min().unwrap_or(0) as f64 / 1000.0;
        let pad = ((tmax - tmin) * 0.08).max(tmax * 0.02).max(1.0);
        let rmin = points.iter().map(|p| p.mean_recall).fold(1.0, f64::min);
        let ymin = (rmin - 0.05).clamp(0.0, 0.95);
        let rmax = points.iter().map(|p| p.mean_recall).fold(0.0, f64::max);
        let ymax = (rmax + 0.03).clamp(ymin + 0.05, 1.02);
        let names: Vec<&str> = points.first().map_or(Vec::new(), |p| {
            p.params
                .iter()
                .map(|(k, _)| k.rsplit('.').next().unwrap_or(k))
                .collect()
        });
        let mut c = ChartBuilder::on(root)
            .caption(
                format!(
                    "Recall vs cost: {}, {} combinations over {} scenarios",
                    self.strategy,
                    points.len(),
                    self.scenarios
                ),
                (FONT, 22),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d((tmin - pad).max(0.0)..(tmax + pad), ymin..ymax)
            .map_err(err)?;
        c.configure_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .x_label_formatter(&|x| thousands(*x))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .x_desc(format!(
                "total tokens spent, all scenarios (thousands); points labelled {}",
                names.join(" / ")
            ))
            .y_desc("mean recall (0-1)")
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 14))
            .draw()
            .map_err(err)?;
        let xy = |p: &Point| (p.total_tokens as f64 / 1000.0, p.mean_recall);
        let blue = PALETTE[0];
        let red = PALETTE[1];
        let green = PALETTE[2];
        c.draw_series(
            points
                .iter()
                .filter(|p| !p.pareto)
                .map(|p| Circle::new(xy(p), 5, blue.filled())),
        )
        .map_err(err)?
        .label("dominated combination")
        .legend(move |(x, y)| Circle::new((x, y), 5, blue.filled()));
        let mut frontier: Vec<&Point> = points.iter().filter(|p| p.pareto).collect();
        frontier.sort_by_key(|p| p.total_tokens);
        c.draw_series(LineSeries::new(
            frontier.iter().map(|p| xy(p)),
            red.stroke_width(2),
        ))
        .map_err(err)?
        .label("Pareto frontier")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x - 10, y), (x + 10, y)], red.stroke_width(2))
        });
        c.draw_series(frontier.iter().map(|p| Circle::new(xy(p), 6, red.filled())))
            .map_err(err)?;
        c.draw_series(
            points
                .iter()
                .filter(|p| p.recommended)
                .map(|p| Circle::new(xy(p), 11, green.stroke_width(3))),
        )
        .map_err(err)?
        .label("recommended")
        .legend(move |(x, y)| Circle::new((x, y), 7, green.stroke_width(3)));
        // Each point is labelled with its values; a label goes to the first of
        // four places around its point that overlaps no label placed before.
        let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
        let mut labels = Vec::new();
        for p in points {
            let text = p.values_label();
            let (px, py) = c.backend_coord(&xy(p));
            let (w, h) = (text.chars().count() as i32 * 7 + 8, 15);
            let places = [
                (HPos::Left, VPos::Bottom, px + 4, py - 4 - h),
                (HPos::Left, VPos::Top, px + 4, py + 4),
                (HPos::Right, VPos::Bottom, px - 4 - w, py - 4 - h),
                (HPos::Right, VPos::Top, px - 4 - w, py + 4),
            ];
            let free = |&&(_, _, x, y): &&(HPos, VPos, i32, i32)| {
                !placed
                    .iter()
                    .any(|&(a, b, c, d)| x < c && a < x + w && y < d && b < y + h)
            };
            let &(hp, vp, x, y) = places.iter().find(free).unwrap_or(&places[0]);
            placed.push((x, y, x + w, y + h));
            labels.push(Text::new(
                format!(" {text} "),
                xy(p),
                (FONT, 12).into_font().color(&BLACK).pos(Pos::new(hp, vp)),
            ));
        }
        c.draw_series(labels).map_err(err)?;
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()
            .map_err(err)?;
        Ok(None)
    }
}

fn aggregate_of(jobs: &[crate::results::JobResult], strategy: &str) -> Aggregate {
    let (_, totals) = crate::results::aggregates(jobs, &[strategy.to_string()]);
    totals.into_iter().next().expect("one strategy")
}

/// The most combinations one sweep runs.
pub const MAX_GRID: usize = 1000;

/// The sweep command.
pub fn cmd_sweep(args: &SweepArgs) -> Result<(), Failure> {
    let input = |m: String| Failure::Input(format!("error: {m}"));
    let strategy: StrategyName = args.strategy.parse().map_err(input)?;
    let params: Vec<(String, Vec<String>)> = args
        .params
        .iter()
        .map(|p| parse_param(p))
        .collect::<Result<_, _>>()
        .map_err(input)?;
    let size = params
        .iter()
        .try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()))
        .filter(|&n| n <= MAX_GRID);
    if size.is_none() {
        return Err(input(format!(
            "the grid has more than {MAX_GRID} combinations: sweep fewer values, or sweep in steps"
        )));
    }
    let combos = grid(&params);
    // Validate every combination before running any.
    let configs: Vec<Config> = combos
        .iter()
        .map(|combo| {
            let mut flags: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
            flags.push(format!("strategies=[\"{}\"]", strategy));
            resolve_config(&args.cfg, flags).map_err(|e| match e {
                Failure::Input(m) => {
                    Failure::Input(format!("{m}\n  in the combination {}", label(combo)))
                }
                other => other,
            })
        })
        .collect::<Result<_, _>>()?;
    let command_dir = super::config_dir(&args.cfg);
    for c in &configs {
        crate::plugin::check_commands(c, &command_dir).map_err(input)?;
    }
    let files = expand_inputs(&args.files)?;
    let scenarios: Vec<Scenario> = scenario::load_all(&files).map_err(|e| input(e.to_string()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| outdir::default_dir("sweep-"));
    let mut inputs = files.clone();
    inputs.extend(super::config_file(&args.cfg));
    let claim = outdir::claim(&out, args.force, &inputs)?;
    let points =
        claim.publish_staged(|staging| sweep_into(args, &combos, &configs, &scenarios, staging))?;
    let rec = points.iter().find(|p| p.recommended);
    if !args.quiet {
        print_points(&points);
    }
    match rec {
        Some(p) => crate::outln!("recommended: {}", p.label()),
        None => crate::outln!("recommended: none (no combination within --max-tokens)"),
    }
    crate::outln!("outputs: {}", out.display());
    Ok(())
}

fn label(combo: &[(String, String)]) -> String {
    combo
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sweep_into(
    args: &SweepArgs,
    combos: &[Vec<(String, String)>],
    configs: &[Config],
    scenarios: &[Scenario],
    dir: &Path,
) -> Result<Vec<Point>, Failure> {
    let cores = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let indexed: Vec<usize> = (0..combos.len()).collect();
    let command_dir = std::env::current_dir()
        .map_err(anyhow::Error::from)?
        .join(super::config_dir(&args.cfg));
    let aggs: Vec<Aggregate> = par_map(
        &indexed,
        cores,
        |_| 1,
        |&i| {
            let cfg = &configs[i];
            let tok = cfg.tokenizer().map_err(|e| anyhow::anyhow!(e.0))?;
            let backend = crate::backend::from_config(cfg, tok).map_err(|e| anyhow::anyhow!(e))?;
            let store = dir.join(format!("combination-{i}.sqlite"));
            // A plugin's log and storage: in the combination's folder.
            let plugins = super::start_plugins(
                cfg,
                &backend,
                &dir.join(format!("combination-{i}")),
                &command_dir,
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let mut rt = Runtime::plain(cfg, &backend, &store).map_err(|e| anyhow::anyhow!(e.0))?;
            rt.plugins = Some(&plugins);
            // Embeddings fetched ahead also tell the index their size.
            runner::prefetch_embeddings(runner::Input::Loaded(scenarios), &rt);
            let jobs = runner::run(scenarios, &rt)?;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(dir.join(format!("combination-{i}.sqlite{suffix}")));
            }
            if !args.quiet {
                crate::errln!("[{}/{}] {}", i + 1, combos.len(), label(&combos[i]));
            }
            Ok::<_, anyhow::Error>(aggregate_of(&jobs, &args.strategy))
        },
    )
    .map_err(Failure::Run)?;
    let mut points: Vec<Point> = combos
        .iter()
        .zip(&aggs)
        .map(|(combo, a)| Point {
            params: combo.clone(),
            mean_recall: a.mean_recall.unwrap_or(0.0),
            final_recall: a.final_recall,
            recall_auc: a.recall_auc,
            total_tokens: a.total_tokens,
            max_context_tokens: a.max_context_tokens,
            mean_quality: a.mean_quality,
            summaries: a.summaries,
            pareto: false,
            recommended: false,
        })
        .collect();
    mark_pareto(&mut points);
    let recommendation = recommend(&points, args.max_tokens);
    if let Some((i, _)) = &recommendation {
        points[*i].recommended = true;
    }
    write_csv(&dir.join("sweep.csv"), &points)
        .map_err(|e| Failure::Run(anyhow::anyhow!("sweep.csv: {e}")))?;
    let summary = serde_json::json!({
        "memeval_version": env!("CARGO_PKG_VERSION"),
        "strategy": args.strategy,
        "scenarios": scenarios.iter().map(|s| serde_json::json!({"name": s.name, "file": s.file.display().to_string(), "sha256": s.sha256})).collect::<Vec<_>>(),
        "base_config": serde_json::to_value(&configs[0]).unwrap_or_default(),
        "max_tokens": args.max_tokens,
        "recommendation": recommendation.as_ref().map(|(i, why)| serde_json::json!({
            "params": points[*i].params.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "mean_recall": points[*i].mean_recall,
            "total_tokens": points[*i].total_tokens,
            "reason": why,
        })),
        "points": points,
    });
    let mut bytes = serde_json::to_vec_pretty(&summary).map_err(anyhow::Error::from)?;
    bytes.push(b'\n');
    std::fs::write(dir.join("sweep.json"), bytes).map_err(anyhow::Error::from)?;
    let fig = SweepChart {
        points: &points,
        strategy: &args.strategy,
        scenarios: scenarios.len(),
    };
    chart::save(&fig, dir, "sweep")
        .map_err(|e| Failure::Run(anyhow::anyhow!("sweep chart: {e}")))?;
    if let Some((_, why)) = &recommendation {
        crate::errln!("why: {why}");
    }
    Ok(points)
}

fn write_csv(path: &Path, points: &[Point]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    let mut header: Vec<String> = points
        .first()
        .map(|p| p.params.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    header.extend(
        [
            "mean_recall",
            "final_recall",
            "recall_auc",
            "total_tokens",
            "max_context_tokens",
            "mean_quality",
            "summaries",
            "pareto",
            "recommended",
        ]
        .map(String::from),
    );
    w.write_record(&header)?;
    let opt = |x: Option<f64>| x.map(|v| round3(v).to_string()).unwrap_or_default();
    for p in points {
        let mut row: Vec<String> = p.params.iter().map(|(_, v)| v.clone()).collect();
        row.extend([
            round3(p.mean_recall).to_string(),
            opt(p.final_recall),
            opt(p.recall_auc),
            p.total_tokens.to_string(),
            p.max_context_tokens.to_string(),
            opt(p.mean_quality),
            p.summaries.to_string(),
            u8::from(p.pareto).to_string(),
            u8::from(p.recommended).to_string(),
        ]);
        w.write_record(&row)?;
    }
    w.flush()
}

fn print_points(points: &[Point]) {
    crate::outln!(
        "{:<48} {:>7} {:>7} {:>11} {:>8} {:>8}",
        "combination",
        "recall",
        "final",
        "tokens",
        "max ctx",
        "frontier"
    );
    for p in points {
        let mark = if p.recommended {
            "  <- recommended"
        } else {
            ""
        };
        let row = format!(
            "{:<48} {:>7.3} {:>7} {:>11} {:>8} {:>8}{mark}",
            p.label(),
            p.mean_recall,
            p.final_recall.map_or("-".into(), |f| format!("{f:.3}")),
            p.total_tokens,
            p.max_context_tokens,
            if p.pareto { "yes" } else { "" },
        );
        crate::outln!("{}", row.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(recall: f64, tokens: u64) -> Point {
        Point {
            params: vec![("summary.trigger_tokens".into(), tokens.to_string())],
            mean_recall: recall,
            final_recall: None,
            recall_auc: None,
            total_tokens: tokens,
            max_context_tokens: 0,
            mean_quality: None,
            summaries: 0,
            pareto: false,
            recommended: false,
        }
    }

    #[test]
    fn grid_is_every_combination_first_slowest() {
        let g = grid(&[
            ("a".into(), vec!["1".into(), "2".into()]),
            ("b".into(), vec!["x".into(), "y".into(), "z".into()]),
        ]);
        assert_eq!(g.len(), 6);
        assert_eq!(
            g[0],
            vec![("a".into(), "1".into()), ("b".into(), "x".into())]
        );
        assert_eq!(
            g[5],
            vec![("a".into(), "2".into()), ("b".into(), "z".into())]
        );
        assert!(parse_param("a").is_err());
        assert!(parse_param("a=").is_err());
        assert_eq!(
            parse_param("a = 1, 2").unwrap(),
            ("a".into(), vec!["1".into(), "2".into()])
        );
    }

    #[test]
    fn frontier_and_knee() {
        let mut pts = vec![
            pt(0.50, 100),
            pt(0.85, 200), // the knee: most of the recall for little cost
            pt(0.80, 250), // dominated by the previous one
            pt(0.90, 400),
            pt(0.92, 800),
        ];
        mark_pareto(&mut pts);
        let frontier: Vec<bool> = pts.iter().map(|p| p.pareto).collect();
        assert_eq!(frontier, [true, true, false, true, true]);
        assert_eq!(recommend(&pts, None).unwrap().0, 1);
        assert_eq!(recommend(&pts, Some(500)).unwrap().0, 3);
        assert_eq!(recommend(&pts, Some(150)).unwrap().0, 0);
        assert!(recommend(&pts, Some(50)).is_none());
    }
}
