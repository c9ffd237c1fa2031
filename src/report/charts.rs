//! Charts as PNG, drawn in Rust with plotters: no browser, no system fonts (DejaVu Sans is
//! compiled in). Email clients drop SVG (Gmail) or scripts (all of them), so a chart is a picture
//! on a white background, sent inline by Content-ID and drawn at twice its displayed size so it
//! stays sharp on phones and high-density screens.

use std::sync::Once;

use plotters::prelude::*;

/// Pixels drawn per displayed pixel.
const SCALE: u32 = 2;
const FONT: &str = "sans-serif";
const AXIS_GREY: RGBColor = RGBColor(0x6b, 0x72, 0x80);
const GRID_GREY: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);

/// A drawn chart: PNG bytes and the size to display it at.
#[derive(Debug, Clone)]
pub struct Png {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

fn register_font() {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        // The bytes are a TTF compiled into the binary; registration only fails on a bad font.
        if plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_err() {
            tracing::warn!("could not register the bundled chart font");
        }
    });
}

/// An `#rrggbb` colour, or the default blue.
pub fn parse_colour(text: &str) -> RGBColor {
    let hex = text.trim_start_matches('#');
    let channel = |i: usize| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok());
    match (hex.len(), channel(0), channel(2), channel(4)) {
        (6, Some(r), Some(g), Some(b)) => RGBColor(r, g, b),
        _ => RGBColor(0x25, 0x63, 0xeb),
    }
}

fn encode(buffer: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(buffer).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fn value_range(values: &[f64]) -> (f64, f64) {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (min, max) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !min.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((max - min) * 0.1).max(max.abs() * 0.02).max(1e-9);
    (min - pad, max + pad)
}

fn finite_points(values: &[f64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| (i as f64, *v))
        .collect()
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A white canvas of `width`×`height` display pixels (drawn at [`SCALE`]), painted, as PNG.
fn draw(width: u32, height: u32, paint: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<Png, String> {
    let (w, h) = (width * SCALE, height * SCALE);
    let mut buffer = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        paint(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Png {
        bytes: encode(&buffer, w, h)?,
        width,
        height,
    })
}

/// A line chart with axes: `labels[i]` names point `i` on the x axis (a few are shown).
pub fn line_chart(
    values: &[f64],
    labels: &[String],
    title: &str,
    (width, height): (u32, u32),
    colour: RGBColor,
) -> Result<Png, String> {
    register_font();
    draw(width, height, |root| {
        let (low, high) = value_range(values);
        let last = values.len().saturating_sub(1).max(1) as f64;
        let mut builder = ChartBuilder::on(root);
        builder
            .margin(8 * SCALE)
            .margin_right(20 * SCALE)
            .x_label_area_size(18 * SCALE)
            .y_label_area_size(40 * SCALE);
        if !title.is_empty() {
            builder.caption(title, (FONT, 13 * SCALE).into_font().color(&RGBColor(0x11, 0x18, 0x27)));
        }
        let mut chart = builder
            .build_cartesian_2d(0f64..last, low..high)
            .map_err(|e| e.to_string())?;
        let label_at = |x: &f64| {
            let index = x.round() as usize;
            if (x - x.round()).abs() < 1e-6 {
                labels.get(index).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID_GREY.stroke_width(SCALE))
            .axis_style(GRID_GREY.stroke_width(SCALE))
            .x_labels(labels.len().clamp(2, 6))
            .y_labels(4)
            .x_label_formatter(&label_at)
            .y_label_formatter(&|v| crate::report::format::group(*v, if high - low < 10.0 { 1 } else { 0 }))
            .label_style((FONT, 11 * SCALE).into_font().color(&AXIS_GREY))
            .draw()
            .map_err(|e| e.to_string())?;
        let points = finite_points(values);
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2 * SCALE)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 2 * SCALE, colour.filled())))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// A sparkline: the line alone, its last point marked, for a table cell.
pub fn sparkline(values: &[f64], (width, height): (u32, u32), colour: RGBColor) -> Result<Png, String> {
    draw(width, height, |root| {
        let (low, high) = value_range(values);
        let last = values.len().saturating_sub(1).max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .margin(3 * SCALE)
            .build_cartesian_2d(0f64..last, low..high)
            .map_err(|e| e.to_string())?;
        let points = finite_points(values);
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(SCALE + 1)))
            .map_err(|e| e.to_string())?;
        if let Some(end) = points.last() {
            chart
                .draw_series(std::iter::once(Circle::new(*end, 2 * SCALE, colour.filled())))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("png header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("png frame");
        (info.width, info.height, pixels)
    }

    #[test]
    fn a_line_chart_is_a_white_png_with_the_line_in_its_colour() {
        let values = [3.0, 5.0, 4.0, 8.0, 6.0];
        let labels: Vec<String> = ["Jan", "Feb", "Mar", "Apr", "May"].map(String::from).to_vec();
        let chart = line_chart(&values, &labels, "NPS", (300, 120), RGBColor(0xdc, 0x26, 0x26)).expect("draws");
        let (width, height, pixels) = decode(&chart.bytes);
        assert_eq!((width, height), (600, 240));
        assert_eq!((chart.width, chart.height), (300, 120));
        assert_eq!(&pixels[..3], &[255, 255, 255], "white background");
        let red = pixels.chunks(3).filter(|p| p == &[0xdc, 0x26, 0x26]).count();
        assert!(red > 200, "the line is drawn ({red} pixels)");
        // Text was rendered with the bundled font: pixels of the label colour exist.
        let labels = pixels.chunks(3).filter(|p| p == &[0x6b, 0x72, 0x80]).count();
        assert!(labels > 50, "labels are drawn ({labels} pixels)");
        if let Some(path) = std::env::var_os("LIFEMAP_SAVE_CHART") {
            std::fs::write(path, &chart.bytes).expect("save chart");
        }
    }

    #[test]
    fn a_sparkline_of_one_point_or_none_still_draws() {
        for values in [&[][..], &[1.0][..], &[2.0, 2.0][..]] {
            let chart = sparkline(values, (100, 30), parse_colour("#16a34a")).expect("draws");
            assert_eq!(decode(&chart.bytes).0, 200);
        }
    }
}
