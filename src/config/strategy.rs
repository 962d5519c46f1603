//! The names of the memory strategies: one closed set, parsed once from the
//! configuration or a flag, matched exhaustively wherever a strategy is
//! chosen, and written as its lowercase name in every output.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::suggestion;

/// A strategy, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StrategyName {
    /// Every message, always.
    Buffer,
    /// The newest messages that fit a token budget.
    Window,
    /// A rolling summary and a raw buffer.
    Summary,
    /// Recent messages and retrieval by embedding.
    Vector,
    /// Summary, retrieval and buffer: the tutorial's tiered design.
    Hybrid,
}

impl StrategyName {
    /// Every strategy, in report order.
    pub const ALL: [StrategyName; 5] = [
        StrategyName::Buffer,
        StrategyName::Window,
        StrategyName::Summary,
        StrategyName::Vector,
        StrategyName::Hybrid,
    ];

    /// The names, in report order.
    pub const NAMES: [&'static str; 5] = ["buffer", "window", "summary", "vector", "hybrid"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether the strategy retrieves by embedding.
    pub fn retrieves(self) -> bool {
        matches!(self, StrategyName::Vector | StrategyName::Hybrid)
    }
}

impl fmt::Display for StrategyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyName {
    type Err = String;

    /// A name, or an error with "did you mean" and the known names.
    fn from_str(s: &str) -> Result<Self, String> {
        match Self::NAMES.iter().position(|n| *n == s) {
            Some(i) => Ok(Self::ALL[i]),
            None => Err(format!(
                "unknown strategy {s:?}{} (known: {})",
                suggestion(s, &Self::NAMES),
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl Serialize for StrategyName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StrategyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_typos_are_explained() {
        for s in StrategyName::ALL {
            assert_eq!(s.as_str().parse::<StrategyName>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        let e = "windw".parse::<StrategyName>().unwrap_err();
        assert!(e.contains("did you mean \"window\""), "{e}");
        assert!(StrategyName::Hybrid.retrieves() && !StrategyName::Window.retrieves());
    }
}
