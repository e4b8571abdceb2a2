//! Model names to providers: `provider:model`, `provider/model`, or a bare
//! catalog name that exactly one configured provider offers.

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::config::Config;
use crate::error::AppError;
use crate::providers::{ProviderEntry, Providers};

/// Where one request goes.
#[derive(Clone)]
pub struct Target {
    pub provider: ProviderEntry,
    /// The model name the provider knows.
    pub model: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

impl Target {
    /// The catalog key, `provider:model`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.provider.name, self.model)
    }
}

/// Resolves model names, and knows each model's fallbacks.
#[derive(Default)]
pub struct ModelRouter {
    providers: Providers,
    /// Bare model name → providers offering it (from the pricing catalog),
    /// refreshed when prices change.
    catalog: RwLock<BTreeMap<String, Vec<String>>>,
    fallbacks: BTreeMap<String, Vec<String>>,
}

impl ModelRouter {
    /// Builds the router from the configured providers and the priced models.
    pub fn new(
        providers: Providers,
        config: &Config,
        priced: impl IntoIterator<Item = String>,
    ) -> Self {
        let router = Self {
            providers,
            catalog: RwLock::default(),
            fallbacks: config.fallbacks.clone(),
        };
        router.refresh_catalog(priced);
        router
    }

    /// Replaces the catalog with the priced models of configured providers.
    pub fn refresh_catalog(&self, priced: impl IntoIterator<Item = String>) {
        let mut catalog: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in priced {
            if let Some((provider, model)) = key.split_once(':') {
                if self.providers.contains(provider) {
                    catalog
                        .entry(model.to_string())
                        .or_default()
                        .push(provider.to_string());
                }
            }
        }
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog;
    }

    /// The target for a requested model name.
    pub fn resolve(&self, requested: &str) -> Result<Target, AppError> {
        let requested = requested.trim();
        if requested.is_empty() {
            return Err(AppError::invalid("model", "`model` must not be empty."));
        }
        for separator in [':', '/'] {
            if let Some((provider, model)) = requested.split_once(separator) {
                if let Some(entry) = self.providers.get(provider) {
                    if model.is_empty() {
                        return Err(AppError::invalid(
                            "model",
                            "The model name after the provider is empty.",
                        ));
                    }
                    return Ok(self.target(entry, model));
                }
            }
        }
        let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        match catalog.get(requested).map(Vec::as_slice) {
            Some([provider]) => {
                let entry = self.providers.get(provider).expect("catalog lists configured providers");
                Ok(self.target(entry, requested))
            }
            Some(several) => Err(AppError::invalid(
                "model",
                format!(
                    "`{requested}` is offered by several providers ({}); name one as `provider:model`.",
                    several.join(", ")
                ),
            )),
            None => match requested.split_once(':') {
                Some((provider, _)) => Err(AppError::ModelNotFound(format!(
                    "The provider `{provider}` is not configured on this gateway."
                ))),
                None => Err(AppError::ModelNotFound(format!(
                    "The model `{requested}` does not exist. Use `provider:model`, or a model listed by GET /v1/models."
                ))),
            },
        }
    }

    fn target(&self, entry: &ProviderEntry, model: &str) -> Target {
        Target {
            provider: entry.clone(),
            model: model.to_string(),
        }
    }

    /// The primary target, then its configured fallbacks that resolve.
    pub fn with_fallbacks(&self, primary: Target) -> Vec<Target> {
        // Without any fallbacks configured, no key is built to look them up.
        let fallbacks = if self.fallbacks.is_empty() {
            None
        } else {
            self.fallbacks.get(&primary.key())
        };
        let mut targets = Vec::with_capacity(1 + fallbacks.map_or(0, Vec::len));
        targets.push(primary);
        if let Some(fallbacks) = fallbacks {
            targets.extend(fallbacks.iter().filter_map(|name| self.resolve(name).ok()));
        }
        targets
    }

    /// Every catalog model whose provider is configured, as `provider:model`.
    pub fn catalog_keys(&self) -> Vec<String> {
        let catalog = self.catalog.read().unwrap_or_else(|e| e.into_inner());
        catalog
            .iter()
            .flat_map(|(model, providers)| providers.iter().map(move |p| format!("{p}:{model}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> ModelRouter {
        let yaml = r#"
providers:
  openai: {api_key: a}
  anthropic: {api_key: b}
  groq: {kind: openai, api_key: c}
  openrouter: {kind: openai, api_key: d}
pricing:
  "openai:gpt-4o-mini": {input_price_per_million: 0.15, output_price_per_million: 0.6}
  "openai:shared": {input_price_per_million: 1, output_price_per_million: 1}
  "groq:shared": {input_price_per_million: 1, output_price_per_million: 1}
  "missing:orphan": {input_price_per_million: 1, output_price_per_million: 1}
fallbacks:
  "openai:gpt-4o-mini": ["anthropic:claude-x", "nowhere:y"]
"#;
        let config = Config::from_yaml(yaml, "test", &|_| None).unwrap();
        ModelRouter::new(
            Providers::from_config(&config, &Default::default()).unwrap(),
            &config,
            config.pricing.keys().cloned(),
        )
    }

    #[test]
    fn resolves_every_naming_form() {
        let router = router();
        let t = router.resolve("anthropic:claude-3-5-sonnet").unwrap();
        assert_eq!(
            (t.provider.name.as_str(), t.model.as_str()),
            ("anthropic", "claude-3-5-sonnet")
        );
        let t = router.resolve("groq/llama-3.1-8b").unwrap();
        assert_eq!(
            (t.provider.name.as_str(), t.model.as_str()),
            ("groq", "llama-3.1-8b")
        );
        let t = router.resolve("openrouter/meta-llama/llama-3-70b").unwrap();
        assert_eq!(t.model, "meta-llama/llama-3-70b");
        let t = router.resolve("gpt-4o-mini").unwrap();
        assert_eq!(t.key(), "openai:gpt-4o-mini");
    }

    #[test]
    fn unknown_models_and_providers_are_404() {
        let router = router();
        let err = router.resolve("nowhere:model").unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(err.to_string().contains("nowhere"));
        let err = router.resolve("no-such-model").unwrap_err();
        assert_eq!((err.status(), err.code()), (404, "model_not_found"));
        assert_eq!(router.resolve("orphan").unwrap_err().status(), 404);
        assert_eq!(router.resolve("shared").unwrap_err().status(), 400);
        assert_eq!(router.resolve(" ").unwrap_err().status(), 400);
    }

    #[test]
    fn fallbacks_follow_the_primary() {
        let router = router();
        let targets = router.with_fallbacks(router.resolve("gpt-4o-mini").unwrap());
        let keys: Vec<String> = targets.iter().map(Target::key).collect();
        assert_eq!(keys, ["openai:gpt-4o-mini", "anthropic:claude-x"]);
    }
}
