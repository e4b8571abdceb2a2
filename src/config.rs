//! `config.yml`, in the style of any-llm-gateway.
//!
//! Precedence, lowest to highest: built-in defaults, the YAML file, the
//! `GATEWAY_*` environment variables, then command-line flags.
//! `${VAR}` (or `${VAR:-default}`) in any string value is replaced by the
//! environment variable; an unset variable without a default is an error.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("{path}: `{key}` refers to environment variable {var}, which is not set")]
    UnsetVariable {
        path: String,
        key: String,
        var: String,
    },
    #[error("environment variable {var}: {message}")]
    BadEnv { var: String, message: String },
}

/// The gateway's configuration, after every layer has been applied.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    #[serde(default = "default_port", deserialize_with = "number")]
    pub port: u16,
    /// `sqlite://path/to/file.db` (default) or `postgres://…`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// The operator's key for the admin API; absent disables it.
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub master_key: Option<String>,
    /// The URL people reach the site at; `https://…` makes the session cookie `Secure`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Upstream providers by name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Provider cost per model, keyed `provider:model`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pricing: BTreeMap<String, PriceConfig>,
    /// Models to try, in order, when a model's provider fails: `provider:model` → list.
    #[serde(default, deserialize_with = "null_as_default")]
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// Timeouts and retries for upstream calls.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The largest request body accepted, in bytes (413 beyond).
    #[serde(default = "default_max_request_bytes", deserialize_with = "number")]
    pub max_request_bytes: usize,
    /// The margin on provider cost, in percent, unless a model sets its own.
    #[serde(default = "default_margin_percent", deserialize_with = "number")]
    pub margin_percent: f64,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    #[serde(default = "default_reserve_output_tokens", deserialize_with = "number")]
    pub reserve_output_tokens: i64,
    /// Credit (USD) granted to each new dashboard account.
    #[serde(default, deserialize_with = "number")]
    pub signup_credit: f64,
    /// How users add credit.
    #[serde(default)]
    pub payments: PaymentsConfig,
    /// How mail (address verification, password resets, receipts, alerts) is sent.
    #[serde(default)]
    pub email: EmailConfig,
    /// Whether an account must verify its email address before it may
    /// create keys or pay (operators' keys are not affected).
    #[serde(default)]
    pub require_verified_email: bool,
    /// On SIGTERM, how long open requests and streams may run before they
    /// are cut (and billed for what they used), in seconds.
    #[serde(default = "default_shutdown_grace_secs", deserialize_with = "number")]
    pub shutdown_grace_secs: u64,
    /// Whether `GET /metrics` is open to anyone (otherwise it needs the master key).
    #[serde(default)]
    pub metrics_public: bool,
    /// Dashboard users with these emails are admins (as are users given the
    /// admin role with `llm-gateway users set-role`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub admin_emails: Vec<String>,
    /// Providers dropped because their `api_key` came out empty.
    #[serde(skip)]
    pub switched_off: Vec<String>,
    /// Whether the first account signed up on an empty database is an admin.
    #[serde(default = "yes")]
    pub first_account_admin: bool,
    /// The folder holding the dashboard's scripts, styles and files, as
    /// `scripts/build.sh` writes it (`LEPTOS_SITE_ROOT` overrides it; unset,
    /// `site` beside the folder holding the binary).
    #[serde(default)]
    pub site_root: Option<String>,
    /// How much of a user's credit each replica may spend without asking
    /// the database (PostgreSQL; `billing::leases`).
    #[serde(default)]
    pub credit_leases: LeaseConfig,
}

/// The bounds of a replica's leases on users' credit and budgets.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// The smallest lease, in USD: a balance too small for one gets a
    /// reservation per call instead.
    #[serde(default = "default_lease_min_usd", deserialize_with = "number")]
    pub min_usd: f64,
    /// The largest lease, in USD.
    #[serde(default = "default_lease_max_usd", deserialize_with = "number")]
    pub max_usd: f64,
    /// How many seconds of the user's recent spending a lease covers.
    #[serde(default = "default_lease_seconds", deserialize_with = "number")]
    pub seconds: f64,
    /// How many seconds a lease stays unused before it goes back.
    #[serde(default = "default_lease_idle_seconds", deserialize_with = "number")]
    pub idle_seconds: f64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            min_usd: default_lease_min_usd(),
            max_usd: default_lease_max_usd(),
            seconds: default_lease_seconds(),
            idle_seconds: default_lease_idle_seconds(),
        }
    }
}

fn default_lease_min_usd() -> f64 {
    0.05
}

fn default_lease_max_usd() -> f64 {
    5.0
}

fn default_lease_seconds() -> f64 {
    1.0
}

fn default_lease_idle_seconds() -> f64 {
    30.0
}

/// How users add credit: `test` credits the amount directly (demos);
/// `stripe` sends them to a Stripe Checkout page and credits what Stripe's
/// webhook reports paid; `disabled` leaves it to operators.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    #[serde(default)]
    pub mode: PaymentMode,
    /// Stripe's secret API key (`sk_live_…`, `sk_test_…`).
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub secret_key: Option<String>,
    /// The signing secret of the webhook endpoint (`whsec_…`).
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub webhook_secret: Option<String>,
    /// The currency Stripe charges in (ISO code, lower case). Credit is
    /// counted in the units prices are in, one for one.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// The smallest and largest payment a user may make, in the currency's units.
    #[serde(default = "default_min_usd", deserialize_with = "number")]
    pub min_usd: f64,
    #[serde(default = "default_max_usd", deserialize_with = "number")]
    pub max_usd: f64,
    /// Stripe's API, or the mock provider's stand-in for it.
    #[serde(default = "default_stripe_api_base")]
    pub api_base: String,
    /// A processing fee added to the charge, in percent of the credit
    /// bought; the credit is the amount before the fee.
    #[serde(default, deserialize_with = "number")]
    pub fee_percent: f64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            mode: PaymentMode::default(),
            secret_key: None,
            webhook_secret: None,
            currency: default_currency(),
            min_usd: default_min_usd(),
            max_usd: default_max_usd(),
            api_base: default_stripe_api_base(),
            fee_percent: 0.0,
        }
    }
}

impl PaymentsConfig {
    /// Checks Stripe's settings (nothing to check in the other modes).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.mode != PaymentMode::Stripe {
            return Ok(());
        }
        if self.secret_key.is_none() || self.webhook_secret.is_none() {
            return Err((
                "payments",
                "mode stripe needs secret_key and webhook_secret".into(),
            ));
        }
        let currency_ok = self.currency.len() == 3
            && self.currency.bytes().all(|b| b.is_ascii_lowercase())
            && !ZERO_DECIMAL_CURRENCIES.contains(&self.currency.as_str());
        if !currency_ok {
            return Err((
                "payments.currency",
                format!(
                    "`{}` is not supported: use a lower-case ISO code of a currency with cents, such as usd or eur",
                    self.currency
                ),
            ));
        }
        let range_ok = self.min_usd.is_finite()
            && self.max_usd.is_finite()
            && self.min_usd >= 0.5
            && self.max_usd >= self.min_usd
            && self.max_usd <= 100_000.0;
        if !range_ok {
            return Err((
                "payments.min_usd",
                "needs 0.5 <= min_usd <= max_usd <= 100000".into(),
            ));
        }
        if !self.fee_percent.is_finite() || !(0.0..=50.0).contains(&self.fee_percent) {
            return Err(("payments.fee_percent", "must be from 0 to 50".into()));
        }
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            return Err((
                "payments.api_base",
                format!("`{}` must start with http:// or https://", self.api_base),
            ));
        }
        Ok(())
    }
}

/// Currencies Stripe counts in whole units; their amounts have no cents.
const ZERO_DECIMAL_CURRENCIES: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

fn default_currency() -> String {
    "usd".into()
}

fn default_min_usd() -> f64 {
    5.0
}

fn default_max_usd() -> f64 {
    1000.0
}

fn default_stripe_api_base() -> String {
    "https://api.stripe.com".into()
}

/// How mail is sent: `disabled` (the default) sends none, `log` writes each
/// mail, links included, to the log at info level (development), `smtp`
/// sends it through `smtp_url` (`smtp://host:port`, `smtps://…`, or
/// `smtp://…?tls=required` for STARTTLS; user and password in the URL).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default)]
    pub mode: EmailMode,
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub smtp_url: Option<String>,
    /// The sender, `Name <address>` or a bare address.
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub from: Option<String>,
}

/// See [`EmailConfig`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmailMode {
    #[default]
    Disabled,
    Log,
    Smtp,
}

impl EmailConfig {
    /// Checks that `smtp` has a URL and a sender, and that a sender parses
    /// as a mailbox.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.mode == EmailMode::Smtp && (self.smtp_url.is_none() || self.from.is_none()) {
            return Err(("email", "mode smtp needs smtp_url and from".into()));
        }
        if let Some(from) = &self.from {
            if from.parse::<lettre::message::Mailbox>().is_err() {
                return Err((
                    "email.from",
                    format!("`{from}` is not a mail address (write `Name <name@example.com>` or `name@example.com`)"),
                ));
            }
        }
        if let Some(url) = &self.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err((
                    "email.smtp_url",
                    format!("`{url}` must start with smtp:// or smtps://"),
                ));
            }
        }
        Ok(())
    }
}

/// See [`PaymentsConfig`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMode {
    #[default]
    Disabled,
    Test,
    Stripe,
}

fn default_margin_percent() -> f64 {
    20.0
}

fn default_reserve_output_tokens() -> i64 {
    4096
}

/// Timeouts and retries for upstream calls. Retries apply to non-streaming
/// requests, and to streams before their first byte reaches the client.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub connect_timeout_secs: u64,
    /// Longest wait for the next byte of an upstream response.
    pub read_timeout_secs: u64,
    /// Retries after the first attempt, on 429, 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// The first retry waits this long; each next one twice as long.
    pub retry_backoff_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            read_timeout_secs: 300,
            max_retries: 2,
            retry_backoff_ms: 200,
        }
    }
}

/// One upstream provider.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Wire format; implied by the names `openai`, `anthropic` and `gemini`.
    #[serde(default)]
    pub kind: Option<ProviderKind>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_base: Option<String>,
}

/// The wire formats the gateway speaks upstream.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Gemini,
    /// The mock provider, served inside the gateway (OpenAI's wire format,
    /// canned replies): for trying the gateway with no provider account.
    Demo,
}

/// A provider's cost for one model, in USD per million tokens.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input_price_per_million: f64,
    pub output_price_per_million: f64,
    /// Prompt tokens read from the provider's cache; unset, the input price.
    #[serde(default, alias = "cached_input_price_per_million")]
    pub cache_read_price_per_million: Option<f64>,
    /// Prompt tokens written to the cache for 5 minutes; unset, the input price.
    #[serde(default)]
    pub cache_write_price_per_million: Option<f64>,
    /// Prompt tokens written to the cache for an hour; unset, the 5-minute price.
    #[serde(default)]
    pub cache_write_1h_price_per_million: Option<f64>,
    #[serde(default)]
    pub margin_percent: Option<f64>,
}

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database_url: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database_url", &self.database_url)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("public_url", &self.public_url)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("pricing", &self.pricing.len())
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            database_url: default_database_url(),
            master_key: None,
            public_url: None,
            trust_forwarded_for: false,
            providers: BTreeMap::new(),
            pricing: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            upstream: UpstreamConfig::default(),
            max_request_bytes: default_max_request_bytes(),
            margin_percent: default_margin_percent(),
            reserve_output_tokens: default_reserve_output_tokens(),
            signup_credit: 0.0,
            payments: PaymentsConfig::default(),
            email: EmailConfig::default(),
            require_verified_email: false,
            shutdown_grace_secs: default_shutdown_grace_secs(),
            metrics_public: false,
            admin_emails: Vec::new(),
            switched_off: Vec::new(),
            first_account_admin: true,
            site_root: None,
            credit_leases: LeaseConfig::default(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_shutdown_grace_secs() -> u64 {
    30
}

/// The highest price per million tokens, in USD, and the highest margin.
const MAX_PRICE_USD: f64 = 100_000.0;
const MAX_MARGIN_PERCENT: f64 = 1_000.0;

fn default_max_request_bytes() -> usize {
    10 * 1024 * 1024
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    3000
}

fn default_database_url() -> String {
    "sqlite://data/gateway.db".into()
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A number written as a number, or as a string (what `${VAR}` expands to).
fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString<T> {
        Number(T),
        String(String),
    }
    match NumberOrString::<T>::deserialize(deserializer)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => s
            .trim()
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a valid number: {e}"))),
    }
}

fn empty_string_as_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

impl Config {
    /// Whether a user with this role and email may use the admin pages.
    pub fn is_admin(&self, role: &str, email: Option<&str>) -> bool {
        role == "admin"
            || email.is_some_and(|email| {
                self.admin_emails
                    .iter()
                    .any(|admin| admin.trim().eq_ignore_ascii_case(email))
            })
    }

    /// Loads the configuration: `file` (if any), then `env`, then `overrides`.
    ///
    /// `env` looks up an environment variable; it is a parameter so tests need
    /// not touch the process environment.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path, env)?,
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.apply_overrides(overrides);
        config.switch_off_keyless_providers();
        config.validate(&file.map_or("config".into(), |p| p.display().to_string()))?;
        Ok(config)
    }

    fn from_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string(), env)
    }

    /// Parses YAML text; `origin` names it in error messages.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
                path: origin.into(),
                message: e.to_string(),
            })?;
        if value.is_null() {
            value = serde_yaml::Value::Mapping(Default::default());
        }
        interpolate(&mut value, "", origin, env)?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde names an unknown key in its message; point at its parent.
            ConfigError::Invalid {
                path: origin.into(),
                key,
                message,
            }
        })
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(host) = env("GATEWAY_HOST") {
            self.host = host;
        }
        if let Some(port) = env("GATEWAY_PORT") {
            self.port = port.parse().map_err(|_| ConfigError::BadEnv {
                var: "GATEWAY_PORT".into(),
                message: format!("`{port}` is not a port number (0-65535)"),
            })?;
        }
        if let Some(url) = env("GATEWAY_DATABASE_URL") {
            self.database_url = url;
        }
        if let Some(key) = env("GATEWAY_MASTER_KEY").filter(|k| !k.is_empty()) {
            self.master_key = Some(key);
        }
        Ok(())
    }

    /// Drops each provider whose `api_key` is given but empty (typically
    /// `${OPENAI_API_KEY:-}` with the variable unset), naming it in
    /// [`Config::switched_off`]. A provider with no `api_key` at all stays:
    /// some upstreams (a local server, the demo) need none.
    fn switch_off_keyless_providers(&mut self) {
        let keyless: Vec<String> = self
            .providers
            .iter()
            .filter(|(_, p)| p.api_key.as_deref().is_some_and(|k| k.trim().is_empty()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &keyless {
            self.providers.remove(name);
        }
        self.switched_off = keyless;
    }

    fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(host) = &overrides.host {
            self.host = host.clone();
        }
        if let Some(port) = overrides.port {
            self.port = port;
        }
        if let Some(url) = &overrides.database_url {
            self.database_url = url.clone();
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: origin.into(),
            key: key.into(),
            message,
        };
        if self.host.trim().is_empty() {
            return Err(invalid("host", "must not be empty".into()));
        }
        if !is_supported_database_url(&self.database_url) {
            return Err(invalid(
                "database_url",
                format!(
                    "`{}` is not supported; use sqlite://path/to/file.db or postgres://user@host/db",
                    self.database_url
                ),
            ));
        }
        if let Some(key) = &self.master_key {
            if key.len() < 16 {
                return Err(invalid(
                    "master_key",
                    "must be at least 16 characters long".into(),
                ));
            }
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "public_url",
                    format!("`{url}` must start with http:// or https://"),
                ));
            }
        }
        for (name, provider) in &self.providers {
            if provider.kind.is_none() && ProviderKind::from_name(name).is_none() {
                return Err(invalid(
                    &format!("providers.{name}.kind"),
                    "is required for a provider not named openai, anthropic, gemini or demo \
                     (one of: openai, anthropic, gemini, demo)"
                        .into(),
                ));
            }
            let is_demo =
                provider.kind.or_else(|| ProviderKind::from_name(name)) == Some(ProviderKind::Demo);
            if is_demo && provider.api_base.is_some() {
                return Err(invalid(
                    &format!("providers.{name}.api_base"),
                    "a demo provider is served inside the gateway and takes no api_base".into(),
                ));
            }
        }
        for (model, targets) in &self.fallbacks {
            let key = format!("fallbacks.{model}");
            if !model.contains(':') || targets.iter().any(|t| !t.contains(':')) {
                return Err(invalid(&key, "models are written `provider:model`".into()));
            }
        }
        if self.upstream.connect_timeout_secs == 0 || self.upstream.read_timeout_secs == 0 {
            return Err(invalid(
                "upstream",
                "timeouts must be at least 1 second".into(),
            ));
        }
        if !self.margin_percent.is_finite()
            || !(0.0..=MAX_MARGIN_PERCENT).contains(&self.margin_percent)
        {
            return Err(invalid(
                "margin_percent",
                format!("must be from 0 to {MAX_MARGIN_PERCENT}"),
            ));
        }
        if let Err((key, message)) = self.payments.validate() {
            return Err(invalid(key, message));
        }
        if let Err((key, message)) = self.email.validate() {
            return Err(invalid(key, message));
        }
        if self.require_verified_email && self.email.mode == EmailMode::Disabled {
            return Err(invalid(
                "require_verified_email",
                "needs email (mode log or smtp) to send the verification links".into(),
            ));
        }
        if self.reserve_output_tokens < 1 {
            return Err(invalid(
                "reserve_output_tokens",
                "must be at least 1".into(),
            ));
        }
        if !self.signup_credit.is_finite() || self.signup_credit < 0.0 {
            return Err(invalid("signup_credit", "must be zero or more".into()));
        }
        if self.max_request_bytes < 1024 {
            return Err(invalid("max_request_bytes", "must be at least 1024".into()));
        }
        for (model, price) in &self.pricing {
            let key = format!("pricing.{model}");
            if !model.contains(':') {
                return Err(invalid(
                    &key,
                    "model keys are written `provider:model`".into(),
                ));
            }
            let prices = [
                Some(price.input_price_per_million),
                Some(price.output_price_per_million),
                price.cache_read_price_per_million,
                price.cache_write_price_per_million,
                price.cache_write_1h_price_per_million,
                price.margin_percent,
            ];
            if prices
                .into_iter()
                .flatten()
                .any(|p| !p.is_finite() || p < 0.0)
            {
                return Err(invalid(
                    &key,
                    "prices and margins must be zero or more".into(),
                ));
            }
            // The admin API's bounds: guards against a typo's extra zeros.
            if prices[..5].iter().flatten().any(|p| *p > MAX_PRICE_USD)
                || price.margin_percent.is_some_and(|m| m > MAX_MARGIN_PERCENT)
            {
                return Err(invalid(
                    &key,
                    format!(
                        "prices must be at most {MAX_PRICE_USD} USD per million tokens, margins at most {MAX_MARGIN_PERCENT}%"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the site is served over https, so cookies must be `Secure`.
    pub fn serves_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }
}

impl ProviderKind {
    /// The kind's name, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Demo => "demo",
        }
    }

    /// The wire format spoken upstream (the demo speaks OpenAI's).
    pub fn wire_format(self) -> Self {
        match self {
            Self::Demo => Self::Openai,
            kind => kind,
        }
    }

    /// The kind implied by a provider's name, for the three well-known names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::Openai),
            "anthropic" => Some(Self::Anthropic),
            "gemini" => Some(Self::Gemini),
            "demo" => Some(Self::Demo),
            _ => None,
        }
    }
}

fn is_supported_database_url(url: &str) -> bool {
    ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string value of `value`.
fn interpolate(
    value: &mut serde_yaml::Value,
    key: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        serde_yaml::Value::String(text) => {
            *text = interpolate_str(text, env).map_err(|var| ConfigError::UnsetVariable {
                path: origin.into(),
                key: key.into(),
                var,
            })?;
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = k.as_str().map(str::to_owned).unwrap_or_default();
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}.{name}")
                };
                interpolate(v, &child, origin, env)?;
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate(v, &format!("{key}[{i}]"), origin, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}` in one string; on an unset variable returns its name.
fn interpolate_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        match env(name).or_else(|| default.map(str::to_owned)) {
            Some(value) => out.push_str(&value),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the config file comes from: `--config`, then `GATEWAY_CONFIG`, then
/// `./config.yml` if it exists; `None` means built-in defaults.
pub fn config_path(flag: Option<PathBuf>, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    flag.or_else(|| env("GATEWAY_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let local = PathBuf::from("config.yml");
            local.exists().then_some(local)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn load_str(
        yaml: &str,
        env: &dyn Fn(&str) -> Option<String>,
        o: &Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(Some(&path), env, o)
    }

    const BASE: &str = "host: 10.0.0.1\nport: 4000\ndatabase_url: sqlite://file.db\n\
                        master_key: ${GATEWAY_MASTER_KEY}\nproviders: {}\npricing: {}\n";

    #[test]
    fn file_then_env_then_flags() {
        let env = env_of(&[("GATEWAY_MASTER_KEY", "0123456789abcdef")]);
        let config = load_str(BASE, &env, &Overrides::default()).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("10.0.0.1", 4000));
        assert_eq!(config.master_key.as_deref(), Some("0123456789abcdef"));

        let env = env_of(&[
            ("GATEWAY_MASTER_KEY", "0123456789abcdef"),
            ("GATEWAY_HOST", "0.0.0.0"),
            ("GATEWAY_PORT", "5000"),
            ("GATEWAY_DATABASE_URL", "postgres://db/x"),
        ]);
        let config = load_str(BASE, &env, &Overrides::default()).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("0.0.0.0", 5000));
        assert_eq!(config.database_url, "postgres://db/x");

        let flags = Overrides {
            host: Some("127.0.0.2".into()),
            port: Some(6000),
            database_url: Some("sqlite://flag.db".into()),
        };
        let config = load_str(BASE, &env, &flags).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.2", 6000));
        assert_eq!(config.database_url, "sqlite://flag.db");
    }

    #[test]
    fn env_master_key_overrides_the_file() {
        let env = env_of(&[("GATEWAY_MASTER_KEY", "from-the-environment")]);
        let config = load_str(
            "master_key: from-the-file-0000\n",
            &env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.master_key.as_deref(), Some("from-the-environment"));
    }

    #[test]
    fn unset_variable_is_named() {
        let err = load_str(BASE, &env_of(&[]), &Overrides::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("GATEWAY_MASTER_KEY"), "{message}");
        assert!(message.contains("master_key"), "{message}");
    }

    #[test]
    fn default_value_in_interpolation() {
        let config =
            load_str("port: ${PORT:-4321}\n", &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.port, 4321, "a number may come from a variable");
        let config = load_str(
            "port: ${PORT}\n",
            &env_of(&[("PORT", "80")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.port, 80);
        assert!(load_str(
            "port: ${PORT}\n",
            &env_of(&[("PORT", "x")]),
            &Overrides::default()
        )
        .is_err());
        let config = load_str("host: ${HOST:-::1}\n", &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.host, "::1");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_str("hots: x\n", &env_of(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("hots"), "{err}");
        let err = load_str(
            "providers:\n  openai:\n    api_bse: x\n",
            &env_of(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("api_bse") && message.contains("providers.openai"),
            "{message}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("port: 99999\n", "port"),
            ("database_url: mysql://x\n", "database_url"),
            ("master_key: short\n", "master_key"),
            ("providers:\n  groq: {api_key: x}\n", "providers.groq.kind"),
            ("pricing:\n  gpt-4o: {input_price_per_million: 1, output_price_per_million: 2}\n", "pricing.gpt-4o"),
            ("pricing:\n  'openai:x': {input_price_per_million: -1, output_price_per_million: 2}\n", "pricing.openai:x"),
        ];
        for (yaml, key) in cases {
            let err = load_str(yaml, &env_of(&[]), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{yaml:?}: {err}");
        }
        let err = Config::load(
            None,
            &env_of(&[("GATEWAY_PORT", "http")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("GATEWAY_PORT"), "{err}");
    }

    #[test]
    fn empty_or_null_sections_are_fine() {
        let config = load_str(
            "providers:\npricing:\n",
            &env_of(&[]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(config.providers.is_empty() && config.pricing.is_empty());
        let config = load_str("", &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.database_url, "sqlite://data/gateway.db");
    }

    #[test]
    fn provider_kind_from_name_or_field() {
        let yaml = "providers:\n  openai: {api_key: a}\n  groq: {kind: openai, api_base: 'https://api.groq.com/openai/v1'}\n";
        let config = load_str(yaml, &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.providers["groq"].kind, Some(ProviderKind::Openai));
        assert_eq!(
            ProviderKind::from_name("anthropic"),
            Some(ProviderKind::Anthropic)
        );
    }

    #[test]
    fn debug_output_hides_the_master_key() {
        let env = env_of(&[("GATEWAY_MASTER_KEY", "super-secret-master-key")]);
        let config = load_str(BASE, &env, &Overrides::default()).unwrap();
        assert!(!format!("{config:?}").contains("super-secret"));
    }

    #[test]
    fn email_settings_are_checked() {
        let yaml = "email: {mode: smtp, smtp_url: 'smtp://127.0.0.1:2525', from: 'Gateway <noreply@example.com>'}\n\
                    require_verified_email: true\n";
        let config = load_str(yaml, &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.email.mode, EmailMode::Smtp);
        assert!(config.require_verified_email);
        let config = load_str("", &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.email, EmailConfig::default(), "disabled by default");
        assert!(!config.require_verified_email);
        let cases = [
            (
                "email: {mode: smtp, from: a@b.co}\n",
                "`email`: mode smtp needs",
            ),
            (
                "email: {mode: log, from: 'not a mailbox'}\n",
                "`email.from`",
            ),
            (
                "email: {mode: smtp, smtp_url: 'http://x', from: a@b.co}\n",
                "`email.smtp_url`",
            ),
            ("email: {mode: pigeon}\n", "email.mode"),
            ("email: {mode: log, smtp: x}\n", "smtp"),
            ("require_verified_email: true\n", "`require_verified_email`"),
        ];
        for (yaml, key) in cases {
            let err = load_str(yaml, &env_of(&[]), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn config_path_precedence() {
        let env = env_of(&[("GATEWAY_CONFIG", "/etc/gw.yml")]);
        assert_eq!(
            config_path(Some("a.yml".into()), &env),
            Some(PathBuf::from("a.yml"))
        );
        assert_eq!(config_path(None, &env), Some(PathBuf::from("/etc/gw.yml")));
    }
}
