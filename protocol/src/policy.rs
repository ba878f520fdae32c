//! Rollout policies: which machines, which patches, when, with which
//! approval, reboot, wave, exception and rollback rules.
//!
//! One struct serves the admin's TOML file and the signed binary body, so
//! what the admin wrote is exactly what nodes act on. Sections an admin
//! leaves out take the defaults documented on each field.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::envelope::{Body, Kind};
use crate::manifest::{is_safe_name, PatchRef};
use crate::severity::Severity;
use crate::time::Duration;

/// Body of a signed policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Stable name of the policy.
    pub id: String,
    /// Version of the signed policy; nodes reject one not above what they hold.
    pub version: u64,
    /// After this time nodes stop acting on the policy.
    pub expires: Timestamp,
    /// When it was signed; the signer sets it.
    #[serde(default = "unix_epoch")]
    pub issued: Timestamp,
    /// Which machines it targets.
    #[serde(default)]
    pub targets: Targets,
    /// Which patches it deploys.
    #[serde(default)]
    pub content: Content,
    /// Whether deployment waits for a signed approval.
    #[serde(default)]
    pub approval: Approval,
    /// When patches may be installed.
    #[serde(default)]
    pub schedule: Schedule,
    /// Reboot handling after install.
    #[serde(default)]
    pub reboot: Reboot,
    /// Whether the operating system's own updater is turned off.
    #[serde(default)]
    pub native_updater: NativeUpdater,
    /// Waves in order; none means one wave of every targeted machine.
    #[serde(default)]
    pub waves: Vec<Wave>,
    /// Machines exempted, and what to do with machines that fail.
    #[serde(default)]
    pub exceptions: Exceptions,
    /// Automatic rollback rules.
    #[serde(default)]
    pub rollback: RollbackRule,
}

fn unix_epoch() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

/// Machines a policy targets. Empty lists mean "any"; a machine must match
/// every non-empty list and not be excluded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Targets {
    /// Enrolled groups.
    pub groups: Vec<String>,
    /// Sites.
    pub sites: Vec<String>,
    /// Host names.
    pub hosts: Vec<String>,
    /// Host names never targeted.
    pub exclude_hosts: Vec<String>,
}

/// A machine's identity as the targeting rules see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Host name from the enrollment certificate or config.
    pub host: String,
    /// Site.
    pub site: String,
    /// Groups.
    pub groups: Vec<String>,
}

impl Targets {
    /// Whether `member` is targeted.
    pub fn matches(&self, member: &Membership) -> bool {
        if self.exclude_hosts.iter().any(|h| h == &member.host) {
            return false;
        }
        let group_ok =
            self.groups.is_empty() || member.groups.iter().any(|g| self.groups.contains(g));
        let site_ok = self.sites.is_empty() || self.sites.contains(&member.site);
        let host_ok = self.hosts.is_empty() || self.hosts.contains(&member.host);
        group_ok && site_ok && host_ok
    }
}

/// Which patches a policy deploys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Content {
    /// Explicit patches.
    pub patches: Vec<PatchRef>,
    /// Every published patch at or above this severity that applies.
    pub min_severity: Option<Severity>,
    /// Lowest manifest revision the policy acts on, per patch. A node that
    /// holds only an older revision of the patch's manifest waits for a
    /// newer one, so a peer that serves this policy together with a
    /// superseded, still validly signed manifest cannot get that manifest
    /// installed. Patches left out take any revision.
    pub manifest_revisions: BTreeMap<PatchRef, u64>,
}

impl Content {
    /// Whether `revision` of the manifest of `patch` is one the policy acts
    /// on: at or above the revision it pins for the patch, if any.
    pub fn accepts_manifest(&self, patch: &PatchRef, revision: u64) -> bool {
        self.manifest_revisions
            .get(patch)
            .is_none_or(|lowest| revision >= *lowest)
    }
}

/// Approval mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Waits for a signed approval (or `auto_approve_after`).
    Manual,
    /// Goes ahead at the first window.
    #[default]
    Automatic,
}

/// Approval rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Approval {
    /// Manual or automatic; automatic when left out.
    pub mode: ApprovalMode,
    /// Time after a patch's publication after which a manual policy goes
    /// ahead without a signed approval.
    pub auto_approve_after: Option<Duration>,
}

/// Schedule kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// As soon as possible.
    #[default]
    Asap,
    /// Every week on `weekday`.
    Weekly,
    /// Every month on the `week_of_month`-th `weekday`, plus `offset_days`.
    Monthly,
}

/// Day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    /// The same day as jiff names it.
    pub fn to_jiff(self) -> jiff::civil::Weekday {
        use jiff::civil::Weekday as W;
        match self {
            Weekday::Monday => W::Monday,
            Weekday::Tuesday => W::Tuesday,
            Weekday::Wednesday => W::Wednesday,
            Weekday::Thursday => W::Thursday,
            Weekday::Friday => W::Friday,
            Weekday::Saturday => W::Saturday,
            Weekday::Sunday => W::Sunday,
        }
    }
}

/// Which week of a month: 1 to 4, or the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeekOfMonth {
    /// The n-th occurrence of the weekday, 1 to 4.
    Nth(u8),
    /// The last occurrence.
    Last,
}

impl Serialize for WeekOfMonth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self, serializer.is_human_readable()) {
            (WeekOfMonth::Nth(n), _) => serializer.serialize_u8(*n),
            (WeekOfMonth::Last, true) => serializer.serialize_str("last"),
            (WeekOfMonth::Last, false) => serializer.serialize_u8(0),
        }
    }
}

impl<'de> Deserialize<'de> for WeekOfMonth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Written {
                Number(i64),
                Text(String),
            }
            match Written::deserialize(deserializer)? {
                Written::Number(n @ 1..=4) => Ok(WeekOfMonth::Nth(n as u8)),
                Written::Text(text) if text == "last" => Ok(WeekOfMonth::Last),
                Written::Number(n) => Err(D::Error::custom(format!(
                    "invalid week_of_month {n} (expected 1 to 4, or \"last\")"
                ))),
                Written::Text(text) => Err(D::Error::custom(format!(
                    "invalid week_of_month {text:?} (expected 1 to 4, or \"last\")"
                ))),
            }
        } else {
            match u8::deserialize(deserializer)? {
                0 => Ok(WeekOfMonth::Last),
                n @ 1..=4 => Ok(WeekOfMonth::Nth(n)),
                n => Err(D::Error::custom(format!("invalid week_of_month {n}"))),
            }
        }
    }
}

/// How critical patches treat the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticalMode {
    /// Critical patches wait for the window like the others.
    #[default]
    Window,
    /// Critical patches skip the window.
    Asap,
}

/// When patches may be installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Asap, weekly or monthly; asap when left out.
    pub kind: ScheduleKind,
    /// Day of a weekly or monthly window.
    pub weekday: Option<Weekday>,
    /// Which week of the month, for monthly windows.
    pub week_of_month: Option<WeekOfMonth>,
    /// Days added after the chosen weekday (for example "two days after
    /// the second Tuesday"); it may carry a window into the next month.
    pub offset_days: i32,
    /// Local start time `HH:MM` in `timezone`.
    pub window_start: Option<String>,
    /// Length of the window, in elapsed time.
    pub window_length: Option<Duration>,
    /// IANA time zone the window is read in; UTC when left out.
    pub timezone: String,
    /// Whether critical patches skip the window.
    pub critical: CriticalMode,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            kind: ScheduleKind::Asap,
            weekday: None,
            week_of_month: None,
            offset_days: 0,
            window_start: None,
            window_length: None,
            timezone: "UTC".into(),
            critical: CriticalMode::Window,
        }
    }
}

/// Reboot mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebootMode {
    /// Never reboot.
    Never,
    /// Reboot when a patch says it needs one.
    #[default]
    IfRequired,
    /// Always reboot after installing.
    Always,
}

/// Reboot handling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reboot {
    /// When to reboot.
    pub mode: RebootMode,
    /// How long before the reboot the user is notified.
    pub notify_before: Duration,
    /// Text of the notice.
    pub message: String,
    /// How many times the user may postpone.
    pub max_postpone: u32,
    /// How long one postponement lasts.
    pub postpone_by: Duration,
    /// Longest time after install before the reboot happens regardless.
    pub deadline: Option<Duration>,
    /// Reboot at the start of the next window instead of at the deadline.
    pub within_window: bool,
}

/// Native updater handling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NativeUpdater {
    /// Turn the operating system's own updater off on targeted machines.
    pub disable: bool,
}

/// One wave of a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// Name shown in reports.
    pub name: String,
    /// Members by group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Members by site.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Members by host name.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Share (1 to 100) of targeted hosts not in an earlier wave, chosen by
    /// a stable hash of the host's identity.
    #[serde(default)]
    pub percent: Option<u8>,
    /// Time after every member reported before the next wave may start.
    #[serde(default)]
    pub soak: Duration,
    /// Highest failed ÷ members ratio under which the next wave starts.
    #[serde(default = "full_ratio")]
    pub max_failure_ratio: f64,
    /// Time after the wave starts after which silent members count as failed.
    #[serde(default)]
    pub report_deadline: Option<Duration>,
}

fn full_ratio() -> f64 {
    1.0
}

/// One exempted host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostException {
    /// Host name.
    pub host: String,
    /// Why it is exempt, shown in reports.
    pub reason: String,
    /// Last day (in the policy's time zone) of the exemption, `YYYY-MM-DD`.
    #[serde(default)]
    pub until: Option<String>,
}

/// What to do with a machine whose install failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Report it and leave it.
    #[default]
    Report,
    /// Isolate it from the network, keeping patchmesh's own traffic.
    Isolate,
}

/// Exceptions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Exceptions {
    /// Exempted hosts.
    pub hosts: Vec<HostException>,
    /// Handling of machines that cannot take a patch.
    pub on_failure: OnFailure,
}

/// Automatic rollback.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RollbackRule {
    /// Roll back when the install command fails.
    pub on_install_failure: bool,
    /// Command that exits 0 when the machine is healthy after install.
    pub health_check: Option<String>,
    /// How long the health check may take.
    pub health_timeout: Option<Duration>,
}

/// Why a policy file was rejected; each names the field and value.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("policy field \"{field}\": {problem}")]
pub struct PolicyError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl fmt::Display) -> PolicyError {
    PolicyError {
        field: field.into(),
        problem: problem.to_string(),
    }
}

impl Policy {
    /// Parses the admin's TOML form without validating it.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "file".into());
            invalid(field, e.message())
        })
    }

    /// Checks every field against what nodes can act on.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !is_safe_name(&self.id) {
            return Err(invalid(
                "id",
                format!(
                    "{:?} is not a valid id (letters, digits, '.', '-', '_' only)",
                    self.id
                ),
            ));
        }
        if self.version == 0 {
            return Err(invalid("version", "0 is not allowed (versions start at 1)"));
        }
        if self.content.patches.is_empty() && self.content.min_severity.is_none() {
            return Err(invalid(
                "content",
                "the policy deploys nothing (set content.patches or content.min_severity)",
            ));
        }
        if let Some((patch, _)) = self
            .content
            .manifest_revisions
            .iter()
            .find(|(_, revision)| **revision == 0)
        {
            return Err(invalid(
                format!("content.manifest_revisions.\"{patch}\""),
                "0 is not a manifest revision (revisions start at 1)",
            ));
        }
        if jiff::tz::TimeZone::get(&self.schedule.timezone).is_err() {
            return Err(invalid(
                "schedule.timezone",
                format!(
                    "unknown time zone {:?} (expected an IANA name such as \"Europe/Berlin\")",
                    self.schedule.timezone
                ),
            ));
        }
        self.validate_schedule()?;
        self.validate_waves()?;
        self.validate_reboot_and_exceptions()?;
        Ok(())
    }

    fn validate_reboot_and_exceptions(&self) -> Result<(), PolicyError> {
        if self.reboot.max_postpone > 0 && self.reboot.postpone_by.as_secs() == 0 {
            return Err(invalid(
                "reboot.postpone_by",
                "missing (max_postpone allows postponing, so set a duration such as \"1h\")",
            ));
        }
        for (index, exception) in self.exceptions.hosts.iter().enumerate() {
            let Some(until) = exception.until.as_deref() else {
                continue;
            };
            if until.parse::<jiff::civil::Date>().is_err() {
                return Err(invalid(
                    format!("exceptions.hosts[{index}].until"),
                    format!(
                        "{until:?} is not a date (expected \"YYYY-MM-DD\" such as \"2027-01-31\")"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_schedule(&self) -> Result<(), PolicyError> {
        let schedule = &self.schedule;
        if schedule.kind == ScheduleKind::Asap {
            return Ok(());
        }
        if schedule.weekday.is_none() {
            return Err(invalid(
                "schedule.weekday",
                "missing (weekly and monthly schedules need a weekday such as \"tuesday\")",
            ));
        }
        if schedule.kind == ScheduleKind::Monthly && schedule.week_of_month.is_none() {
            return Err(invalid(
                "schedule.week_of_month",
                "missing (monthly schedules need 1 to 4, or \"last\")",
            ));
        }
        let start = schedule.window_start.as_deref().ok_or_else(|| {
            invalid(
                "schedule.window_start",
                "missing (expected a local time such as \"22:00\")",
            )
        })?;
        if parse_clock_time(start).is_none() {
            return Err(invalid(
                "schedule.window_start",
                format!("{start:?} is not a time of day (expected \"HH:MM\" such as \"22:00\")"),
            ));
        }
        let length = schedule.window_length.ok_or_else(|| {
            invalid(
                "schedule.window_length",
                "missing (expected a duration such as \"4h\")",
            )
        })?;
        if length.as_secs() == 0 || length.as_secs() > 7 * 86_400 {
            return Err(invalid(
                "schedule.window_length",
                format!("{length} is outside 1s to 7d (a window may last at most a week)"),
            ));
        }
        if schedule.offset_days.abs() > 27 {
            return Err(invalid(
                "schedule.offset_days",
                format!("{} is outside -27 to 27", schedule.offset_days),
            ));
        }
        Ok(())
    }

    fn validate_waves(&self) -> Result<(), PolicyError> {
        for (index, wave) in self.waves.iter().enumerate() {
            let field = format!("waves[{index}]");
            if self.waves[..index].iter().any(|w| w.name == wave.name) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!(
                        "{:?} names an earlier wave too (wave names must differ)",
                        wave.name
                    ),
                ));
            }
            if wave.groups.is_empty()
                && wave.sites.is_empty()
                && wave.hosts.is_empty()
                && wave.percent.is_none()
            {
                return Err(invalid(
                    field,
                    format!(
                        "wave {:?} has no members (set groups, sites, hosts or percent)",
                        wave.name
                    ),
                ));
            }
            if let Some(percent) = wave.percent {
                if !(1..=100).contains(&percent) {
                    return Err(invalid(
                        format!("{field}.percent"),
                        format!("{percent} is outside 1 to 100"),
                    ));
                }
            }
            if !(0.0..=1.0).contains(&wave.max_failure_ratio) {
                return Err(invalid(
                    format!("{field}.max_failure_ratio"),
                    format!("{} is outside 0.0 to 1.0", wave.max_failure_ratio),
                ));
            }
        }
        Ok(())
    }
}

/// Parses `HH:MM` into hours and minutes.
pub fn parse_clock_time(text: &str) -> Option<(i8, i8)> {
    let (hours, minutes) = text.split_once(':')?;
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    ((0..24).contains(&hours) && (0..60).contains(&minutes)).then_some((hours, minutes))
}

impl Body for Policy {
    const KIND: Kind = Kind::Policy;

    fn slot(&self) -> String {
        self.id.clone()
    }

    fn revision(&self) -> u64 {
        self.version
    }

    fn issued(&self) -> Timestamp {
        self.issued
    }

    fn expires(&self) -> Timestamp {
        self.expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
id = "all-asap"
version = 1
expires = "2030-01-01T00:00:00Z"
[content]
patches = ["demo@1.0"]
"#;

    #[test]
    fn minimal_policy_parses_with_defaults() {
        let policy = Policy::from_toml(MINIMAL).expect("parses");
        policy.validate().expect("valid");
        assert_eq!(policy.schedule.kind, ScheduleKind::Asap);
        assert_eq!(policy.approval.mode, ApprovalMode::Automatic);
        assert!(policy.targets.matches(&Membership::default()));
    }

    #[test]
    fn binary_round_trip_keeps_every_field() {
        let policy = Policy::from_toml(MINIMAL).expect("parses");
        let bytes = postcard::to_allocvec(&policy).expect("encodes");
        let back: Policy = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, policy);
    }

    #[test]
    fn rejects_unknown_time_zone() {
        let text = format!("{MINIMAL}\n[schedule]\ntimezone = \"Europe/Berln\"\n");
        let err = Policy::from_toml(&text).unwrap().validate().unwrap_err();
        assert_eq!(err.field, "schedule.timezone");
        assert!(err.problem.contains("Europe/Berln"), "{err}");
    }

    #[test]
    fn manifest_revision_pin_holds_back_older_manifests() {
        let text = "id = \"x\"\nversion = 1\nexpires = \"2030-01-01T00:00:00Z\"\n\
                    [content]\npatches = [\"openssl@3.0.13\"]\n\
                    manifest_revisions = { \"openssl@3.0.13\" = 2 }\n";
        let policy = Policy::from_toml(text).expect("parses");
        assert_eq!(policy.validate(), Ok(()));
        let pinned: PatchRef = "openssl@3.0.13".parse().unwrap();
        let other: PatchRef = "curl@8.5.0".parse().unwrap();
        assert!(!policy.content.accepts_manifest(&pinned, 1));
        assert!(policy.content.accepts_manifest(&pinned, 2));
        assert!(policy.content.accepts_manifest(&pinned, 3));
        assert!(policy.content.accepts_manifest(&other, 1));

        let bytes = postcard::to_allocvec(&policy).expect("encodes");
        let back: Policy = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, policy);
    }

    #[test]
    fn rejects_manifest_revision_zero() {
        let text = format!("{MINIMAL}manifest_revisions = {{ \"demo@1\" = 0 }}\n");
        let err = Policy::from_toml(&text).unwrap().validate().unwrap_err();
        assert_eq!(err.field, "content.manifest_revisions.\"demo@1\"");
    }

    #[test]
    fn rejects_empty_policy() {
        let text = "id = \"x\"\nversion = 1\nexpires = \"2030-01-01T00:00:00Z\"\n";
        let err = Policy::from_toml(text).unwrap().validate().unwrap_err();
        assert_eq!(err.field, "content");
    }

    #[test]
    fn rejects_bad_exception_date() {
        let text = format!(
            "{MINIMAL}\n[exceptions]\nhosts = [{{ host = \"lab-07\", reason = \"x\", until = \"31.01.2027\" }}]\n"
        );
        let err = Policy::from_toml(&text).unwrap().validate().unwrap_err();
        assert_eq!(err.field, "exceptions.hosts[0].until");
        assert!(err.problem.contains("31.01.2027"), "{err}");
    }

    #[test]
    fn rejects_duplicate_wave_names() {
        let wave = "[[waves]]\nname = \"pilot\"\npercent = 10\n";
        let text = format!("{MINIMAL}\n{wave}{wave}");
        let err = Policy::from_toml(&text).unwrap().validate().unwrap_err();
        assert_eq!(err.field, "waves[1].name");
    }

    #[test]
    fn rejects_postpone_without_duration() {
        let text = format!("{MINIMAL}\n[reboot]\nmax_postpone = 2\n");
        let err = Policy::from_toml(&text).unwrap().validate().unwrap_err();
        assert_eq!(err.field, "reboot.postpone_by");
    }

    #[test]
    fn targets_exclusion_wins() {
        let targets = Targets {
            groups: vec!["workstations".into()],
            exclude_hosts: vec!["kiosk-03".into()],
            ..Targets::default()
        };
        let mut member = Membership {
            host: "kiosk-03".into(),
            site: "hq".into(),
            groups: vec!["workstations".into()],
        };
        assert!(!targets.matches(&member));
        member.host = "pc-1".into();
        assert!(targets.matches(&member));
        member.groups = vec!["servers".into()];
        assert!(!targets.matches(&member));
    }
}
