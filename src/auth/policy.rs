//! What a key may do (its policy), read once from its row and cached with
//! it (see `key_cache`).

use std::sync::Arc;

use crate::billing::budget::{BudgetLimit, Period};
use crate::db::keys::{cap_scope, parse_models, KeyAuthRow, KeyStanding};

/// What authenticating a request needs about a key and its owner, with the
/// key's limits parsed once (the result is cached; see `auth::key_cache`).
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub standing: KeyStanding,
    pub policy: Arc<KeyPolicy>,
}

/// What a key may do: which models, how fast, and how much it may spend.
/// The operator's limits and those the key's owner set both apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    /// The operator's allow-list; `None`: every model. Entries are
    /// `provider:model`, a bare model name, or `provider:*`.
    pub allowed_models: Option<Vec<String>>,
    /// The owner's allow-list, in the same form: a model must be in both.
    pub own_allowed_models: Option<Vec<String>>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    /// The key's own budget, its owner's monthly cap on it, then its
    /// owner's budget.
    pub budgets: Vec<BudgetLimit>,
}

impl KeyPolicy {
    /// Whether the key may call `provider:model`: allowed by the operator's
    /// list and by the owner's.
    pub fn allows(&self, provider: &str, model: &str) -> bool {
        [&self.allowed_models, &self.own_allowed_models]
            .into_iter()
            .all(|list| list_allows(list.as_deref(), provider, model))
    }
}

/// Whether an allow-list (`None`: no list) lets `provider:model` through.
pub fn list_allows(list: Option<&[String]>, provider: &str, model: &str) -> bool {
    let Some(allowed) = list else {
        return true;
    };
    allowed.iter().any(|entry| match entry.split_once(':') {
        Some((p, "*")) => p == provider,
        Some((p, m)) => p == provider && m == model,
        None => entry == model,
    })
}

/// The earlier of two optional times; `None` only when both are.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl From<KeyAuthRow> for KeyAuth {
    fn from(mut row: KeyAuthRow) -> Self {
        let mut budgets = Vec::new();
        if let Some(max) = row.max_budget {
            budgets.push(BudgetLimit {
                scope: format!("key:{}", row.standing.id),
                max,
                period: Period::from_parts(row.budget_duration_sec, None),
            });
        }
        if let Some(max) = row.own.monthly_cap {
            budgets.push(BudgetLimit {
                scope: cap_scope(&row.standing.id),
                max,
                period: Period::Monthly,
            });
        }
        if let Some(max) = row.user_max_budget {
            budgets.push(BudgetLimit {
                scope: format!("user:{}", row.standing.user_id),
                max,
                period: Period::from_parts(
                    row.user_budget_duration_sec,
                    row.user_budget_period.as_deref(),
                ),
            });
        }
        row.standing.expires_at = earliest(row.standing.expires_at, row.own.expires_at);
        let policy = KeyPolicy {
            allowed_models: parse_models(row.allowed_models.as_deref()),
            own_allowed_models: parse_models(row.own.allowed_models.as_deref()),
            rpm_limit: row.rpm_limit,
            tpm_limit: row.tpm_limit,
            budgets,
        };
        Self {
            standing: row.standing,
            policy: Arc::new(policy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::keys::OwnLimits;

    #[test]
    fn allowed_models_match_keys_bare_names_and_wildcards() {
        let policy = KeyPolicy {
            allowed_models: Some(vec![
                "openai:gpt-4o-mini".into(),
                "claude-3-5-haiku".into(),
                "gemini:*".into(),
            ]),
            ..KeyPolicy::default()
        };
        assert!(policy.allows("openai", "gpt-4o-mini"));
        assert!(!policy.allows("openai", "gpt-4o"));
        assert!(!policy.allows("groq", "gpt-4o-mini"));
        assert!(policy.allows("anthropic", "claude-3-5-haiku"));
        assert!(policy.allows("gemini", "gemini-2.0-flash"));
        assert!(KeyPolicy::default().allows("any", "model"));
        assert_eq!(parse_models(Some("not json")), None);
    }

    fn row(own: OwnLimits, expires_at: Option<i64>) -> KeyAuthRow {
        KeyAuthRow {
            standing: KeyStanding {
                id: "key_1".into(),
                user_id: "usr_1".into(),
                key_prefix: "llm_sk_abcdef".into(),
                revoked_at: None,
                expires_at,
                user_blocked_at: None,
                user_deleted_at: None,
            },
            allowed_models: Some(r#"["openai:*"]"#.into()),
            rpm_limit: None,
            tpm_limit: None,
            max_budget: Some(5),
            budget_duration_sec: None,
            user_max_budget: Some(7),
            user_budget_duration_sec: None,
            user_budget_period: Some("daily".into()),
            own,
        }
    }

    #[test]
    fn a_model_must_be_allowed_by_the_operator_and_the_owner() {
        let own = OwnLimits {
            allowed_models: Some(r#"["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku"]"#.into()),
            ..OwnLimits::default()
        };
        let key = KeyAuth::from(row(own, None));
        assert!(key.policy.allows("openai", "gpt-4o-mini"));
        assert!(!key.policy.allows("openai", "gpt-4o"), "the owner's list");
        assert!(
            !key.policy.allows("anthropic", "claude-3-5-haiku"),
            "the operator's list, though the owner's allows more"
        );
        let open = KeyAuth::from(row(OwnLimits::default(), None));
        assert!(open.policy.allows("openai", "gpt-4o"), "no owner's list");
    }

    #[test]
    fn the_earlier_expiry_applies() {
        let own = |at| OwnLimits {
            expires_at: at,
            ..OwnLimits::default()
        };
        let expiry = |own, operator| KeyAuth::from(row(own, operator)).standing.expires_at;
        assert_eq!(expiry(own(Some(10)), Some(20)), Some(10));
        assert_eq!(expiry(own(Some(30)), Some(20)), Some(20));
        assert_eq!(expiry(own(Some(30)), None), Some(30));
        assert_eq!(expiry(own(None), Some(20)), Some(20));
        assert_eq!(expiry(own(None), None), None);
    }

    #[test]
    fn a_monthly_cap_is_one_more_budget() {
        let own = OwnLimits {
            monthly_cap: Some(3),
            ..OwnLimits::default()
        };
        let budgets = KeyAuth::from(row(own, None)).policy.budgets.clone();
        let scopes: Vec<_> = budgets.iter().map(|b| b.scope.as_str()).collect();
        assert_eq!(scopes, ["key:key_1", "keycap:key_1", "user:usr_1"]);
        assert_eq!(budgets[1].max, 3);
        assert_eq!(budgets[1].period, Period::Monthly);
        let uncapped = KeyAuth::from(row(OwnLimits::default(), None));
        assert_eq!(uncapped.policy.budgets.len(), 2);
    }
}
