//! Prices per model (USD per million tokens, from `config/pricing.toml`) and the cost of a
//! call in integer nano-USD. A model without a price costs 0, with one warning, never an error.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;

use super::Usage;

/// The shipped table, inside the binary.
pub const DEFAULT_PRICING: &str = include_str!("../../config/pricing.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    models: HashMap<String, Price>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Price {
    input: f64,
    #[serde(default)]
    cached_input: Option<f64>,
    output: f64,
}

/// Pico-USD per token: USD per million tokens × 10^6, exact for prices with up to six decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PerToken {
    input: u64,
    cached_input: u64,
    output: u64,
}

pub struct Pricing {
    models: HashMap<String, PerToken>,
    warned: Mutex<HashSet<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("pricing.toml: {0}")]
pub struct PricingError(String);

impl Pricing {
    /// `dir/pricing.toml` when present, else the shipped table.
    pub fn load(dir: &Path) -> Result<Self, PricingError> {
        let path = dir.join("pricing.toml");
        let text = if path.is_file() {
            std::fs::read_to_string(&path).map_err(|e| PricingError(e.to_string()))?
        } else {
            DEFAULT_PRICING.to_owned()
        };
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, PricingError> {
        use figment::providers::Format;
        let file: File = figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .map_err(|e| PricingError(e.to_string()))?;
        let mut models = HashMap::new();
        for (model, price) in file.models {
            let pico = |usd_per_million: f64| -> Result<u64, PricingError> {
                if !(0.0..=1_000_000.0).contains(&usd_per_million) {
                    return Err(PricingError(format!("{model}: price out of range")));
                }
                Ok((usd_per_million * 1_000_000.0).round() as u64)
            };
            models.insert(
                model.clone(),
                PerToken {
                    input: pico(price.input)?,
                    cached_input: pico(price.cached_input.unwrap_or(price.input))?,
                    output: pico(price.output)?,
                },
            );
        }
        Ok(Self {
            models,
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// The cost of a call to `model` (a full `provider/model` id) in nano-USD.
    pub fn cost_nano_usd(&self, model: &str, usage: &Usage) -> i64 {
        let Some(price) = self.models.get(model) else {
            if let Ok(mut warned) = self.warned.lock()
                && warned.insert(model.to_owned())
            {
                tracing::warn!(
                    model,
                    "no price for this model in pricing.toml; its calls cost 0"
                );
            }
            return 0;
        };
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let pico = u128::from(usage.input_tokens - cached) * u128::from(price.input)
            + u128::from(cached) * u128::from(price.cached_input)
            + u128::from(usage.output_tokens) * u128::from(price.output);
        // pico → nano, rounded half up.
        i64::try_from((pico + 500) / 1000).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_in_nano_usd() {
        let p = Pricing::parse(DEFAULT_PRICING).unwrap();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cached_input_tokens: 0,
            estimated: false,
        };
        // $0.15 + $0.60 per million each.
        assert_eq!(p.cost_nano_usd("openai/gpt-4o-mini", &usage), 750_000_000);
        let cached = Usage {
            input_tokens: 1000,
            output_tokens: 0,
            cached_input_tokens: 400,
            estimated: false,
        };
        // 600 × $0.15/M + 400 × $0.075/M = $0.00012 = 120 000 nano-USD.
        assert_eq!(p.cost_nano_usd("openai/gpt-4o-mini", &cached), 120_000);
        assert_eq!(p.cost_nano_usd("nobody/unknown", &usage), 0);
        assert!(Pricing::parse("[models.\"x/y\"]\ninput = -1.0\noutput = 1.0").is_err());
    }
}
