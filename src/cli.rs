//! Operator commands on the configured database: `users`, `keys` and
//! `pricing`, each with `--json` output for scripts.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::auth::keys::{issue, IssuedKey};
use crate::billing::money::{format_usd, parse_usd};
use crate::billing::pricing::Price;
use crate::clock::Clock;
use crate::db::keys::{self, KeySettings};
use crate::db::ledger::{self, CreditError, EntryKind};
use crate::db::users::{self, Profile};
use crate::db::{prices, Db};
use crate::operator_api::users::normal_email;
use crate::operator_api::{check_id, rfc3339, time_field};

/// `llm-gateway users …`
#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// The user's id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        alias: Option<String>,
        /// Give the user the admin role (the dashboard's admin pages).
        #[arg(long)]
        admin: bool,
    },
    /// List users, oldest first.
    List {
        /// Match id, email or alias.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Add (or, negative, remove) credit: a ledger adjustment.
    Credit {
        /// User id or email.
        user: String,
        /// USD, such as 12.50 or -3.
        #[arg(allow_hyphen_values = true)]
        amount: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Make a user an admin, or a plain user again.
    SetRole {
        /// User id or email.
        user: String,
        #[arg(value_parser = ["admin", "user"])]
        role: String,
    },
}

/// `llm-gateway keys …`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Issue a key; its plaintext is printed once.
    Create {
        /// User id or email.
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Comma-separated `provider:model`, bare names or `provider:*`.
        #[arg(long, value_delimiter = ',')]
        allowed_models: Option<Vec<String>>,
        #[arg(long)]
        rpm_limit: Option<i64>,
        #[arg(long)]
        tpm_limit: Option<i64>,
        /// USD over the key's life.
        #[arg(long)]
        max_budget: Option<String>,
        /// RFC 3339, such as 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List keys (never their plaintext).
    List {
        /// Only this user's (id or email).
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a key at once.
    Revoke { key_id: String },
}

/// `llm-gateway pricing …`
#[derive(Subcommand)]
pub enum PricingCommand {
    /// Set a model's provider cost per million tokens, in USD.
    Set {
        /// `provider:model`.
        model_key: String,
        input_per_million: String,
        output_per_million: String,
        /// Prompt tokens read from the cache (unset: the input price).
        #[arg(long, alias = "cached-input-per-million")]
        cache_read_per_million: Option<String>,
        /// Prompt tokens written to the cache for 5 minutes (unset: the input price).
        #[arg(long)]
        cache_write_per_million: Option<String>,
        /// Prompt tokens written to the cache for an hour (unset: the 5-minute price).
        #[arg(long)]
        cache_write_1h_per_million: Option<String>,
        /// This model's margin, overriding the global one.
        #[arg(long)]
        margin_percent: Option<String>,
    },
    /// Delete a model's price: it cannot be called until it is set again,
    /// and neither the config nor the built-in table brings it back.
    Delete {
        /// `provider:model`.
        model_key: String,
    },
    /// List every price.
    List,
}

/// `llm-gateway audit`: how to print the report.
#[derive(Args, Clone, Copy, Default)]
pub struct AuditOptions {
    /// Print the reconciliation as CSV (the checks go to standard error).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Print the whole report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Reconcile the last this many days (UTC, today included); 0: all time.
    #[arg(long, default_value_t = 0)]
    pub days: i64,
}

/// Runs the audit; its report, rendered, and whether every check held.
pub async fn audit(
    db: &Db,
    clock: &Clock,
    options: AuditOptions,
) -> Result<(String, bool), String> {
    let now = clock.now_ms();
    let since = crate::billing::audit::since(now, options.days);
    let report = crate::billing::audit::run(db, now, since)
        .await
        .map_err(db_error)?;
    let rendered = if options.json {
        serde_json::to_string_pretty(&report).unwrap_or_default()
    } else if options.csv {
        for finding in &report.findings {
            eprintln!("{} {}: {}", finding.check, finding.subject, finding.detail);
        }
        report.to_csv()
    } else {
        report.to_text()
    };
    Ok((rendered, report.passed()))
}

/// Output options shared by every operator command.
#[derive(Args, Clone, Copy, Default)]
pub struct Output {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What a command printed: JSON for scripts, and text for people.
pub struct Printed {
    pub json: Value,
    pub text: String,
}

impl Printed {
    /// The output in the chosen format.
    pub fn render(&self, output: Output) -> String {
        if output.json {
            serde_json::to_string_pretty(&self.json).unwrap_or_default()
        } else {
            self.text.clone()
        }
    }
}

type CliResult = Result<Printed, String>;

fn db_error(err: sqlx::Error) -> String {
    format!("database error: {err}")
}

/// Finds a live user by id, then by email.
async fn find_user(db: &Db, user: &str) -> Result<users::AdminUserRow, String> {
    if let Some(row) = users::find_admin(db, user).await.map_err(db_error)? {
        return Ok(row);
    }
    let by_email = users::find_by_email(db, &user.trim().to_lowercase())
        .await
        .map_err(db_error)?;
    match by_email {
        Some(row) => users::find_admin(db, &row.id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| format!("no user `{user}`")),
        None => Err(format!("no user `{user}`")),
    }
}

fn user_json(row: &users::AdminUserRow) -> Value {
    json!({
        "user_id": row.id,
        "email": row.email,
        "alias": row.alias,
        "role": row.role,
        "balance": format_usd(row.balance),
        "balance_nanos": row.balance,
        "blocked": row.blocked_at.is_some(),
        "created_at": rfc3339(row.created_at),
    })
}

/// Runs a `users` command.
pub async fn users(db: &Db, clock: Clock, command: UsersCommand) -> CliResult {
    match command {
        UsersCommand::Create {
            id,
            email,
            alias,
            admin,
        } => {
            let id = id.unwrap_or_else(|| format!("usr_{}", uuid::Uuid::new_v4().simple()));
            check_id("id", &id).map_err(|e| e.to_string())?;
            let email = email
                .as_deref()
                .map(normal_email)
                .transpose()
                .map_err(|e| e.to_string())?;
            let profile = Profile {
                email,
                alias,
                ..Profile::default()
            };
            let row = users::create_admin(db, &id, &profile, clock.now_ms())
                .await
                .map_err(db_error)?
                .ok_or_else(|| format!("a user with id `{id}` or this email already exists"))?;
            if admin {
                users::set_role(db, &row.id, "admin", clock.now_ms())
                    .await
                    .map_err(db_error)?;
            }
            let row = find_user(db, &row.id).await?;
            Ok(Printed {
                text: format!("created user {} ({})", row.id, row.role),
                json: user_json(&row),
            })
        }
        UsersCommand::List { search, limit } => {
            let rows = users::list_admin(db, search.as_deref(), 0, limit.clamp(1, 10_000))
                .await
                .map_err(db_error)?;
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}\t{}\t{}\t${}{}",
                        r.id,
                        r.email.as_deref().unwrap_or("-"),
                        r.role,
                        format_usd(r.balance),
                        if r.blocked_at.is_some() {
                            "\tblocked"
                        } else {
                            ""
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Printed {
                json: Value::Array(rows.iter().map(user_json).collect()),
                text,
            })
        }
        UsersCommand::Credit { user, amount, note } => {
            let nanos = parse_usd(&amount)
                .filter(|n| *n != 0)
                .ok_or_else(|| format!("`{amount}` is not a non-zero USD amount such as 12.50"))?;
            let row = find_user(db, &user).await?;
            let note = note.or_else(|| Some("Credit from the command line".into()));
            let balance = ledger::credit(
                db,
                &row.id,
                EntryKind::Adjustment,
                nanos,
                note.as_deref(),
                clock.now_ms(),
            )
            .await
            .map_err(|err| match err {
                CreditError::WouldGoNegative => {
                    "that would take the balance below zero".to_string()
                }
                other => other.to_string(),
            })?;
            Ok(Printed {
                text: format!("{}: balance ${}", row.id, format_usd(balance)),
                json: json!({"user_id": row.id, "amount": format_usd(nanos), "balance": format_usd(balance), "balance_nanos": balance}),
            })
        }
        UsersCommand::SetRole { user, role } => {
            let row = find_user(db, &user).await?;
            users::set_role(db, &row.id, &role, clock.now_ms())
                .await
                .map_err(db_error)?;
            let row = find_user(db, &row.id).await?;
            Ok(Printed {
                text: format!("{} is now {}", row.id, row.role),
                json: user_json(&row),
            })
        }
    }
}

fn key_json(row: &keys::AdminKeyRow) -> Value {
    json!({
        "id": row.id,
        "key_name": row.name,
        "key_prefix": row.key_prefix,
        "user_id": row.user_id,
        "is_active": row.revoked_at.is_none(),
        "created_at": rfc3339(row.created_at),
        "allowed_models": keys::parse_models(row.allowed_models.as_deref()),
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
        "max_budget": row.max_budget.map(format_usd),
    })
}

/// Runs a `keys` command.
pub async fn keys(db: &Db, clock: Clock, command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::Create {
            user,
            name,
            allowed_models,
            rpm_limit,
            tpm_limit,
            max_budget,
            expires_at,
        } => {
            let row = find_user(db, &user).await?;
            let max_budget = max_budget
                .map(|m| parse_usd(&m).ok_or(format!("`{m}` is not a USD amount")))
                .transpose()?;
            let expires_at = expires_at
                .map(|t| time_field("expires_at", &Value::String(t)).map_err(|e| e.to_string()))
                .transpose()?;
            let settings = KeySettings {
                name,
                expires_at,
                allowed_models: allowed_models
                    .map(|m| serde_json::to_string(&m).unwrap_or_default()),
                rpm_limit,
                tpm_limit,
                max_budget,
                ..KeySettings::default()
            };
            let IssuedKey { row: key, secret } = issue(db, clock.now_ms(), &row.id, settings)
                .await
                .map_err(|e| e.to_string())?;
            let mut json = key_json(&key);
            json["key"] = Value::String(secret.clone());
            Ok(Printed {
                text: format!("{secret}\n(key {} for {}; shown once)", key.id, row.id),
                json,
            })
        }
        KeysCommand::List { user } => {
            let user_id = match user {
                Some(user) => Some(find_user(db, &user).await?.id),
                None => None,
            };
            let rows = keys::list_admin(db, user_id.as_deref(), 0, 10_000)
                .await
                .map_err(db_error)?;
            let text = rows
                .iter()
                .map(|k| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        k.id,
                        k.key_prefix,
                        k.user_id,
                        k.name,
                        if k.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Printed {
                json: Value::Array(rows.iter().map(key_json).collect()),
                text,
            })
        }
        KeysCommand::Revoke { key_id } => {
            let row = keys::find_admin(db, &key_id)
                .await
                .map_err(db_error)?
                .ok_or_else(|| format!("no key `{key_id}`"))?;
            keys::revoke_for_user(db, &row.user_id, &key_id, clock.now_ms())
                .await
                .map_err(db_error)?;
            let row = keys::find_admin(db, &key_id)
                .await
                .map_err(db_error)?
                .ok_or("key vanished")?;
            Ok(Printed {
                text: format!("revoked {} ({})", row.id, row.key_prefix),
                json: key_json(&row),
            })
        }
    }
}

/// Runs a `pricing` command.
pub async fn pricing(db: &Db, clock: Clock, command: PricingCommand) -> CliResult {
    match command {
        PricingCommand::Set {
            model_key,
            input_per_million,
            output_per_million,
            cache_read_per_million,
            cache_write_per_million,
            cache_write_1h_per_million,
            margin_percent,
        } => {
            if !model_key
                .split_once(':')
                .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty())
            {
                return Err("the model key must be `provider:model`".into());
            }
            let amount = |text: &str| {
                parse_usd(text)
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("`{text}` is not a price such as 0.15"))
            };
            let margin_bp = margin_percent
                .map(|m| {
                    parse_usd(&m)
                        .filter(|n| *n >= 0 && n % 10_000_000 == 0)
                        .map(|n| n / 10_000_000)
                        .ok_or_else(|| format!("`{m}` is not a margin such as 20 or 12.5"))
                })
                .transpose()?;
            let price = Price {
                input: amount(&input_per_million)?,
                output: amount(&output_per_million)?,
                cached_input: cache_read_per_million.as_deref().map(amount).transpose()?,
                cache_write: cache_write_per_million.as_deref().map(amount).transpose()?,
                cache_write_1h: cache_write_1h_per_million
                    .as_deref()
                    .map(amount)
                    .transpose()?,
                margin_bp,
            };
            prices::set(db, &price.row(&model_key), clock.now_ms())
                .await
                .map_err(db_error)?;
            Ok(Printed {
                text: format!(
                    "{model_key}: ${} / ${} per 1M tokens (running gateways apply it within a minute)",
                    format_usd(price.input),
                    format_usd(price.output)
                ),
                json: price_json(&model_key, &price),
            })
        }
        PricingCommand::Delete { model_key } => {
            if !prices::remove(db, &model_key, clock.now_ms())
                .await
                .map_err(db_error)?
            {
                return Err(format!("`{model_key}` has no price"));
            }
            Ok(Printed {
                text: format!(
                    "{model_key}: deleted (running gateways stop serving it within a minute)"
                ),
                json: json!({"model_key": model_key, "deleted": true}),
            })
        }
        PricingCommand::List => {
            let rows = prices::all(db).await.map_err(db_error)?;
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}\t${}\t${}{}",
                        r.model_key,
                        format_usd(r.input_per_million),
                        format_usd(r.output_per_million),
                        r.margin_bp
                            .map(|bp| format!("\tmargin {}%", bp as f64 / 100.0))
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Printed {
                json: Value::Array(
                    rows.iter()
                        .map(|r| price_json(&r.model_key, &r.price()))
                        .collect(),
                ),
                text,
            })
        }
    }
}

fn price_json(model_key: &str, price: &Price) -> Value {
    json!({
        "model_key": model_key,
        "input_price_per_million": format_usd(price.input),
        "output_price_per_million": format_usd(price.output),
        "cache_read_price_per_million": price.cached_input.map(format_usd),
        "cache_write_price_per_million": price.cache_write.map(format_usd),
        "cache_write_1h_price_per_million": price.cache_write_1h.map(format_usd),
        "margin_percent": price.margin_bp.map(|bp| bp as f64 / 100.0),
    })
}
