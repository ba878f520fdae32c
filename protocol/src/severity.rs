//! Patch severity levels and their mapping from CVSS scores.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How urgent a patch is, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// CVSS below 4.0.
    Low,
    /// CVSS 4.0 to below 7.0.
    Moderate,
    /// CVSS 7.0 to below 9.0.
    Important,
    /// CVSS 9.0 and above.
    Critical,
}

impl Severity {
    /// Severity of a CVSS base score.
    pub fn from_cvss(score: f32) -> Self {
        if score < 4.0 {
            Severity::Low
        } else if score < 7.0 {
            Severity::Moderate
        } else if score < 9.0 {
            Severity::Important
        } else {
            Severity::Critical
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Moderate => "moderate",
            Severity::Important => "important",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown severity name.
#[derive(Debug, thiserror::Error)]
#[error("unknown severity {0:?} (expected \"low\", \"moderate\", \"important\" or \"critical\")")]
pub struct ParseSeverityError(pub String);

impl FromStr for Severity {
    type Err = ParseSeverityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "low" => Ok(Severity::Low),
            "moderate" | "medium" => Ok(Severity::Moderate),
            "important" | "high" => Ok(Severity::Important),
            "critical" => Ok(Severity::Critical),
            _ => Err(ParseSeverityError(text.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_boundaries() {
        assert_eq!(Severity::from_cvss(3.9), Severity::Low);
        assert_eq!(Severity::from_cvss(4.0), Severity::Moderate);
        assert_eq!(Severity::from_cvss(6.9), Severity::Moderate);
        assert_eq!(Severity::from_cvss(7.0), Severity::Important);
        assert_eq!(Severity::from_cvss(8.9), Severity::Important);
        assert_eq!(Severity::from_cvss(9.0), Severity::Critical);
    }

    #[test]
    fn ordering_follows_urgency() {
        assert!(Severity::Critical > Severity::Important);
        assert!(Severity::Moderate > Severity::Low);
    }
}
