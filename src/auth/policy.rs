//! What a key may do (its policy), read once from its row and cached with
//! it (see `key_cache`).

use std::sync::Arc;

use crate::billing::budget::{BudgetLimit, Period};
use crate::db::keys::{parse_models, KeyAuthRow, KeyStanding};

/// What authenticating a request needs about a key and its owner, with the
/// key's limits parsed once (the result is cached; see `auth::key_cache`).
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub standing: KeyStanding,
    pub policy: Arc<KeyPolicy>,
}

/// What a key may do: which models, how fast, and how much it may spend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    /// `None`: every model. Entries are `provider:model`, a bare model name,
    /// or `provider:*`.
    pub allowed_models: Option<Vec<String>>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    /// The key's own budget, then its owner's.
    pub budgets: Vec<BudgetLimit>,
}

impl KeyPolicy {
    /// Whether the key may call `provider:model`.
    pub fn allows(&self, provider: &str, model: &str) -> bool {
        let Some(allowed) = &self.allowed_models else {
            return true;
        };
        allowed.iter().any(|entry| match entry.split_once(':') {
            Some((p, "*")) => p == provider,
            Some((p, m)) => p == provider && m == model,
            None => entry == model,
        })
    }
}

impl From<KeyAuthRow> for KeyAuth {
    fn from(row: KeyAuthRow) -> Self {
        let mut budgets = Vec::new();
        if let Some(max) = row.max_budget {
            budgets.push(BudgetLimit {
                scope: format!("key:{}", row.standing.id),
                max,
                period: Period::from_parts(row.budget_duration_sec, None),
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
        let policy = KeyPolicy {
            allowed_models: parse_models(row.allowed_models.as_deref()),
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
}
