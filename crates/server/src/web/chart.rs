//! Trend charts drawn by the server as inline SVG (no script, no inline
//! style: colours come from classes in `app.css`): a time axis, the
//! reference range as a band, and one point per result coloured by its flag
//! (and titled with its value and flag in words, for screen readers and
//! hover).

use chrono::{DateTime, Utc};

use domain::labs::LabFlag;
use telemetry::num::trunc_i64;

use crate::web::view::{flag_label, num};

/// Drawing area (SVG user units; the SVG scales to its box).
const W: f64 = 600.0;
const H: f64 = 180.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

pub struct ChartPoint {
    pub x: String,
    pub y: String,
    /// `pt pt-critical`, `pt pt-abnormal`, `pt pt-normal`, `pt pt-none`.
    pub class: &'static str,
    pub title: String,
}

pub struct Tick {
    pub x: String,
    pub label: String,
    /// `start`, `middle` or `end`: the first and last labels stay inside
    /// the drawing.
    pub anchor: &'static str,
}

/// Everything the `chart` macro draws.
pub struct Chart {
    pub label: String,
    pub unit: String,
    pub width: String,
    pub height: String,
    pub plot_left: String,
    pub plot_right: String,
    pub plot_top: String,
    pub plot_bottom: String,
    pub axis_label_x: String,
    pub band: Option<(String, String)>,
    pub line: String,
    pub points: Vec<ChartPoint>,
    pub ticks: Vec<Tick>,
    pub y_top: String,
    pub y_bottom: String,
    pub summary: String,
}

fn point_class(flag: Option<LabFlag>) -> &'static str {
    match flag {
        Some(LabFlag::Normal) => "pt pt-normal",
        Some(LabFlag::Low | LabFlag::High) => "pt pt-abnormal",
        Some(LabFlag::CriticalLow | LabFlag::CriticalHigh) => "pt pt-critical",
        None => "pt pt-none",
    }
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// A chart of `(time, value, flag)` (any order), with the reference range
/// `(low, high)` when known; `None` with fewer than two results.
pub fn time_chart(
    label: &str,
    unit: &str,
    series: &[(DateTime<Utc>, f64, Option<LabFlag>)],
    range: (Option<f64>, Option<f64>),
) -> Option<Chart> {
    if series.len() < 2 {
        return None;
    }
    let mut s: Vec<&(DateTime<Utc>, f64, Option<LabFlag>)> = series.iter().collect();
    s.sort_by_key(|p| p.0);
    let (lo, hi) = s
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    // The value axis spans the results and the reference range.
    let (mut top, mut bottom) = (hi, lo);
    if let Some(h) = range.1 {
        top = top.max(h);
    }
    if let Some(l) = range.0 {
        bottom = bottom.min(l);
    }
    let pad = ((top - bottom) * 0.08).max(f64::EPSILON);
    let (top, bottom) = if (top - bottom).abs() < f64::EPSILON {
        (top + 1.0, bottom - 1.0)
    } else {
        (top + pad, bottom - pad)
    };
    // A quantity that is never negative (counts, rates, most results) keeps
    // its axis at zero or above.
    let bottom = match lo >= 0.0 && range.0.is_none_or(|l| l >= 0.0) {
        true => bottom.max(0.0),
        false => bottom,
    };
    let (t0, t1) = (s[0].0, s[s.len() - 1].0);
    let span_ms = (t1 - t0).num_milliseconds().max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t: DateTime<Utc>| LEFT + (t - t0).num_milliseconds() as f64 / span_ms * plot_w;
    let y = |v: f64| TOP + (top - v) / (top - bottom) * plot_h;
    let line = s
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
        .collect::<Vec<_>>()
        .join(" ");
    let points = s
        .iter()
        .map(|p| ChartPoint {
            x: f1(x(p.0)),
            y: f1(y(p.1)),
            class: point_class(p.2),
            title: format!(
                "{} {} {} — {}",
                p.0.format("%Y-%m-%d %H:%M"),
                num(p.1),
                unit,
                flag_label(p.2)
            ),
        })
        .collect();
    let band = match range {
        (None, None) => None,
        (l, h) => {
            let (a, b) = (y(h.unwrap_or(top)), y(l.unwrap_or(bottom)));
            Some((f1(a), f1((b - a).max(0.0))))
        }
    };
    // Three dates on the time axis: first, middle, last.
    let mid = t0 + (t1 - t0) / 2;
    let same_day = (t1 - t0).num_hours() < 48;
    let fmt = |t: DateTime<Utc>| {
        if same_day {
            t.format("%d %b %H:%M").to_string()
        } else {
            t.format("%Y-%m-%d").to_string()
        }
    };
    let ticks = [(t0, "start"), (mid, "middle"), (t1, "end")]
        .into_iter()
        .map(|(t, anchor)| Tick {
            x: f1(x(t)),
            label: fmt(t),
            anchor,
        })
        .collect();
    let critical = s
        .iter()
        .filter(|p| p.2.is_some_and(LabFlag::is_critical))
        .count();
    let days = trunc_i64(span_ms / 86_400_000.0);
    Some(Chart {
        label: label.to_string(),
        unit: unit.to_string(),
        width: f1(W),
        height: f1(H),
        plot_left: f1(LEFT),
        plot_right: f1(W - RIGHT),
        plot_top: f1(TOP),
        plot_bottom: f1(H - BOTTOM),
        axis_label_x: f1(LEFT - 6.0),
        band,
        line,
        points,
        ticks,
        y_top: num((top * 100.0).round() / 100.0),
        y_bottom: num((bottom * 100.0).round() / 100.0),
        summary: format!(
            "{label}: {} results over {days} days, from {} to {} {unit}, lowest {}, highest {}{}",
            s.len(),
            num(s[0].1),
            num(s[s.len() - 1].1),
            num(lo),
            num(hi),
            if critical > 0 {
                format!(", {critical} critical")
            } else {
                String::new()
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_take_the_colour_of_their_flag_and_the_band_spans_the_range() {
        let t = |d: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 1, d)
                .unwrap()
                .and_hms_opt(8, 0, 0)
                .unwrap()
                .and_utc()
        };
        let series = vec![
            (t(1), 4.0, Some(LabFlag::Normal)),
            (t(3), 5.5, Some(LabFlag::High)),
            (t(2), 7.0, Some(LabFlag::CriticalHigh)),
        ];
        let c = time_chart("Potassium", "mmol/L", &series, (Some(3.5), Some(5.1))).unwrap();
        let classes: Vec<_> = c.points.iter().map(|p| p.class).collect();
        // Sorted by time: day 1, day 2 (critical), day 3.
        assert_eq!(
            classes,
            ["pt pt-normal", "pt pt-critical", "pt pt-abnormal"]
        );
        assert!(c.band.is_some());
        assert_eq!(c.ticks.first().unwrap().label, "2026-01-01");
        assert_eq!(c.ticks.last().unwrap().label, "2026-01-03");
        assert!(c.summary.contains("1 critical"));
        assert!(time_chart("K", "mmol/L", &series[..1], (None, None)).is_none());
        assert_eq!(c.ticks.first().unwrap().anchor, "start");
        assert_eq!(c.ticks.last().unwrap().anchor, "end");
    }

    #[test]
    fn a_count_that_never_goes_below_zero_keeps_its_axis_at_zero() {
        let t = |m: i64| chrono::DateTime::UNIX_EPOCH + chrono::Duration::minutes(m);
        let flat = vec![(t(0), 0.0, None), (t(1), 0.0, None)];
        let c = time_chart("Alerts firing", "alerts", &flat, (None, None)).unwrap();
        assert_eq!((c.y_bottom.as_str(), c.y_top.as_str()), ("0", "1"));
        let low = vec![(t(0), 0.0, None), (t(1), 3.0, None)];
        let c = time_chart("Sign-in failures", "per interval", &low, (None, None)).unwrap();
        assert_eq!(c.y_bottom, "0");
        let negative = vec![(t(0), -2.0, None), (t(1), 3.0, None)];
        let c = time_chart("Change", "%", &negative, (None, None)).unwrap();
        assert!(c.y_bottom.starts_with('-'), "{}", c.y_bottom);
    }
}
