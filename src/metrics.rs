//! The counters behind `GET /metrics` (served by `operator_api::metrics`):
//! requests, tokens and cost by provider and model, latency and
//! time-to-first-token histograms, upstream errors by provider, open streams
//! and reservations, and usage batches by lane, rendered in Prometheus's
//! text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::billing::lanes::Lane;
use crate::billing::money::NANOS_PER_USD;
use crate::db::usage::UsageRecord;
use crate::providers::UpstreamError;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The gateway's counters; cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<Series>,
    open_streams: AtomicI64,
    open_reservations: AtomicI64,
    /// Usage batches applied in the normal and the background lane.
    usage_batches: [AtomicU64; 2],
}

#[derive(Debug, Default)]
struct Series {
    /// By provider, then model: looked up by `&str`, so that counting a
    /// request allocates nothing once its model has been seen.
    models: BTreeMap<String, BTreeMap<String, ModelSeries>>,
    upstream_errors: BTreeMap<(String, String), u64>,
    last_upstream_error: BTreeMap<String, UpstreamFailure>,
}

/// One provider's model.
#[derive(Debug, Default)]
struct ModelSeries {
    /// Requests by HTTP status.
    requests: BTreeMap<i32, u64>,
    /// Prompt, completion and cached tokens.
    tokens: [i64; 3],
    cost_nanos: i64,
    latency: Histogram,
    /// Streams only; left out while empty.
    ttft: Histogram,
}

impl Series {
    fn model_mut(&mut self, provider: &str, model: &str) -> &mut ModelSeries {
        if !self.models.contains_key(provider) {
            self.models.insert(provider.to_owned(), BTreeMap::new());
        }
        let models = self.models.get_mut(provider).expect("inserted above");
        if !models.contains_key(model) {
            models.insert(model.to_owned(), ModelSeries::default());
        }
        models.get_mut(model).expect("inserted above")
    }

    /// Every model's series with its labels, in label order.
    fn each_model(&self) -> impl Iterator<Item = (&str, &str, &ModelSeries)> {
        self.models.iter().flat_map(|(provider, models)| {
            models
                .iter()
                .map(move |(model, series)| (provider.as_str(), model.as_str(), series))
        })
    }
}

/// The latest failure of one provider, for the admin pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamFailure {
    /// Epoch milliseconds.
    pub at: i64,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

impl Metrics {
    /// Counts a finished request from its usage record.
    pub fn observe(&self, record: &UsageRecord) {
        let provider = record.provider.as_deref().unwrap_or_default();
        let model = record.model.as_deref().unwrap_or_default();
        let mut series = self.lock();
        let series = series.model_mut(provider, model);
        *series.requests.entry(record.status).or_default() += 1;
        series.tokens[0] += record.prompt_tokens;
        series.tokens[1] += record.completion_tokens;
        series.tokens[2] += record.cached_tokens;
        series.cost_nanos += record.cost;
        if let Some(ttft) = record.ttft_ms.filter(|_| record.streamed == 1) {
            series.ttft.observe(ttft as f64 / 1000.0);
        }
        series.latency.observe(record.latency_ms as f64 / 1000.0);
    }

    /// Counts a failed upstream call (each retry counts).
    pub fn upstream_error(&self, provider: &str, err: &UpstreamError, now_ms: i64) {
        let kind = match err {
            UpstreamError::Status { status, .. } => status.to_string(),
            UpstreamError::Timeout => "timeout".into(),
            UpstreamError::Connect(_) => "connect".into(),
            UpstreamError::Protocol(_) => "protocol".into(),
            UpstreamError::Truncated => "truncated".into(),
        };
        let mut series = self.lock();
        *series
            .upstream_errors
            .entry((provider.to_string(), kind.clone()))
            .or_default() += 1;
        let message: String = err.to_string().chars().take(500).collect();
        series.last_upstream_error.insert(
            provider.to_string(),
            UpstreamFailure {
                at: now_ms,
                kind,
                message,
            },
        );
    }

    /// The latest upstream failure of each provider that had one.
    pub fn last_upstream_errors(&self) -> BTreeMap<String, UpstreamFailure> {
        self.lock().last_upstream_error.clone()
    }

    /// A stream was opened (`+1`) or ended (`-1`).
    pub fn streams(&self, delta: i64) {
        self.open_streams.fetch_add(delta, Ordering::Relaxed);
    }

    /// A reservation was taken (`+1`) or settled (`-1`).
    pub fn reservations(&self, delta: i64) {
        self.open_reservations.fetch_add(delta, Ordering::Relaxed);
    }

    /// A usage batch went through `lane`.
    pub fn usage_batch(&self, lane: Lane) {
        self.usage_batches[lane as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Everything in Prometheus's text exposition format.
    pub fn render(&self) -> String {
        let series = self.lock();
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "llm_gateway_requests_total",
            "counter",
            "Requests finished, by provider, model and HTTP status.",
        );
        for (provider, model, series) in series.each_model() {
            for (status, n) in &series.requests {
                sample(
                    &mut out,
                    "llm_gateway_requests_total",
                    &[
                        ("provider", provider),
                        ("model", model),
                        ("status", &status.to_string()),
                    ],
                    *n as f64,
                );
            }
        }
        family(
            &mut out,
            "llm_gateway_tokens_total",
            "counter",
            "Tokens billed, by provider, model and kind (prompt, completion, cached).",
        );
        for (provider, model, series) in series.each_model() {
            for (kind, n) in ["prompt", "completion", "cached"].iter().zip(series.tokens) {
                sample(
                    &mut out,
                    "llm_gateway_tokens_total",
                    &[("provider", provider), ("model", model), ("kind", kind)],
                    n as f64,
                );
            }
        }
        family(
            &mut out,
            "llm_gateway_cost_usd_total",
            "counter",
            "What users were charged, in USD, by provider and model.",
        );
        for (provider, model, series) in series.each_model() {
            sample(
                &mut out,
                "llm_gateway_cost_usd_total",
                &[("provider", provider), ("model", model)],
                series.cost_nanos as f64 / NANOS_PER_USD as f64,
            );
        }
        histograms(
            &mut out,
            "llm_gateway_request_duration_seconds",
            "Time from request to the last byte, by provider and model.",
            series.each_model().map(|(p, m, s)| (p, m, &s.latency)),
        );
        histograms(
            &mut out,
            "llm_gateway_time_to_first_token_seconds",
            "Time from request to the first streamed chunk, by provider and model.",
            series
                .each_model()
                .map(|(p, m, s)| (p, m, &s.ttft))
                .filter(|(_, _, ttft)| ttft.count > 0),
        );
        family(
            &mut out,
            "llm_gateway_upstream_errors_total",
            "counter",
            "Failed upstream calls (retries included), by provider and kind.",
        );
        for ((provider, kind), n) in &series.upstream_errors {
            sample(
                &mut out,
                "llm_gateway_upstream_errors_total",
                &[("provider", provider), ("kind", kind)],
                *n as f64,
            );
        }
        family(
            &mut out,
            "llm_gateway_open_streams",
            "gauge",
            "Streams being relayed now.",
        );
        sample(
            &mut out,
            "llm_gateway_open_streams",
            &[],
            self.open_streams.load(Ordering::Relaxed) as f64,
        );
        family(
            &mut out,
            "llm_gateway_open_reservations",
            "gauge",
            "Requests holding part of a balance now.",
        );
        sample(
            &mut out,
            "llm_gateway_open_reservations",
            &[],
            self.open_reservations.load(Ordering::Relaxed) as f64,
        );
        family(
            &mut out,
            "llm_gateway_usage_batches_total",
            "counter",
            "Batches of usage records applied, by lane (background: at idle CPU priority).",
        );
        for (lane, name) in [(Lane::Normal, "normal"), (Lane::Background, "background")] {
            sample(
                &mut out,
                "llm_gateway_usage_batches_total",
                &[("lane", name)],
                self.usage_batches[lane as usize].load(Ordering::Relaxed) as f64,
            );
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{key}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn histograms<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a str, &'a str, &'a Histogram)>,
) {
    family(out, name, "histogram", help);
    let bucket = format!("{name}_bucket");
    for (provider, model, histogram) in series {
        let labels = [("provider", provider), ("model", model)];
        for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
            let le = bound.to_string();
            sample(
                out,
                &bucket,
                &[labels[0], labels[1], ("le", &le)],
                count as f64,
            );
        }
        sample(
            out,
            &bucket,
            &[labels[0], labels[1], ("le", "+Inf")],
            histogram.count as f64,
        );
        sample(out, &format!("{name}_sum"), &labels, histogram.sum);
        sample(
            out,
            &format!("{name}_count"),
            &labels,
            histogram.count as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        let record = UsageRecord {
            provider: Some("openai".into()),
            model: Some("gpt-\"4o\"".into()),
            status: 200,
            prompt_tokens: 3,
            completion_tokens: 6,
            cost: 1_500_000_000,
            latency_ms: 30,
            ttft_ms: Some(4),
            streamed: 1,
            ..UsageRecord::default()
        };
        metrics.observe(&record);
        metrics.observe(&UsageRecord {
            latency_ms: 2000,
            streamed: 0,
            ..record
        });
        let text = metrics.render();
        let labels = r#"provider="openai",model="gpt-\"4o\"""#;
        assert!(
            text.contains(&format!(
                "llm_gateway_requests_total{{{labels},status=\"200\"}} 2\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "llm_gateway_tokens_total{{{labels},kind=\"completion\"}} 12\n"
        )));
        assert!(text.contains(&format!("llm_gateway_cost_usd_total{{{labels}}} 3\n")));
        assert!(text.contains(&format!(
            "llm_gateway_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "llm_gateway_request_duration_seconds_bucket{{{labels},le=\"2.5\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "llm_gateway_request_duration_seconds_count{{{labels}}} 2\n"
        )));
        assert!(text.contains(&format!(
            "llm_gateway_time_to_first_token_seconds_count{{{labels}}} 1\n"
        )));
    }

    #[test]
    fn counts_usage_batches_by_lane() {
        let metrics = Metrics::default();
        metrics.usage_batch(Lane::Background);
        metrics.usage_batch(Lane::Background);
        metrics.usage_batch(Lane::Normal);
        let text = metrics.render();
        assert!(text.contains("llm_gateway_usage_batches_total{lane=\"normal\"} 1\n"));
        assert!(text.contains("llm_gateway_usage_batches_total{lane=\"background\"} 2\n"));
    }

    #[test]
    fn keeps_the_latest_upstream_error() {
        let metrics = Metrics::default();
        metrics.upstream_error("openai", &UpstreamError::Timeout, 1);
        metrics.upstream_error("openai", &UpstreamError::Connect("refused".into()), 2);
        let last = metrics.last_upstream_errors();
        assert_eq!(last["openai"].kind, "connect");
        assert!(metrics.render().contains(
            "llm_gateway_upstream_errors_total{provider=\"openai\",kind=\"timeout\"} 1\n"
        ));
    }
}
