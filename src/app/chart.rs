//! A stacked bar chart of daily spend by model, drawn as SVG.

use leptos::prelude::*;

use crate::billing::money::format_usd;
use crate::format;
use crate::server_fns::billing::SpendSeries;

const DAY_MS: i64 = 86_400_000;
const DAYS: i64 = 30;
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 84.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;
const COLORS: [&str; 8] = [
    "#3b5bdb", "#f08c00", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#e8590c", "#5c940d",
];

/// Daily spend over the last 30 days, one bar a day, stacked by model.
#[component]
pub fn SpendChart(series: SpendSeries) -> impl IntoView {
    let first_day = series.today - (DAYS - 1) * DAY_MS;
    let mut models: Vec<String> = series.points.iter().map(|p| p.model.clone()).collect();
    models.sort();
    models.dedup();
    let color =
        |model: &str| COLORS[models.iter().position(|m| m == model).unwrap_or(0) % COLORS.len()];
    let mut totals = vec![0i64; DAYS as usize];
    for point in &series.points {
        if let Some(slot) = day_index(point.day, first_day) {
            totals[slot] += point.cost;
        }
    }
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let plot_height = HEIGHT - BOTTOM - TOP;
    let bar_step = (WIDTH - LEFT) / DAYS as f64;
    let y = |nanos: i64| TOP + plot_height - nanos as f64 / max as f64 * plot_height;

    let mut offsets = vec![0i64; DAYS as usize];
    let bars: Vec<_> = series
        .points
        .iter()
        .filter_map(|point| {
            let slot = day_index(point.day, first_day)?;
            let bottom = offsets[slot];
            offsets[slot] += point.cost;
            let (y_top, y_bottom) = (y(bottom + point.cost), y(bottom));
            let label = format!(
                "{} · {}: ${}",
                &format::datetime(point.day)[..10],
                point.model,
                format_usd(point.cost)
            );
            Some(view! {
                <rect
                    x=format!("{:.1}", LEFT + slot as f64 * bar_step + 2.0)
                    y=format!("{y_top:.1}")
                    width=format!("{:.1}", bar_step - 4.0)
                    height=format!("{:.1}", (y_bottom - y_top).max(0.5))
                    fill=color(&point.model)
                >
                    <title>{label}</title>
                </rect>
            })
        })
        .collect();
    let y_ticks: Vec<_> = (0..=4)
        .map(|i| {
            let value = max / 4 * i;
            let at = y(value);
            view! {
                <line x1=LEFT x2=WIDTH y1=format!("{at:.1}") y2=format!("{at:.1}") class="grid" />
                <text x=LEFT - 6.0 y=format!("{:.1}", at + 4.0) text-anchor="end" class="tick">
                    {format!("${}", format_usd(value))}
                </text>
            }
        })
        .collect();
    let x_ticks: Vec<_> = (0..DAYS)
        .step_by(5)
        .map(|i| {
            let x = LEFT + i as f64 * bar_step + bar_step / 2.0;
            let date = format::datetime(first_day + i * DAY_MS);
            view! {
                <text x=format!("{x:.1}") y=HEIGHT - 8.0 text-anchor="middle" class="tick">
                    {date[5..10].to_string()}
                </text>
            }
        })
        .collect();
    let legend: Vec<_> = models
        .iter()
        .map(|model| {
            view! {
                <li>
                    <span class="swatch" style=format!("background:{}", color(model))></span>
                    {model.clone()}
                </li>
            }
        })
        .collect();
    let empty = series.points.is_empty();
    view! {
        <figure class="chart">
            <svg
                viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                role="img"
                aria-label="Daily spend by model over the last 30 days"
            >
                {y_ticks}
                <line x1=LEFT x2=LEFT y1=TOP y2=HEIGHT - BOTTOM class="axis" />
                <line x1=LEFT x2=WIDTH y1=HEIGHT - BOTTOM y2=HEIGHT - BOTTOM class="axis" />
                {x_ticks}
                {bars}
            </svg>
            <figcaption>
                {if empty {
                    view! { <p class="muted">"No spend in the last 30 days."</p> }.into_any()
                } else {
                    view! { <ul class="legend">{legend}</ul> }.into_any()
                }}
            </figcaption>
        </figure>
    }
}

fn day_index(day: i64, first_day: i64) -> Option<usize> {
    let index = (day - first_day).div_euclid(DAY_MS);
    (0..DAYS).contains(&index).then_some(index as usize)
}

/// A round axis maximum at or above `max` (1, 2 or 5 × a power of ten nano-USD).
fn nice_max(max: i64) -> i64 {
    if max <= 0 {
        return 4_000; // an empty chart still gets an axis
    }
    let mut step = 1i64;
    loop {
        for factor in [1, 2, 5] {
            let candidate = step.saturating_mul(factor).saturating_mul(4);
            if candidate >= max {
                return candidate;
            }
        }
        step = step.saturating_mul(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maximum_is_round_and_covers_the_data() {
        assert_eq!(nice_max(0), 4_000);
        assert_eq!(nice_max(3), 4);
        assert_eq!(nice_max(5), 8);
        assert_eq!(nice_max(4_500), 8_000);
        assert_eq!(nice_max(1_000_000_001), 2_000_000_000);
    }

    #[test]
    fn days_outside_the_window_are_dropped() {
        assert_eq!(day_index(0, 0), Some(0));
        assert_eq!(day_index(29 * DAY_MS, 0), Some(29));
        assert_eq!(day_index(30 * DAY_MS, 0), None);
        assert_eq!(day_index(-DAY_MS, 0), None);
    }
}
