//! Expiry arguments: a duration from now (`90d`, `12h`) or an RFC 3339 time.

use anyhow::{bail, Context as _};
use jiff::Timestamp;
use patchmesh_protocol::Duration;

/// Turns `text` into an expiry time after `now`.
pub fn parse(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    let expires = if let Ok(at) = text.parse::<Timestamp>() {
        at
    } else {
        let duration: Duration = text.parse().with_context(|| {
            format!("invalid --expires \"{text}\" (expected a duration such as \"365d\" or an RFC 3339 time)")
        })?;
        now.checked_add(duration.to_signed_duration())
            .with_context(|| format!("--expires \"{text}\" is too far in the future"))?
    };
    if expires <= now {
        bail!("--expires \"{text}\" is not in the future (now is {now})");
    }
    Ok(expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_counts_from_now() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().expect("valid");
        let expires = parse("2d", now).expect("valid");
        assert_eq!(expires.to_string(), "2030-01-03T00:00:00Z");
    }

    #[test]
    fn accepts_rfc3339_time() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().expect("valid");
        let expires = parse("2031-06-01T12:00:00Z", now).expect("valid");
        assert_eq!(expires.to_string(), "2031-06-01T12:00:00Z");
    }

    #[test]
    fn rejects_past_time() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().expect("valid");
        let err = parse("2020-01-01T00:00:00Z", now).unwrap_err();
        assert!(err.to_string().contains("not in the future"), "{err}");
    }

    #[test]
    fn rejects_unknown_unit() {
        let now = Timestamp::UNIX_EPOCH;
        let err = parse("3y", now).unwrap_err();
        assert!(err.to_string().contains("\"3y\""), "{err}");
    }
}
