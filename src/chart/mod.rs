//! Chart plumbing: a figure is drawn once, generically, and saved as SVG and
//! PNG. Text is rendered with a font embedded in the binary (DejaVu Sans,
//! `assets/fonts/`), so charts look the same on a machine with no fonts.

pub mod figures;
pub mod run;

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

/// The one font family every chart uses.
pub const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font with plotters (once per process).
pub fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font(FONT, style, DEJAVU_SANS).is_err() {
                unreachable!("the embedded font parses");
            }
        }
    });
}

/// Something drawable on any plotters backend.
pub trait Figure {
    /// Pixel size of the picture.
    fn size(&self) -> (u32, u32) {
        (1100, 620)
    }

    /// Draws the figure on `root`; a chart over one x axis says where it
    /// lies.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<Option<Axis>, ChartError>;
}

/// Where a chart's x axis is drawn: the plot area's first and last pixel
/// columns, and the x values there (what a click on the chart is mapped
/// back to).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub pixels: (i32, i32),
    pub values: (f64, f64),
}

/// A chart that could not be drawn or written, with why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChartError(pub String);

impl From<String> for ChartError {
    fn from(m: String) -> Self {
        ChartError(m)
    }
}

/// A plotters error as a chart error.
pub fn err<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError(e.to_string())
}

/// Saves `fig` as `dir/stem.svg` and `dir/stem.png`; where its x axis
/// lies in the SVG, for a chart that has one.
pub fn save(fig: &impl Figure, dir: &Path, stem: &str) -> Result<Option<Axis>, ChartError> {
    init_fonts();
    let size = fig.size();
    let svg_path = dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    let axis;
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        axis = fig.draw(&root)?;
        root.present().map_err(err)?;
    }
    std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let png_path = dir.join(format!("{stem}.png"));
    let file = std::fs::File::create(&png_path)
        .map_err(|e| ChartError(format!("{}: {e}", png_path.display())))?;
    let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
    draw_png(fig, &mut out)?;
    std::io::Write::flush(&mut out)
        .map_err(|e| ChartError(format!("{}: {e}", png_path.display())))?;
    Ok(axis)
}

/// The figure as PNG bytes.
pub fn render_png(fig: &impl Figure) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    draw_png(fig, &mut out)?;
    Ok(out)
}

/// The figure drawn and encoded as PNG into `out`. The pixels are drawn
/// into a buffer each thread keeps from one chart to the next: a fresh one
/// per chart is memory the kernel zeroes first, which cost a small run more
/// than the drawing.
fn draw_png(fig: &impl Figure, out: impl std::io::Write) -> Result<(), ChartError> {
    thread_local! {
        static RGB: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    init_fonts();
    let (w, h) = fig.size();
    RGB.with_borrow_mut(|rgb| {
        rgb.clear();
        rgb.resize(w as usize * h as usize * 3, 0);
        {
            let root = BitMapBackend::with_buffer(rgb, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            fig.draw(&root)?;
            root.present().map_err(err)?;
        }
        encode_png(rgb, w, h, out)
    })
}

fn encode_png(rgb: &[u8], w: u32, h: u32, out: impl std::io::Write) -> Result<(), ChartError> {
    let mut enc = png::Encoder::new(out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    // fdeflate, and one filter for every row (the adaptive choice tries
    // all five per row): charts are flat colours, thin lines and text,
    // which `Sub` leaves mostly zero (as measured on a run's charts: 44%
    // smaller than `Up` and faster to encode).
    enc.set_compression(png::Compression::Fast);
    enc.set_filter(png::Filter::Sub);
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)
}

/// Distinct, colour-blind-friendly colours (Okabe-Ito), one per series.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(120, 120, 120), // grey
    RGBColor(240, 228, 66),  // yellow
];

/// The colour of a strategy, the same on every chart.
pub fn strategy_color(strategy: &str) -> RGBColor {
    use crate::config::StrategyName as S;
    match strategy.parse() {
        Ok(S::Buffer) => PALETTE[6],
        Ok(S::Window) => PALETTE[1],
        Ok(S::Summary) => PALETTE[0],
        Ok(S::Vector) => PALETTE[2],
        Ok(S::Hybrid) => PALETTE[3],
        // Plugins (and names from elsewhere): orange, sky blue or yellow,
        // by name, the same on every chart.
        Ok(S::Plugin(_)) | Err(_) => {
            PALETTE[[4, 5, 7][crate::text::fnv1a(strategy.as_bytes()) as usize % 3]]
        }
    }
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swatch {
    Line,
    Dashed,
    Block,
}

/// One legend entry.
pub type Key = (String, RGBColor, Swatch);

/// Draws the title and, under it, the legend in one centred row, so that no
/// legend ever covers the data; returns the area left for the plot.
pub fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    keys: &[Key],
) -> Result<DrawingArea<DB, Shift>, ChartError> {
    let (w, _) = root.dim_in_pixel();
    let height = if keys.is_empty() { 44 } else { 74 };
    let (top, rest) = root.split_vertically(height);
    let title_font: TextStyle = (FONT, 22).into();
    let (tw, _) = top.estimate_text_size(title, &title_font).map_err(err)?;
    top.draw(&Text::new(
        title.to_string(),
        ((w as i32 - tw as i32) / 2, 10),
        title_font,
    ))
    .map_err(err)?;
    let font: TextStyle = (FONT, 14).into();
    let widths: Vec<i32> = keys
        .iter()
        .map(|(name, _, _)| {
            top.estimate_text_size(name, &font)
                .map(|(w, _)| w as i32 + 34 + 22)
                .map_err(err)
        })
        .collect::<Result<_, _>>()?;
    let mut x = (w as i32 - widths.iter().sum::<i32>()) / 2;
    let y = 52;
    for ((name, color, swatch), width) in keys.iter().zip(widths) {
        match swatch {
            Swatch::Line => top
                .draw(&PathElement::new(
                    vec![(x, y), (x + 26, y)],
                    color.stroke_width(3),
                ))
                .map_err(err)?,
            Swatch::Dashed => {
                for dx in [0, 11, 22] {
                    top.draw(&PathElement::new(
                        vec![(x + dx, y), (x + dx + 6, y)],
                        color.stroke_width(2),
                    ))
                    .map_err(err)?;
                }
            }
            Swatch::Block => top
                .draw(&Rectangle::new(
                    [(x + 4, y - 7), (x + 22, y + 7)],
                    color.filled(),
                ))
                .map_err(err)?,
        }
        top.draw(&Text::new(name.clone(), (x + 32, y - 5), font.clone()))
            .map_err(err)?;
        x += width;
    }
    Ok(rest)
}

/// `12345` as `12,345`.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 && s != "0" {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Words(&'static str);

    impl Figure for Words {
        fn size(&self) -> (u32, u32) {
            (200, 60)
        }
        fn draw<DB: DrawingBackend>(
            &self,
            root: &DrawingArea<DB, Shift>,
        ) -> Result<Option<Axis>, ChartError> {
            root.draw(&Text::new(self.0, (10, 20), (FONT, 24).into_font()))
                .map_err(err)?;
            Ok(None)
        }
    }

    fn dark_pixels(png_bytes: &[u8]) -> usize {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf[..info.buffer_size()]
            .chunks(3)
            .filter(|p| p.iter().all(|&c| c < 128))
            .count()
    }

    #[test]
    fn text_renders_with_the_embedded_font() {
        // No system font is consulted: the glyphs come from the binary.
        let blank = render_png(&Words("")).unwrap();
        assert_eq!(dark_pixels(&blank), 0);
        let text = render_png(&Words("Recall 0.95")).unwrap();
        let ink = dark_pixels(&text);
        assert!(ink > 150, "only {ink} dark pixels: the text did not render");
        // Different words, different ink: real glyphs, not boxes.
        assert_ne!(text, render_png(&Words("Tokens 1,234")).unwrap());
    }

    #[test]
    fn the_same_figure_gives_the_same_bytes() {
        assert_eq!(
            render_png(&Words("same")).unwrap(),
            render_png(&Words("same")).unwrap()
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-4200.0), "-4,200");
    }
}
