//! Scenario tests of the engine with virtual time. Expected instants are
//! worked out by hand from each zone's offsets and noted beside them.

use jiff::Timestamp;
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::policy::{Membership, Policy};
use patchmesh_protocol::{PatchState, Severity};

use super::*;

/// A full policy in the admin's format: manual approval with a three-day
/// deferral, monthly window two days after the second Tuesday at 22:00 in
/// Berlin, pilot then broad wave.
const POLICY: &str = r#"
id = "workstations-monthly"
version = 7
expires = "2028-06-30T00:00:00Z"

[targets]
groups = ["workstations"]
exclude_hosts = ["kiosk-03"]

[content]
min_severity = "important"

[approval]
mode = "manual"
auto_approve_after = "3d"

[schedule]
kind = "monthly"
weekday = "tuesday"
week_of_month = 2
offset_days = 2
window_start = "22:00"
window_length = "4h"
timezone = "Europe/Berlin"
critical = "asap"

[reboot]
mode = "if_required"
notify_before = "15m"
message = "This computer restarts in 15 minutes."
max_postpone = 2
postpone_by = "1h"
deadline = "24h"

[native_updater]
disable = true

[[waves]]
name = "pilot"
groups = ["it-pilot"]
soak = "2d"
max_failure_ratio = 0.05

[[waves]]
name = "broad"
percent = 100

[exceptions]
hosts = [{ host = "lab-07", reason = "vendor certification", until = "2027-01-31" }]
on_failure = "isolate"

[rollback]
on_install_failure = true
health_check = "systemctl is-active --quiet ssh"
health_timeout = "5m"
"#;

fn ts(text: &str) -> Timestamp {
    text.parse().expect("test timestamp")
}

fn member(host: &str, groups: &[&str]) -> Membership {
    Membership {
        host: host.into(),
        site: "hq".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// One node stepping one track, with everything it holds.
struct Node {
    policy: Policy,
    patch: PatchInfo,
    member: Membership,
    orders: Orders,
    fleet: FleetView,
    others: Vec<OtherTrack>,
    track: Track,
}

impl Node {
    fn new(host: &str, groups: &[&str], published: &str) -> Self {
        let policy = Policy::from_toml(POLICY).expect("example parses");
        policy.validate().expect("example is valid");
        let patch = PatchInfo {
            patch: "openssl@3.0.15".parse().unwrap(),
            severity: Severity::Important,
            reboot_required: false,
            published: ts(published),
            applies: true,
        };
        let track = Track::new(&policy.id, patch.patch.clone(), ts(published));
        Node {
            policy,
            patch,
            member: member(host, groups),
            orders: Orders::default(),
            fleet: FleetView::default(),
            others: Vec::new(),
            track,
        }
    }

    fn step(&mut self, event: Event, now: &str) -> Step {
        let inputs = Inputs {
            policy: &self.policy,
            patch: &self.patch,
            member: &self.member,
            orders: &self.orders,
            fleet: &self.fleet,
            others: &self.others,
        };
        let step = step(&self.track, &inputs, event, ts(now));
        self.track = step.track.clone();
        step
    }

    fn approve(&mut self, issued: &str) {
        self.orders.approvals.push(Approval {
            policy: self.policy.id.clone(),
            patches: vec![self.patch.patch.clone()],
            revision: self.orders.approvals.len() as u64 + 1,
            issued: ts(issued),
            expires: ts("2028-01-01T00:00:00Z"),
        });
    }

    /// Runs download to completion at `now` and returns the step after it.
    fn download(&mut self, now: &str) -> Step {
        let step = self.step(Event::Tick, now);
        assert_eq!(step.actions, [Action::Download], "{:?}", step.reason);
        self.step(Event::Downloaded, now)
    }
}

fn host(name: &str, groups: &[&str], state: PatchState, since: &str) -> HostResult {
    HostResult {
        member: member(name, groups),
        state: Some(state),
        since: Some(ts(since)),
    }
}

const PILOT: &[&str] = &["workstations", "it-pilot"];
const BROAD: &[&str] = &["workstations"];

#[test]
fn manual_waits_for_signed_approval() {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    let step = node.step(Event::Tick, "2027-09-01T01:00:00Z");
    assert_eq!(step.reason, Reason::AwaitingApproval);
    assert_eq!(step.wake, Some(ts("2027-09-04T00:00:00Z")));
    assert!(step.actions.is_empty());
    assert_eq!(node.track.state, PatchState::Pending);

    node.approve("2027-09-02T00:00:00Z");
    let step = node.step(Event::Tick, "2027-09-02T00:05:00Z");
    assert_eq!(step.actions, [Action::Download]);
    assert_eq!(node.track.state, PatchState::Downloading);
    assert_eq!(node.track.approved_at, Some(ts("2027-09-02T00:00:00Z")));
}

#[test]
fn auto_approve_after_deferral() {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    let step = node.step(Event::Tick, "2027-09-03T23:59:59Z");
    assert_eq!(step.reason, Reason::AwaitingApproval);
    let step = node.step(Event::Tick, "2027-09-04T00:00:00Z");
    assert_eq!(step.actions, [Action::Download]);
    assert_eq!(node.track.approved_at, Some(ts("2027-09-04T00:00:00Z")));
}

#[test]
fn second_tuesday_window_when_month_starts_wednesday() {
    // September 2027 starts on a Wednesday; its second Tuesday is the 14th.
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.policy.schedule.offset_days = 0;
    node.approve("2027-09-01T00:00:00Z");
    let step = node.download("2027-09-01T00:00:00Z");
    assert_eq!(node.track.state, PatchState::WaitingWindow);
    assert_eq!(step.reason, Reason::Window);
    // 22:00 CEST (+02:00) on the 14th.
    assert_eq!(step.wake, Some(ts("2027-09-14T20:00:00Z")));

    let step = node.step(Event::Tick, "2027-09-14T19:59:59Z");
    assert!(step.actions.is_empty());
    let step = node.step(Event::Tick, "2027-09-14T20:00:00Z");
    assert_eq!(step.actions, [Action::Install { retry: false }]);
    assert_eq!(node.track.state, PatchState::Installing);
}

#[test]
fn window_across_midnight_and_dst_then_missed() {
    // Saturday 22:00 for 6 h in Berlin; on 27 March 2027 it runs 21:00Z to
    // 03:00Z, across midnight and the spring-forward change at 01:00Z.
    let mut node = Node::new("pilot-1", PILOT, "2027-03-20T00:00:00Z");
    node.policy.schedule.kind = patchmesh_protocol::policy::ScheduleKind::Weekly;
    node.policy.schedule.weekday = Some(patchmesh_protocol::policy::Weekday::Saturday);
    node.policy.schedule.window_length = Some("6h".parse().unwrap());
    node.approve("2027-03-20T00:00:00Z");
    node.download("2027-03-20T00:00:00Z");

    // Inside the window after the change: 02:30Z is 04:30 CEST.
    let mut early = Node {
        track: node.track.clone(),
        ..Node::new("pilot-1", PILOT, "2027-03-20T00:00:00Z")
    };
    early.policy = node.policy.clone();
    early.orders = node.orders.clone();
    let step = early.step(Event::Tick, "2027-03-28T02:30:00Z");
    assert_eq!(step.actions, [Action::Install { retry: false }]);

    // A node that was off until after the window waits for the next one:
    // Saturday 3 April, 22:00 CEST is 20:00Z.
    let step = node.step(Event::Tick, "2027-03-28T03:00:00Z");
    assert!(step.actions.is_empty());
    assert_eq!(step.wake, Some(ts("2027-04-03T20:00:00Z")));
}

#[test]
fn critical_patch_skips_window() {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.patch.severity = Severity::Critical;
    node.approve("2027-09-01T00:00:00Z");
    let step = node.download("2027-09-01T00:10:00Z");
    assert_eq!(step.actions, [Action::Install { retry: false }]);

    // Without `critical = "asap"` the same patch waits.
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.patch.severity = Severity::Critical;
    node.policy.schedule.critical = patchmesh_protocol::policy::CriticalMode::Window;
    node.approve("2027-09-01T00:00:00Z");
    let step = node.download("2027-09-01T00:10:00Z");
    assert_eq!(step.reason, Reason::Window);
}

#[test]
fn halt_mid_wave_and_resume() {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.patch.severity = Severity::Critical;
    node.approve("2027-09-01T00:00:00Z");
    node.orders.halts.push(Halt {
        policy: node.policy.id.clone(),
        wave: Some("pilot".into()),
        reason: "printing broke".into(),
        revision: 1,
        issued: ts("2027-09-01T00:05:00Z"),
        expires: ts("2028-01-01T00:00:00Z"),
    });
    let step = node.step(Event::Tick, "2027-09-01T00:10:00Z");
    assert!(step.actions.is_empty());
    assert!(
        matches!(step.reason, Reason::Halted { .. }),
        "{:?}",
        step.reason
    );

    node.orders.resumes.push(Resume {
        policy: node.policy.id.clone(),
        wave: None,
        revision: 1,
        issued: ts("2027-09-02T00:00:00Z"),
        expires: ts("2028-01-01T00:00:00Z"),
    });
    let step = node.step(Event::Tick, "2027-09-02T00:10:00Z");
    assert_eq!(step.actions, [Action::Download]);
}

#[test]
fn failed_pilot_keeps_broad_waiting() {
    let mut node = Node::new("pc-1", BROAD, "2027-09-01T00:00:00Z");
    node.approve("2027-09-01T00:00:00Z");
    node.fleet.hosts = vec![
        host(
            "pilot-1",
            PILOT,
            PatchState::Installed,
            "2027-09-16T21:00:00Z",
        ),
        host(
            "pilot-2",
            PILOT,
            PatchState::RolledBack,
            "2027-09-16T21:30:00Z",
        ),
    ];
    let step = node.step(Event::Tick, "2027-09-20T00:00:00Z");
    assert!(step.actions.is_empty());
    assert_eq!(
        step.reason,
        Reason::WaveFailed {
            wave: "pilot".into(),
            ratio: 0.5
        }
    );
    assert_eq!(node.track.state, PatchState::Approved);
}

#[test]
fn broad_starts_after_pilot_soak() {
    let mut node = Node::new("pc-1", BROAD, "2027-09-01T00:00:00Z");
    node.approve("2027-09-01T00:00:00Z");
    node.fleet.hosts = vec![
        host(
            "pilot-1",
            PILOT,
            PatchState::Installed,
            "2027-09-16T21:00:00Z",
        ),
        host(
            "pilot-2",
            PILOT,
            PatchState::Installing,
            "2027-09-16T21:30:00Z",
        ),
    ];
    let step = node.step(Event::Tick, "2027-09-17T00:00:00Z");
    assert_eq!(
        step.reason,
        Reason::EarlierWave {
            wave: "pilot".into()
        }
    );
    assert_eq!(step.wake, None);

    // Results in at 21:40Z, so the two-day soak ends on the 18th at 21:40Z.
    node.fleet.hosts[1] = host(
        "pilot-2",
        PILOT,
        PatchState::Installed,
        "2027-09-16T21:40:00Z",
    );
    let step = node.step(Event::Tick, "2027-09-17T00:00:00Z");
    assert_eq!(step.wake, Some(ts("2027-09-18T21:40:00Z")));
    let step = node.step(Event::Tick, "2027-09-18T21:40:00Z");
    assert_eq!(step.actions, [Action::Download]);
}

#[test]
fn silent_member_fails_at_report_deadline() {
    let mut policy = Policy::from_toml(POLICY).unwrap();
    policy.waves[0].report_deadline = Some("1d".parse().unwrap());
    policy.waves[0].max_failure_ratio = 0.5;
    let fleet = FleetView {
        hosts: vec![
            host(
                "pilot-1",
                PILOT,
                PatchState::Installed,
                "2027-09-01T12:00:00Z",
            ),
            HostResult {
                member: member("pilot-2", PILOT),
                state: None,
                since: None,
            },
        ],
    };
    let approved = ts("2027-09-01T00:00:00Z");
    let before = judge_waves(&policy, &fleet, approved, ts("2027-09-01T23:00:00Z"));
    assert!(matches!(before[0].status, WaveStatus::Reporting { .. }));
    let after = judge_waves(&policy, &fleet, approved, ts("2027-09-02T00:00:00Z"));
    assert_eq!(after[0].failed, 1);
    assert_eq!(
        after[0].status,
        WaveStatus::Soaking {
            until: ts("2027-09-04T00:00:00Z"),
            ratio: 0.5
        }
    );
    assert_eq!(after[1].status, WaveStatus::NotStarted);
}

#[test]
fn single_wave_judged_after_results() {
    let mut policy = Policy::from_toml(POLICY).unwrap();
    policy.waves.clear();
    let mut fleet = FleetView {
        hosts: vec![host(
            "pc-1",
            BROAD,
            PatchState::Downloading,
            "2027-09-01T00:00:00Z",
        )],
    };
    let approved = ts("2027-09-01T00:00:00Z");
    let judged = judge_waves(&policy, &fleet, approved, ts("2027-09-30T00:00:00Z"));
    assert_eq!(judged.len(), 1);
    assert_eq!(judged[0].name, "all");
    assert!(matches!(judged[0].status, WaveStatus::Reporting { .. }));
    fleet.hosts[0] = host("pc-1", BROAD, PatchState::Installed, "2027-09-16T21:00:00Z");
    let judged = judge_waves(&policy, &fleet, approved, ts("2027-09-30T00:00:00Z"));
    assert!(matches!(judged[0].status, WaveStatus::Passed { .. }));
}

/// Installs on a critical patch outside any window and returns the node at
/// `InstallSucceeded`.
fn installed_node(now: &str) -> (Node, Step) {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.patch.severity = Severity::Critical;
    node.approve("2027-09-01T00:00:00Z");
    node.download(now);
    let step = node.step(Event::InstallSucceeded, now);
    (node, step)
}

#[test]
fn failed_health_check_rolls_back() {
    let (mut node, step) = installed_node("2027-09-01T01:00:00Z");
    assert_eq!(
        step.actions,
        [Action::HealthCheck {
            command: "systemctl is-active --quiet ssh".into(),
            timeout_secs: Some(300),
        }]
    );
    let step = node.step(
        Event::HealthFailed {
            error: "exit status 3".into(),
        },
        "2027-09-01T01:01:00Z",
    );
    assert_eq!(
        step.actions,
        [Action::RollBack {
            reason: Failure::HealthCheck
        }]
    );
    assert_eq!(node.track.state, PatchState::RollingBack);
    node.step(Event::RollbackSucceeded, "2027-09-01T01:02:00Z");
    assert_eq!(node.track.state, PatchState::RolledBack);

    // Not installed again until a new approval.
    let step = node.step(Event::Tick, "2027-09-05T00:00:00Z");
    assert_eq!(step.reason, Reason::Stopped);
    node.approve("2027-09-06T00:00:00Z");
    let step = node.step(Event::Tick, "2027-09-06T00:01:00Z");
    assert_eq!(step.actions, [Action::Download]);
}

#[test]
fn install_failure_rolls_back_when_configured() {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.patch.severity = Severity::Critical;
    node.approve("2027-09-01T00:00:00Z");
    node.download("2027-09-01T00:00:00Z");
    let error = Event::InstallFailed {
        error: "exit 1".into(),
    };
    let step = node.step(error.clone(), "2027-09-01T00:01:00Z");
    assert_eq!(
        step.actions,
        [Action::RollBack {
            reason: Failure::Install
        }]
    );

    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.policy.rollback.on_install_failure = false;
    node.patch.severity = Severity::Critical;
    node.approve("2027-09-01T00:00:00Z");
    node.download("2027-09-01T00:00:00Z");
    let step = node.step(error, "2027-09-01T00:01:00Z");
    assert!(step.actions.is_empty());
    assert_eq!(node.track.state, PatchState::Failed);
}

#[test]
fn rollback_order_reverts_installed_patch() {
    let (mut node, _) = installed_node("2027-09-01T01:00:00Z");
    node.step(Event::HealthPassed, "2027-09-01T01:01:00Z");
    assert_eq!(node.track.state, PatchState::Installed);
    node.orders.rollbacks.push(RollbackOrder {
        policy: node.policy.id.clone(),
        patch: node.patch.patch.clone(),
        reason: "breaks printing".into(),
        revision: 1,
        issued: ts("2027-09-02T00:00:00Z"),
        expires: ts("2028-01-01T00:00:00Z"),
    });
    let step = node.step(Event::Tick, "2027-09-02T00:01:00Z");
    assert_eq!(
        step.actions,
        [Action::RollBack {
            reason: Failure::Ordered
        }]
    );
    node.step(Event::RollbackSucceeded, "2027-09-02T00:02:00Z");
    let step = node.step(Event::Tick, "2027-09-03T00:00:00Z");
    assert_eq!(step.reason, Reason::Stopped);
    assert!(step.actions.is_empty());
}

#[test]
fn reboot_notice_postpone_and_deadline_order() {
    let (mut node, _) = installed_node("2027-09-01T10:00:00Z");
    node.patch.reboot_required = true;
    node.policy.reboot.deadline = Some("2h".parse().unwrap());
    let step = node.step(Event::HealthPassed, "2027-09-01T10:00:00Z");
    assert_eq!(node.track.state, PatchState::RebootPending);
    // Notice at once for a reboot 15 minutes later.
    let reboot_at = ts("2027-09-01T10:15:00Z");
    assert_eq!(
        step.actions,
        [Action::NotifyUser {
            message: node.policy.reboot.message.clone(),
            reboot_at
        }]
    );
    assert_eq!(step.wake, Some(reboot_at));

    // First postponement: reboot at 11:15, notice at 11:00.
    let step = node.step(Event::PostponeRequested, "2027-09-01T10:05:00Z");
    assert_eq!(node.track.postpones, 1);
    assert_eq!(step.wake, Some(ts("2027-09-01T11:00:00Z")));
    let step = node.step(Event::Tick, "2027-09-01T11:00:00Z");
    assert!(
        matches!(step.actions[..], [Action::NotifyUser { reboot_at, .. }] if reboot_at == ts("2027-09-01T11:15:00Z"))
    );

    // Second postponement would give 12:15, but the deadline caps it at 12:00.
    node.step(Event::PostponeRequested, "2027-09-01T11:05:00Z");
    assert_eq!(node.track.postpones, 2);
    let step = node.step(Event::Tick, "2027-09-01T11:45:00Z");
    assert!(
        matches!(step.actions[..], [Action::NotifyUser { reboot_at, .. }] if reboot_at == ts("2027-09-01T12:00:00Z"))
    );

    // A third is rejected.
    node.step(Event::PostponeRequested, "2027-09-01T11:50:00Z");
    assert_eq!(node.track.postpones, 2);
    let step = node.step(Event::Tick, "2027-09-01T12:00:00Z");
    assert_eq!(step.actions, [Action::Reboot]);
    node.step(Event::Rebooted, "2027-09-01T12:03:00Z");
    assert_eq!(node.track.state, PatchState::Installed);
}

#[test]
fn reboot_within_window_waits_for_window_start() {
    let (mut node, _) = installed_node("2027-09-01T10:00:00Z");
    node.patch.reboot_required = true;
    node.policy.reboot.within_window = true;
    node.policy.reboot.deadline = None;
    let step = node.step(Event::HealthPassed, "2027-09-01T10:00:00Z");
    // Next window: the second Tuesday of September 2027 is the 14th, plus
    // two days is the 16th, 22:00 CEST = 20:00Z. The notice goes 15 minutes
    // ahead.
    assert!(step.actions.is_empty());
    assert_eq!(step.wake, Some(ts("2027-09-16T19:45:00Z")));
}

#[test]
fn exception_until_last_day_in_policy_zone() {
    let mut node = Node::new("lab-07", BROAD, "2027-01-10T00:00:00Z");
    node.policy.waves.clear();
    node.approve("2027-01-10T00:00:00Z");
    let step = node.step(Event::Tick, "2027-01-20T00:00:00Z");
    assert!(
        matches!(step.reason, Reason::Exempt { .. }),
        "{:?}",
        step.reason
    );
    // The 31st ends at midnight CET (+01:00), 23:00Z.
    assert_eq!(step.wake, Some(ts("2027-01-31T23:00:00Z")));
    let step = node.step(Event::Tick, "2027-01-31T23:00:00Z");
    assert_eq!(step.actions, [Action::Download]);
}

#[test]
fn excluded_and_untargeted_hosts_stay_pending() {
    let mut node = Node::new("kiosk-03", BROAD, "2027-09-01T00:00:00Z");
    assert_eq!(
        node.step(Event::Tick, "2027-09-05T00:00:00Z").reason,
        Reason::NotTargeted
    );
    let mut node = Node::new("srv-1", &["servers"], "2027-09-01T00:00:00Z");
    assert_eq!(
        node.step(Event::Tick, "2027-09-05T00:00:00Z").reason,
        Reason::NotTargeted
    );
    let mut node = Node::new("pc-1", BROAD, "2027-09-01T00:00:00Z");
    node.patch.severity = Severity::Moderate;
    assert_eq!(
        node.step(Event::Tick, "2027-09-05T00:00:00Z").reason,
        Reason::NotSelected
    );
}

#[test]
fn patch_installs_once_across_policies() {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.approve("2027-09-01T00:00:00Z");
    node.others.push(OtherTrack {
        policy: "servers-weekly".into(),
        state: PatchState::Installing,
    });
    let step = node.step(Event::Tick, "2027-09-01T00:10:00Z");
    assert!(step.actions.is_empty());
    assert!(matches!(step.reason, Reason::OtherPolicy { .. }));
    node.others[0].state = PatchState::Installed;
    let step = node.step(Event::Tick, "2027-09-01T00:20:00Z");
    assert!(step.actions.is_empty());
    assert_eq!(node.track.state, PatchState::Installed);
}

#[test]
fn crash_resumes_without_repeating_steps() {
    let mut node = Node::new("pilot-1", PILOT, "2027-09-01T00:00:00Z");
    node.patch.severity = Severity::Critical;
    node.approve("2027-09-01T00:00:00Z");
    node.download("2027-09-01T00:00:00Z");
    assert_eq!(node.track.in_flight, Some(ActionKind::Install));

    // Persisted form survives a round trip.
    let bytes = serde_json::to_vec(&node.track).unwrap();
    node.track = serde_json::from_slice(&bytes).unwrap();

    // A tick while the install runs starts nothing.
    assert!(node
        .step(Event::Tick, "2027-09-01T00:01:00Z")
        .actions
        .is_empty());
    // After a crash, only the install is re-issued, marked as a retry.
    let step = node.step(Event::Restarted, "2027-09-01T00:05:00Z");
    assert_eq!(step.actions, [Action::Install { retry: true }]);
    // Once it reported, a restart runs the health check, not the install.
    node.step(Event::InstallSucceeded, "2027-09-01T00:06:00Z");
    let step = node.step(Event::Restarted, "2027-09-01T00:07:00Z");
    assert!(matches!(step.actions[..], [Action::HealthCheck { .. }]));
    assert!(node.track.downloaded);
}

#[test]
fn host_settings_follow_live_policies() {
    let policy = Policy::from_toml(POLICY).unwrap();
    let pc = member("pc-1", BROAD);
    let now = ts("2027-09-01T00:00:00Z");
    let mut track = Track::new(&policy.id, "openssl@3.0.15".parse().unwrap(), now);
    let settings = host_settings(&[&policy], &[&track], &pc, now);
    assert!(settings.native_updater_disabled);
    assert!(!settings.isolated);

    track.state = PatchState::Failed;
    track.failure = Some(Failure::Install);
    assert!(host_settings(&[&policy], &[&track], &pc, now).isolated);

    // After the policy expires, the updater comes back and isolation lifts.
    let later = ts("2028-07-01T00:00:00Z");
    assert_eq!(
        host_settings(&[&policy], &[&track], &pc, later),
        HostSettings::default()
    );
}
