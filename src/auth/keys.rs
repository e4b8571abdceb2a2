//! Issuing API keys: the one door the dashboard, the operator API and the
//! CLI all go through, with one set of rules.

use super::api_key;
use super::policy::list_allows;
use crate::db::keys::{self, AdminKeyRow, KeySettings};
use crate::db::Db;
use crate::error::AppError;

/// The longest key name accepted.
pub const MAX_KEY_NAME_LEN: usize = 64;
/// The longest model name a key's allow-list takes.
const MAX_MODEL_NAME_LEN: usize = 200;

/// A key just issued: its row, and its secret, shown once and never stored.
pub struct IssuedKey {
    pub row: AdminKeyRow,
    pub secret: String,
}

/// Checks and trims a key name.
pub fn validate_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "Give the key a name."));
    }
    if name.chars().count() > MAX_KEY_NAME_LEN {
        return Err(AppError::invalid(
            "name",
            format!("Use a name of at most {MAX_KEY_NAME_LEN} characters."),
        ));
    }
    Ok(name.to_string())
}

/// Checks a key's limits: positive rate limits and budget period, a budget
/// of zero or more, model names in the allow-list.
pub fn check_settings(settings: &KeySettings) -> Result<(), AppError> {
    for (field, value) in [
        ("rpm_limit", settings.rpm_limit),
        ("tpm_limit", settings.tpm_limit),
        ("budget_duration", settings.budget_duration_sec),
    ] {
        if value.is_some_and(|n| n <= 0) {
            return Err(AppError::invalid(
                field,
                format!("`{field}` must be positive."),
            ));
        }
    }
    if settings.max_budget.is_some_and(|n| n < 0) {
        return Err(AppError::invalid(
            "max_budget",
            "`max_budget` must be zero or more.",
        ));
    }
    let models = keys::parse_models(settings.allowed_models.as_deref()).unwrap_or_default();
    if models
        .iter()
        .any(|m| m.trim().is_empty() || m.len() > MAX_MODEL_NAME_LEN)
    {
        return Err(AppError::invalid(
            "allowed_models",
            "`allowed_models` entries must be model names such as `openai:gpt-4o-mini`.",
        ));
    }
    Ok(())
}

/// Checks that a key's expiry, if it has one, is after `now_ms`.
pub fn check_expiry(expires_at: Option<i64>, now_ms: i64) -> Result<(), AppError> {
    if expires_at.is_some_and(|at| at <= now_ms) {
        return Err(AppError::invalid(
            "expires_at",
            "`expires_at` must be in the future.",
        ));
    }
    Ok(())
}

/// Checks a monthly cap a key's owner sets: zero or more nano-USD.
pub fn check_cap(cap: Option<i64>) -> Result<(), AppError> {
    if cap.is_some_and(|n| n < 0) {
        return Err(AppError::invalid(
            "monthly_cap",
            "The monthly cap must be zero or more.",
        ));
    }
    Ok(())
}

/// Checks an allow-list a key's owner sets: at least one entry, each a
/// `provider:model`, a model name or `provider:*` that matches one of the
/// models the gateway serves (`served`, as `provider:model`), so a typo
/// cannot silently refuse every call.
pub fn check_own_models(models: &[String], served: &[String]) -> Result<(), AppError> {
    if models.is_empty() {
        return Err(AppError::invalid(
            "allowed_models",
            "List at least one model, or none at all to allow every model.",
        ));
    }
    for entry in models {
        let known = entry.len() <= MAX_MODEL_NAME_LEN
            && served.iter().any(|id| {
                id.split_once(':').is_some_and(|(provider, model)| {
                    list_allows(Some(std::slice::from_ref(entry)), provider, model)
                })
            });
        if !known {
            return Err(AppError::invalid(
                "allowed_models",
                format!(
                    "`{entry}` is not a model this gateway serves: use `provider:model` names from the models page, or `provider:*`."
                ),
            ));
        }
    }
    Ok(())
}

/// Issues a key to `user_id` at `now_ms`: checks the name and settings,
/// generates the secret, and stores only its hash and display prefix.
pub async fn issue(
    db: &Db,
    now_ms: i64,
    user_id: &str,
    mut settings: KeySettings,
) -> Result<IssuedKey, AppError> {
    settings.name = validate_name(&settings.name)?;
    check_settings(&settings)?;
    check_expiry(settings.expires_at, now_ms)?;
    settings.revoked_at = None;
    let generated = api_key::generate();
    let row = keys::insert(
        db,
        user_id,
        &generated.hash,
        &generated.display_prefix,
        now_ms,
        &settings,
    )
    .await?;
    tracing::info!(%user_id, key = %row.key_prefix, "API key issued");
    Ok(IssuedKey {
        row,
        secret: generated.secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  ci  ").unwrap(), "ci");
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"k".repeat(65)).is_err());
        assert!(validate_name(&"k".repeat(64)).is_ok());
    }

    #[test]
    fn limits_must_make_sense() {
        let ok = KeySettings {
            name: "ci".into(),
            rpm_limit: Some(1),
            max_budget: Some(0),
            allowed_models: Some(r#"["openai:gpt-4o-mini"]"#.into()),
            ..KeySettings::default()
        };
        assert!(check_settings(&ok).is_ok());
        for (bad, field) in [
            (
                KeySettings {
                    rpm_limit: Some(0),
                    ..ok.clone()
                },
                "rpm_limit",
            ),
            (
                KeySettings {
                    tpm_limit: Some(-1),
                    ..ok.clone()
                },
                "tpm_limit",
            ),
            (
                KeySettings {
                    budget_duration_sec: Some(0),
                    ..ok.clone()
                },
                "budget_duration",
            ),
            (
                KeySettings {
                    max_budget: Some(-1),
                    ..ok.clone()
                },
                "max_budget",
            ),
            (
                KeySettings {
                    allowed_models: Some(r#"[" "]"#.into()),
                    ..ok.clone()
                },
                "allowed_models",
            ),
        ] {
            let err = check_settings(&bad).unwrap_err();
            assert_eq!(err.param(), Some(field), "{err}");
        }
        assert!(check_expiry(Some(1_000), 1_000).is_err());
        assert!(check_expiry(Some(1_001), 1_000).is_ok());
        assert!(check_expiry(None, 1_000).is_ok());
    }

    #[test]
    fn owners_limits_must_make_sense() {
        assert!(check_cap(Some(0)).is_ok());
        assert!(check_cap(None).is_ok());
        assert_eq!(
            check_cap(Some(-1)).unwrap_err().param(),
            Some("monthly_cap")
        );
        let served = ["openai:gpt-4o-mini".to_string(), "groq:llama-3.1-8b".into()];
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        for good in [
            list(&["openai:gpt-4o-mini"]),
            list(&["gpt-4o-mini", "groq:*"]),
        ] {
            assert!(check_own_models(&good, &served).is_ok(), "{good:?}");
        }
        for bad in [
            list(&[]),
            list(&["openai:gpt-4o"]),
            list(&["anthropic:*"]),
            list(&["openai:gpt-4o-mini", ""]),
        ] {
            let err = check_own_models(&bad, &served).unwrap_err();
            assert_eq!(err.param(), Some("allowed_models"), "{bad:?}");
        }
    }
}
