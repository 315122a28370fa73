//! Grouped bar charts as hand-written SVG (no dependency), one panel per figure.

use std::fmt::Write;

/// One panel: groups along the x axis, one bar per series in each group.
pub struct Panel {
    pub title: String,
    pub groups: Vec<String>,
    /// `values[group][series]`; `None` leaves a gap.
    pub values: Vec<Vec<Option<f64>>>,
}

/// A chart: shared series names and colours, panels stacked vertically.
pub struct Chart {
    pub title: String,
    pub unit: String,
    pub series: Vec<(String, &'static str)>,
    pub panels: Vec<Panel>,
}

const WIDTH: f64 = 760.0;
const PANEL_HEIGHT: f64 = 230.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;

impl Chart {
    pub fn render(&self) -> String {
        let height = TOP + PANEL_HEIGHT * self.panels.len() as f64 + 10.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        let mut x = LEFT;
        for (name, colour) in &self.series {
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="34" width="12" height="12" fill="{colour}"/><text x="{}" y="45">{}</text>"#,
                x + 16.0,
                escape(name)
            );
            x += 30.0 + 8.0 * name.len() as f64;
        }
        for (p, panel) in self.panels.iter().enumerate() {
            self.panel(&mut s, panel, TOP + PANEL_HEIGHT * p as f64);
        }
        s.push_str("</svg>\n");
        s
    }

    fn panel(&self, s: &mut String, panel: &Panel, top: f64) {
        let plot_top = top + 24.0;
        let plot_height = PANEL_HEIGHT - 60.0;
        let bottom = plot_top + plot_height;
        let plot_width = WIDTH - LEFT - RIGHT;
        let max = panel
            .values
            .iter()
            .flatten()
            .flatten()
            .fold(0.0_f64, |a, &b| a.max(b));
        let step = nice_step(max / 4.0);
        let top_value = (max / step).ceil().max(1.0) * step;
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
            top + 14.0,
            escape(&panel.title)
        );
        let mut tick = 0.0;
        while tick <= top_value + step / 2.0 {
            let y = bottom - plot_height * tick / top_value;
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                short(tick)
            );
            tick += step;
        }
        let _ = writeln!(
            s,
            r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
            plot_top + plot_height / 2.0,
            plot_top + plot_height / 2.0,
            escape(&self.unit)
        );
        let group_width = plot_width / panel.groups.len().max(1) as f64;
        let bar_width = (group_width * 0.8) / self.series.len().max(1) as f64;
        for (g, name) in panel.groups.iter().enumerate() {
            let gx = LEFT + group_width * g as f64 + group_width * 0.1;
            for (k, (_, colour)) in self.series.iter().enumerate() {
                let Some(v) = panel
                    .values
                    .get(g)
                    .and_then(|row| row.get(k))
                    .copied()
                    .flatten()
                else {
                    continue;
                };
                let h = plot_height * v / top_value;
                let bx = gx + bar_width * k as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{colour}"><title>{}</title></rect>"#,
                    bottom - h,
                    bar_width - 2.0,
                    short(v)
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                gx + group_width * 0.4,
                bottom + 16.0,
                escape(name)
            );
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&v| v >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// `12k`, `1.5M`, `0.25`: compact axis labels.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_and_labels() {
        assert_eq!(nice_step(3_700.0), 5_000.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(short(15_000.0), "15k");
        assert_eq!(short(0.25), "0.25");
    }

    #[test]
    fn renders_one_bar_per_value() {
        let chart = Chart {
            title: "t".into(),
            unit: "req/s".into(),
            series: vec![("a".into(), "#111"), ("b".into(), "#222")],
            panels: vec![Panel {
                title: "p".into(),
                groups: vec!["1".into(), "2".into()],
                values: vec![vec![Some(1.0), Some(2.0)], vec![Some(3.0), None]],
            }],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<title>").count(), 3);
    }
}
