//! Model prices in US dollars per million tokens: built-in list prices of
//! current OpenAI models, overridden or extended by the configuration's
//! `[prices]` table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    #[serde(default)]
    pub output: f64,
}

impl Price {
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input + output_tokens as f64 * self.output) / 1e6
    }
}

/// OpenAI's list prices (standard tier, per million tokens) as of 2026.
/// Check them against the provider's page and override in `[prices]`.
pub const BUILT_IN: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-5", 1.25, 10.00),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5-nano", 0.05, 0.40),
    ("o4-mini", 1.10, 4.40),
    ("o3", 2.00, 8.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.0),
];

/// The price of `model` from the built-in table overridden by the
/// configured one; a dated snapshot (`gpt-4o-2024-08-06`) takes the price
/// of the longest listed name it starts with.
pub fn lookup(configured: &BTreeMap<String, Price>, model: &str) -> Option<Price> {
    let mut all: BTreeMap<&str, Price> = BUILT_IN
        .iter()
        .map(|&(k, input, output)| (k, Price { input, output }))
        .collect();
    all.extend(configured.iter().map(|(k, v)| (k.as_str(), *v)));
    all.into_iter()
        .filter(|(name, _)| {
            model == *name
                || model
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|(name, _)| name.len())
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_take_the_longest_listed_prefix() {
        let none = BTreeMap::new();
        assert_eq!(lookup(&none, "gpt-4o").unwrap().input, 2.50);
        assert_eq!(lookup(&none, "gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(lookup(&none, "gpt-4o-2024-08-06").unwrap().output, 10.0);
        assert!(lookup(&none, "gpt-4omni").is_none());
        assert!(lookup(&none, "smollm2").is_none());
        let mut mine = BTreeMap::new();
        mine.insert(
            "gpt-4o".to_string(),
            Price {
                input: 1.0,
                output: 2.0,
            },
        );
        assert_eq!(lookup(&mine, "gpt-4o-2024-08-06").unwrap().input, 1.0);
        assert_eq!(lookup(&mine, "gpt-4o-mini").unwrap().input, 0.15);
        assert!(
            (Price {
                input: 2.5,
                output: 10.0
            }
            .cost(1_000_000, 100_000)
                - 3.5)
                .abs()
                < 1e-12
        );
    }
}
