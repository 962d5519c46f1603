//! The figures a run's charts are made of: lines over turns ([`Lines`]),
//! grouped bars ([`Bars`]) and the stacked token budget ([`Budget`]).

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    Axis, ChartError, FONT, Figure, Key, PALETTE, Swatch, err, header, strategy_color, thousands,
};

/// The colour of reference lines (the context budget).
pub(super) const REFERENCE: RGBColor = RGBColor(70, 70, 70);

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

    fn draw_on<DB, Y>(
        &self,
        root: &DrawingArea<DB, Shift>,
        y: Y,
    ) -> Result<Option<Axis>, ChartError>
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
        let px = c.plotting_area().get_pixel_range().0;
        Ok(Some(Axis {
            pixels: (px.start, px.end - 1),
            values: (x0, x1),
        }))
    }
}

impl Figure for Lines {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<Option<Axis>, ChartError> {
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
    fn draw_on<DB, X>(
        &self,
        root: &DrawingArea<DB, Shift>,
        x: X,
        base: f64,
    ) -> Result<(), ChartError>
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

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<Option<Axis>, ChartError> {
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
            self.draw_on(root, (base..top.max(base * 10.0) * 1.5).log_scale(), base)?;
        } else if self.ratio {
            self.draw_on(root, 0.0..1.05, 0.0)?;
        } else {
            self.draw_on(root, 0.0..(top * 1.08).max(1.0), 0.0)?;
        }
        Ok(None)
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

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<Option<Axis>, ChartError> {
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
        Ok(None)
    }
}
