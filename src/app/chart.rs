//! A stacked bar chart of daily spend by model, drawn as SVG, with the
//! same numbers as a table.
//!
//! Each model's segment of a day's bar is a point the keyboard reaches
//! (Tab), named by its date, model and cost, and shows its tooltip on focus
//! as on hover (Escape hides it). Models differ by fill pattern as well as
//! by colour, and the legend shows both.

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
/// The series' colours, each at least 3:1 against the white card.
const COLORS: [&str; 8] = [
    "#3b5bdb", "#c96a00", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#e8590c", "#5c940d",
];
/// The series' fill patterns, in the same order as the colours: what tells
/// two series apart without their colour.
const PATTERNS: [Pattern; 8] = [
    Pattern::Solid,
    Pattern::Diagonal,
    Pattern::Dots,
    Pattern::Horizontal,
    Pattern::Grid,
    Pattern::Vertical,
    Pattern::BackDiagonal,
    Pattern::Checks,
];

/// A series' fill on top of its colour, in an 8×8 tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pattern {
    Solid,
    Diagonal,
    Dots,
    Horizontal,
    Grid,
    Vertical,
    BackDiagonal,
    Checks,
}

impl Pattern {
    /// The white marks drawn over the colour: a path, and whether it is
    /// filled (shapes) or stroked (lines). `None` for a solid fill.
    fn marks(self) -> Option<(&'static str, bool)> {
        match self {
            Self::Solid => None,
            Self::Diagonal => Some(("M-2,2 l4,-4 M0,8 l8,-8 M6,10 l4,-4", false)),
            Self::Dots => Some(("M1,1h2.5v2.5h-2.5z M5,5h2.5v2.5h-2.5z", true)),
            Self::Horizontal => Some(("M0,2h8 M0,6h8", false)),
            Self::Grid => Some(("M0,4h8 M4,0v8", false)),
            Self::Vertical => Some(("M2,0v8 M6,0v8", false)),
            Self::BackDiagonal => Some(("M-2,6 l4,4 M0,0 l8,8 M6,-2 l4,4", false)),
            Self::Checks => Some(("M0,0h4v4h-4z M4,4h4v4h-4z", true)),
        }
    }

    /// The pattern in words, as the legend's swatch says it.
    fn name(self) -> &'static str {
        match self {
            Self::Solid => "solid",
            Self::Diagonal => "diagonal stripes",
            Self::Dots => "dots",
            Self::Horizontal => "horizontal stripes",
            Self::Grid => "grid",
            Self::Vertical => "vertical stripes",
            Self::BackDiagonal => "back-diagonal stripes",
            Self::Checks => "checks",
        }
    }
}

/// One model's spend on one day: a segment of that day's bar.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    /// The day, 0 for the first of the 30.
    slot: usize,
    /// The model's index in the sorted list of models (its series).
    series: usize,
    /// What the segments below it in the day's bar add up to, nano-USD.
    below: i64,
    cost: i64,
    /// Its date, model and cost in words: its name and its tooltip.
    label: String,
}

/// A row of the table: a day with spend, its spend by model (in the order
/// of the models) and its total, in nano-USD.
#[derive(Debug, Clone, PartialEq)]
struct TableRow {
    date: String,
    costs: Vec<i64>,
    total: i64,
}

/// The models that spent, sorted: the series, in order.
fn models_of(series: &SpendSeries) -> Vec<String> {
    let mut models: Vec<String> = series.points.iter().map(|p| p.model.clone()).collect();
    models.sort();
    models.dedup();
    models
}

/// The date of a day's start, `YYYY-MM-DD`.
fn date_of(day: i64) -> String {
    format::datetime(day)[..10].to_string()
}

/// The name of a point: `2025-03-04, openai:gpt-4o-mini: $0.0012`.
fn point_label(day: i64, model: &str, cost: i64) -> String {
    format!("{}, {model}: ${}", date_of(day), format_usd(cost))
}

/// The bars' segments in the 30 days from `first_day`, day by day and,
/// within a day, bottom to top in the models' order: the order Tab visits
/// them in. Points outside the window are left out.
fn segments(series: &SpendSeries, first_day: i64, models: &[String]) -> Vec<Segment> {
    let mut points: Vec<_> = series
        .points
        .iter()
        .filter_map(|p| {
            let slot = day_index(p.day, first_day)?;
            let index = models.iter().position(|m| *m == p.model)?;
            Some((slot, index, p))
        })
        .collect();
    points.sort_by_key(|(slot, index, _)| (*slot, *index));
    let mut stacked = vec![0i64; DAYS as usize];
    points
        .into_iter()
        .map(|(slot, index, p)| {
            let below = stacked[slot];
            stacked[slot] += p.cost;
            Segment {
                slot,
                series: index,
                below,
                cost: p.cost,
                label: point_label(p.day, &p.model, p.cost),
            }
        })
        .collect()
}

/// The table's rows: each day with spend, oldest first, with each model's
/// spend that day (0 where it spent nothing) and the day's total.
fn table_rows(segments: &[Segment], first_day: i64, models: usize) -> Vec<TableRow> {
    let mut rows: Vec<TableRow> = Vec::new();
    for segment in segments {
        let date = date_of(first_day + segment.slot as i64 * DAY_MS);
        if rows.last().is_none_or(|row| row.date != date) {
            rows.push(TableRow {
                date,
                costs: vec![0; models],
                total: 0,
            });
        }
        let row = rows.last_mut().expect("pushed above");
        row.costs[segment.series] += segment.cost;
        row.total += segment.cost;
    }
    rows
}

/// The fill of series `index`: its pattern over its colour.
fn fill(id: &str, index: usize) -> String {
    format!("url(#{id}-series-{})", index % PATTERNS.len())
}

/// Daily spend over the last 30 days, one bar a day, stacked by model, with
/// a table of the same numbers. `id` makes the chart's element ids unique
/// on the page.
#[component]
pub fn SpendChart(
    series: SpendSeries,
    #[prop(default = "spend-chart")] id: &'static str,
) -> impl IntoView {
    let first_day = series.today - (DAYS - 1) * DAY_MS;
    let models = models_of(&series);
    let segments = segments(&series, first_day, &models);
    let mut totals = vec![0i64; DAYS as usize];
    for s in &segments {
        totals[s.slot] += s.cost;
    }
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let plot_height = HEIGHT - BOTTOM - TOP;
    let bar_step = (WIDTH - LEFT) / DAYS as f64;
    let y = move |nanos: i64| TOP + plot_height - nanos as f64 / max as f64 * plot_height;
    // Each segment's box: x, y of its top, width, height.
    let boxes: Vec<(f64, f64, f64, f64)> = segments
        .iter()
        .map(|s| {
            let (top, bottom) = (y(s.below + s.cost), y(s.below));
            let x = LEFT + s.slot as f64 * bar_step + 2.0;
            (x, top, bar_step - 4.0, (bottom - top).max(0.5))
        })
        .collect();

    // The point shown in the tooltip: hovered or focused.
    let active = RwSignal::new(None::<usize>);
    let tips = StoredValue::new(
        segments
            .iter()
            .zip(&boxes)
            .map(|(s, &bounds)| (s.label.clone(), bounds))
            .collect::<Vec<_>>(),
    );
    let tooltip_id = format!("{id}-tooltip");

    let patterns: Vec<_> = (0..models.len().min(PATTERNS.len()))
        .map(|i| {
            let color = COLORS[i];
            let marks = PATTERNS[i].marks().map(|(d, filled)| {
                if filled {
                    view! { <path d=d fill="#fff" fill-opacity="0.75" /> }.into_any()
                } else {
                    view! { <path d=d stroke="#fff" stroke-opacity="0.75" stroke-width="1.5" fill="none" /> }
                        .into_any()
                }
            });
            view! {
                <pattern id=format!("{id}-series-{i}") width="8" height="8" patternUnits="userSpaceOnUse">
                    <rect width="8" height="8" fill=color />
                    {marks}
                </pattern>
            }
        })
        .collect();
    let bars: Vec<_> = segments
        .iter()
        .zip(&boxes)
        .enumerate()
        .map(|(i, (s, &(x, top, width, height)))| {
            let leave = move || {
                if active.get_untracked() == Some(i) {
                    active.set(None);
                }
            };
            view! {
                <rect
                    class="point"
                    tabindex="0"
                    role="img"
                    aria-label=s.label.clone()
                    data-series=s.series
                    x=format!("{x:.1}")
                    y=format!("{top:.1}")
                    width=format!("{width:.1}")
                    height=format!("{height:.1}")
                    fill=fill(id, s.series)
                    on:mouseenter=move |_| active.set(Some(i))
                    on:mouseleave=move |_| leave()
                    on:focus=move |_| active.set(Some(i))
                    on:blur=move |_| leave()
                    on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                        if ev.key() == "Escape" {
                            active.set(None);
                        }
                    }
                />
            }
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
            let date = date_of(first_day + i * DAY_MS);
            view! {
                <text x=format!("{x:.1}") y=HEIGHT - 8.0 text-anchor="middle" class="tick">
                    {date[5..].to_string()}
                </text>
            }
        })
        .collect();
    let legend: Vec<_> = models
        .iter()
        .enumerate()
        .map(|(i, model)| {
            let pattern = PATTERNS[i % PATTERNS.len()];
            view! {
                <li data-series=i>
                    <svg class="swatch" viewBox="0 0 14 14" aria-hidden="true">
                        <rect width="14" height="14" fill=fill(id, i) />
                    </svg>
                    {model.clone()}
                    <span class="visually-hidden">{format!(" ({})", pattern.name())}</span>
                </li>
            }
        })
        .collect();
    let table = (!segments.is_empty()).then(|| {
        let rows = table_rows(&segments, first_day, models.len());
        let usd = |nanos: i64| format!("${}", format_usd(nanos));
        let heads = models
            .iter()
            .map(|m| view! { <th scope="col" class="num">{m.clone()}</th> })
            .collect_view();
        let body = rows
            .into_iter()
            .map(|row| {
                let cells = row
                    .costs
                    .into_iter()
                    .map(|c| view! { <td class="num">{usd(c)}</td> })
                    .collect_view();
                view! {
                    <tr>
                        <th scope="row">{row.date}</th>
                        {cells}
                        <td class="num">{usd(row.total)}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <details class="chart-table">
                <summary>"Show as table"</summary>
                <table class="table" data-testid="spend-table">
                    <caption>"Daily spend by model over the last 30 days, in USD (days with spend only)"</caption>
                    <thead>
                        <tr><th scope="col">"Day (UTC)"</th>{heads}<th scope="col" class="num">"Total"</th></tr>
                    </thead>
                    <tbody>{body}</tbody>
                </table>
            </details>
        }
    });
    // Drawn over every bar, so the active point stands out whole.
    let ring = move || {
        active.get().and_then(|i| {
            tips.with_value(|tips| {
                tips.get(i).map(|(_, (x, top, width, height))| {
                    view! {
                        <rect
                            class="point-ring"
                            aria-hidden="true"
                            x=format!("{:.1}", x - 1.5)
                            y=format!("{:.1}", top - 1.5)
                            width=format!("{:.1}", width + 3.0)
                            height=format!("{:.1}", height + 3.0)
                        />
                    }
                })
            })
        })
    };
    let tooltip = move || {
        active.get().and_then(|i| {
            tips.with_value(|tips| {
                tips.get(i).map(|(label, (x, top, width, _))| {
                    let across = (x + width / 2.0) / WIDTH;
                    let style = format!(
                        "left:{:.2}%;top:{:.2}%",
                        across * 100.0,
                        top / HEIGHT * 100.0
                    );
                    // In the right half it ends at its point, so it stays inside.
                    let class = if across > 0.5 {
                        "chart-tooltip end"
                    } else {
                        "chart-tooltip"
                    };
                    view! {
                        <div class=class role="tooltip" id=tooltip_id.clone() style=style>
                            {label.clone()}
                        </div>
                    }
                })
            })
        })
    };
    let empty = segments.is_empty();
    view! {
        <figure class="chart" data-testid="spend-chart">
            <div class="chart-plot">
                <svg
                    viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                    role="group"
                    aria-label="Daily spend by model over the last 30 days"
                >
                    <defs>{patterns}</defs>
                    <g aria-hidden="true">
                        {y_ticks}
                        <line x1=LEFT x2=LEFT y1=TOP y2=HEIGHT - BOTTOM class="axis" />
                        <line x1=LEFT x2=WIDTH y1=HEIGHT - BOTTOM y2=HEIGHT - BOTTOM class="axis" />
                        {x_ticks}
                    </g>
                    {bars}
                    {ring}
                </svg>
                {tooltip}
            </div>
            <figcaption>
                {if empty {
                    view! { <p class="muted">"No spend in the last 30 days."</p> }.into_any()
                } else {
                    view! { <ul class="legend" aria-label="Models">{legend}</ul> }.into_any()
                }}
            </figcaption>
            {table}
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
    use crate::server_fns::billing::SpendPoint;

    /// 2025-03-01 00:00 UTC.
    const MARCH_1: i64 = 1_740_787_200_000;

    fn point(day: i64, model: &str, cost: i64) -> SpendPoint {
        SpendPoint {
            day,
            model: model.into(),
            cost,
        }
    }

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

    #[test]
    fn a_point_is_named_by_its_date_model_and_cost() {
        assert_eq!(
            point_label(MARCH_1 + 3 * DAY_MS, "openai:gpt-4o-mini", 1_200_000),
            "2025-03-04, openai:gpt-4o-mini: $0.0012"
        );
        assert_eq!(
            point_label(MARCH_1, "m", 2_500_000_000),
            "2025-03-01, m: $2.50"
        );
    }

    #[test]
    fn segments_stack_day_by_day_in_the_models_order() {
        let series = SpendSeries {
            today: MARCH_1 + 29 * DAY_MS,
            points: vec![
                point(MARCH_1 + 2 * DAY_MS, "b", 30),
                point(MARCH_1 + 2 * DAY_MS, "a", 10),
                point(MARCH_1, "b", 5),
                point(MARCH_1 - DAY_MS, "a", 99), // before the window
            ],
        };
        let models = models_of(&series);
        assert_eq!(models, ["a", "b"]);
        let found = segments(&series, MARCH_1, &models);
        let summary: Vec<_> = found
            .iter()
            .map(|s| (s.slot, s.series, s.below, s.cost))
            .collect();
        assert_eq!(summary, [(0, 1, 0, 5), (2, 0, 0, 10), (2, 1, 10, 30)]);
        assert_eq!(found[0].label, "2025-03-01, b: $0.000000005");
        assert_eq!(found[2].label, "2025-03-03, b: $0.00000003");
    }

    #[test]
    fn the_table_has_a_row_per_day_with_spend_and_its_total() {
        let series = SpendSeries {
            today: MARCH_1 + 29 * DAY_MS,
            points: vec![
                point(MARCH_1 + 2 * DAY_MS, "b", 30),
                point(MARCH_1 + 2 * DAY_MS, "a", 10),
                point(MARCH_1, "b", 5),
                point(MARCH_1 + 29 * DAY_MS, "a", 7),
            ],
        };
        let models = models_of(&series);
        let rows = table_rows(&segments(&series, MARCH_1, &models), MARCH_1, models.len());
        assert_eq!(
            rows,
            [
                TableRow {
                    date: "2025-03-01".into(),
                    costs: vec![0, 5],
                    total: 5
                },
                TableRow {
                    date: "2025-03-03".into(),
                    costs: vec![10, 30],
                    total: 40
                },
                TableRow {
                    date: "2025-03-30".into(),
                    costs: vec![7, 0],
                    total: 7
                },
            ]
        );
        assert!(table_rows(&[], MARCH_1, 0).is_empty());
    }

    #[test]
    fn series_differ_by_pattern_as_well_as_colour() {
        let patterns: std::collections::HashSet<_> = PATTERNS.iter().collect();
        assert_eq!(
            patterns.len(),
            PATTERNS.len(),
            "each series its own pattern"
        );
        assert_eq!(COLORS.len(), PATTERNS.len());
        let names: std::collections::HashSet<_> = PATTERNS.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), PATTERNS.len());
        assert_eq!(
            fill("c", 9),
            "url(#c-series-1)",
            "the ninth model repeats the second's"
        );
    }
}
