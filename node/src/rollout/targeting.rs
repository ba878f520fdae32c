//! Which machines and patches a policy covers: targets, content selection,
//! exceptions and wave membership.
//!
//! Wave membership is computed from a host's membership alone, so every node
//! and observer places every host in the same wave without coordination.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use patchmesh_protocol::policy::{HostException, Membership, Policy};
use patchmesh_protocol::{PatchRef, Severity};

/// Returns whether `policy` deploys `patch` of `severity`.
pub fn selects(policy: &Policy, patch: &PatchRef, severity: Severity) -> bool {
    policy.content.patches.contains(patch)
        || policy
            .content
            .min_severity
            .is_some_and(|min| severity >= min)
}

/// Returns the exception exempting `host` at `now` and the instant it ends
/// (`None` for an exception without end).
///
/// An exception's `until` is its last day in the policy's time zone, so it
/// ends at the following local midnight. An `until` that is not a date or a
/// zone that is unknown keeps the host exempt: validation rejects both
/// before a policy is signed, and exempting is the safe reading.
pub fn exemption<'a>(
    policy: &'a Policy,
    host: &str,
    now: Timestamp,
) -> Option<(&'a HostException, Option<Timestamp>)> {
    policy
        .exceptions
        .hosts
        .iter()
        .filter(|exception| exception.host == host)
        .map(|exception| (exception, exception_end(policy, exception)))
        .find(|(_, end)| end.is_none_or(|end| now < end))
}

fn exception_end(policy: &Policy, exception: &HostException) -> Option<Timestamp> {
    let until: Date = exception.until.as_deref()?.parse().ok()?;
    let tz = TimeZone::get(&policy.schedule.timezone).ok()?;
    let next_day = until.checked_add(1.day()).ok()?;
    let start = tz.to_ambiguous_zoned(next_day.into()).compatible().ok()?;
    Some(start.timestamp())
}

/// Returns the index of the wave `member` belongs to, or `None` when no
/// wave takes it. A policy without waves has one implicit wave, index 0.
///
/// Waves are tried in order, and a host goes to the first one whose hosts,
/// groups or sites list it or whose percent draw picks it.
pub fn wave_of(policy: &Policy, member: &Membership) -> Option<usize> {
    if policy.waves.is_empty() {
        return Some(0);
    }
    policy.waves.iter().position(|wave| {
        let listed = wave.hosts.contains(&member.host)
            || wave.sites.contains(&member.site)
            || member.groups.iter().any(|g| wave.groups.contains(g));
        let drawn = wave.percent.is_some_and(|percent| {
            draw(&policy.id, &wave.name, &member.host) < u32::from(percent) * 100
        });
        listed || drawn
    })
}

/// Name of wave `index` of `policy`, `"all"` for the implicit wave.
pub fn wave_name(policy: &Policy, index: usize) -> &str {
    policy
        .waves
        .get(index)
        .map_or("all", |wave| wave.name.as_str())
}

/// Draws a number in 0..10000 from BLAKE3 of the policy, wave and host.
///
/// Mixing the wave name in makes each percent wave an independent draw, so
/// "50 %" after a "10 %" wave takes half of the remaining hosts.
fn draw(policy: &str, wave: &str, host: &str) -> u32 {
    let mut hasher = blake3::Hasher::new();
    for part in ["patchmesh/v1/wave", policy, wave, host] {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    let bytes = hasher.finalize();
    let head: [u8; 8] = bytes.as_bytes()[..8]
        .try_into()
        .expect("a BLAKE3 hash has 32 bytes");
    (u64::from_le_bytes(head) % 10_000) as u32
}

#[cfg(test)]
mod tests {
    use patchmesh_protocol::policy::Wave;
    use patchmesh_protocol::time::Duration;

    use super::*;

    fn wave(name: &str, percent: u8) -> Wave {
        Wave {
            name: name.into(),
            groups: vec![],
            sites: vec![],
            hosts: vec![],
            percent: Some(percent),
            soak: Duration::default(),
            max_failure_ratio: 1.0,
            report_deadline: None,
        }
    }

    #[test]
    fn percent_waves_split_remaining_hosts() {
        let text = "id = \"p\"\nversion = 1\nexpires = \"2030-01-01T00:00:00Z\"\n[content]\nmin_severity = \"low\"\n";
        let mut policy = Policy::from_toml(text).unwrap();
        policy.waves = vec![wave("ten", 10), wave("half", 50), wave("rest", 100)];
        let mut counts = [0usize; 3];
        for n in 0..4000 {
            let member = Membership {
                host: format!("pc-{n}"),
                ..Membership::default()
            };
            counts[wave_of(&policy, &member).unwrap()] += 1;
        }
        // Expected 400, 1800 and 1800; allow for sampling spread.
        assert!((300..500).contains(&counts[0]), "{counts:?}");
        assert!((1650..1950).contains(&counts[1]), "{counts:?}");
        assert!((1650..1950).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn draw_is_stable() {
        assert_eq!(draw("p", "w", "pc-1"), draw("p", "w", "pc-1"));
        assert!(draw("p", "w", "pc-1") < 10_000);
    }
}
