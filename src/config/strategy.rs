//! The names of the memory strategies: the built-in ones, a closed set,
//! and `plugin:NAME` for a memory outside memeval (configured under
//! `[plugins.NAME]`); parsed once from the configuration or a flag, matched
//! exhaustively wherever a strategy is chosen, and written as its name in
//! every output.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::suggestion;

/// A strategy, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// A memory outside memeval, over the plugin protocol: its whole name,
    /// `plugin:NAME`.
    Plugin(Arc<str>),
}

/// What names a plugin among the strategies.
pub const PLUGIN_PREFIX: &str = "plugin:";

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

    pub fn as_str(&self) -> &str {
        match self {
            StrategyName::Buffer => "buffer",
            StrategyName::Window => "window",
            StrategyName::Summary => "summary",
            StrategyName::Vector => "vector",
            StrategyName::Hybrid => "hybrid",
            StrategyName::Plugin(name) => name,
        }
    }

    /// Whether the strategy retrieves by embedding.
    pub fn retrieves(&self) -> bool {
        matches!(self, StrategyName::Vector | StrategyName::Hybrid)
    }

    /// The plugin's name (its `[plugins.NAME]` section), for a plugin.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            StrategyName::Plugin(name) => Some(&name[PLUGIN_PREFIX.len()..]),
            _ => None,
        }
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
        if let Some(name) = s.strip_prefix(PLUGIN_PREFIX) {
            return if is_plugin_name(name) {
                Ok(StrategyName::Plugin(Arc::from(s)))
            } else {
                Err(format!(
                    "{s:?}: a plugin's name is 1 to 64 letters, digits, '-' and '_'"
                ))
            };
        }
        match Self::NAMES.iter().position(|n| *n == s) {
            Some(i) => Ok(Self::ALL[i].clone()),
            None => Err(format!(
                "unknown strategy {s:?}{} (known: {}, or plugin:NAME)",
                suggestion(s, &Self::NAMES),
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// A plugin's name: it names a section, a log file and a state folder.
pub fn is_plugin_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
            assert_eq!(s.as_str().parse::<StrategyName>(), Ok(s.clone()));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        let e = "windw".parse::<StrategyName>().unwrap_err();
        assert!(e.contains("did you mean \"window\""), "{e}");
        assert!(StrategyName::Hybrid.retrieves() && !StrategyName::Window.retrieves());
        let p: StrategyName = "plugin:my_window-2".parse().unwrap();
        assert_eq!(p.as_str(), "plugin:my_window-2");
        assert_eq!(p.plugin(), Some("my_window-2"));
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"plugin:my_window-2\"");
        for bad in ["plugin:", "plugin:a/b", "plugin:../x"] {
            assert!(bad.parse::<StrategyName>().is_err(), "{bad}");
        }
    }
}
