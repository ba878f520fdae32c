//! Durations as admins write them (`30s`, `15m`, `4h`, `2d`) and helpers for
//! timestamps.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A whole number of seconds, written as `90`, `30s`, `15m`, `4h`, `2d` or
/// `1w` in human formats and as seconds in binary ones.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub u64);

impl Duration {
    /// Duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(secs)
    }

    /// Length in seconds.
    pub const fn as_secs(&self) -> u64 {
        self.0
    }

    /// The same length as a jiff span in seconds, for timestamp arithmetic.
    pub fn to_signed_duration(self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
}

/// Error for a duration that is not a number followed by s, m, h, d or w.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {value:?} (expected a whole number with a unit such as \"30s\", \"15m\", \"4h\", \"2d\" or \"1w\")")]
pub struct ParseDurationError {
    /// The rejected text.
    pub value: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseDurationError {
            value: text.to_string(),
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| error())?;
        let scale = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(error()),
        };
        number.checked_mul(scale).map(Duration).ok_or_else(error)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        for (unit, scale) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if secs != 0 && secs.is_multiple_of(scale) {
                return write!(f, "{}{unit}", secs / scale);
            }
        }
        write!(f, "{secs}s")
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_string())
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Text {
                Seconds(u64),
                Written(String),
            }
            match Text::deserialize(deserializer)? {
                Text::Seconds(secs) => Ok(Duration(secs)),
                Text::Written(text) => text.parse().map_err(serde::de::Error::custom),
            }
        } else {
            u64::deserialize(deserializer).map(Duration)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        for (text, secs) in [
            ("45", 45),
            ("30s", 30),
            ("15m", 900),
            ("4h", 14_400),
            ("2d", 172_800),
            ("1w", 604_800),
        ] {
            assert_eq!(text.parse::<Duration>(), Ok(Duration(secs)), "{text}");
        }
    }

    #[test]
    fn rejects_unknown_unit() {
        let err = "3y".parse::<Duration>().unwrap_err();
        assert!(err.to_string().contains("\"3y\""));
    }

    #[test]
    fn rejects_overflow() {
        assert!("99999999999999999999d".parse::<Duration>().is_err());
        assert!("9999999999999999d".parse::<Duration>().is_err());
    }

    #[test]
    fn display_picks_largest_unit() {
        assert_eq!(Duration(7_200).to_string(), "2h");
        assert_eq!(Duration(61).to_string(), "61s");
    }
}
