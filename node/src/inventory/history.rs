//! Patch history kept by an observer: one event per change of a patch's
//! state on a host, taken from successive verified reports, in a bounded
//! log. `GET /v1/history` serializes [`HistoryLog::query`]'s result as
//! `{"events": [...]}`, which `patchmesh-signer history` reads.

use std::collections::{BTreeMap, VecDeque};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use patchmesh_protocol::{NodeReport, PatchRef, PatchState};
use serde::{Deserialize, Serialize};

/// Default number of events a log keeps. Estimate: an event takes about
/// 150 bytes in memory, so the default is about 15 MiB.
pub const DEFAULT_MAX_EVENTS: usize = 100_000;

/// One change of a patch's state on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When the state was entered, by the host's clock.
    pub time: Timestamp,
    /// Host name.
    pub host: String,
    /// The patch.
    pub patch: PatchRef,
    /// State entered.
    pub event: PatchState,
}

/// Returns the events that turn `previous` into `next`: every patch whose
/// state or state time is new or changed, so a state entered again counts
/// again. Intermediate states between two reports are not seen.
pub fn report_events(previous: Option<&NodeReport>, next: &NodeReport) -> Vec<HistoryEvent> {
    let before: BTreeMap<&PatchRef, (PatchState, Timestamp)> = previous
        .map(|report| {
            report
                .patches
                .iter()
                .map(|status| (&status.patch, (status.state, status.since)))
                .collect()
        })
        .unwrap_or_default();
    next.patches
        .iter()
        .filter(|status| before.get(&status.patch) != Some(&(status.state, status.since)))
        .map(|status| HistoryEvent {
            time: status.since,
            host: next.host.clone(),
            patch: status.patch.clone(),
            event: status.state,
        })
        .collect()
}

/// Events in arrival order, at most `max_events`; the oldest are dropped
/// first at the limit.
#[derive(Clone, Debug)]
pub struct HistoryLog {
    events: VecDeque<HistoryEvent>,
    max_events: usize,
    dropped: u64,
}

impl HistoryLog {
    /// Creates an empty log that keeps at most `max_events` events.
    pub fn new(max_events: usize) -> Self {
        HistoryLog {
            events: VecDeque::new(),
            max_events: max_events.max(1),
            dropped: 0,
        }
    }

    /// Appends `events`, dropping the oldest beyond the limit.
    pub fn extend(&mut self, events: impl IntoIterator<Item = HistoryEvent>) {
        for event in events {
            if self.events.len() == self.max_events {
                self.events.pop_front();
                self.dropped += 1;
            }
            self.events.push_back(event);
        }
    }

    /// Number of events dropped at the limit since the log was created.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Returns events of `host` (every host when `None`) whose UTC day is
    /// within `from..=to`, sorted by time.
    pub fn query(
        &self,
        host: Option<&str>,
        from: Option<Date>,
        to: Option<Date>,
    ) -> Vec<&HistoryEvent> {
        let mut events: Vec<&HistoryEvent> = self
            .events
            .iter()
            .filter(|event| host.is_none_or(|host| event.host == host))
            .filter(|event| {
                let day = event.time.to_zoned(TimeZone::UTC).date();
                from.is_none_or(|from| day >= from) && to.is_none_or(|to| day <= to)
            })
            .collect();
        events.sort_by_key(|event| event.time);
        events
    }
}

#[cfg(test)]
mod tests {
    use patchmesh_protocol::PatchStatus;

    use super::*;

    fn report(states: &[(&str, PatchState, i64)]) -> NodeReport {
        NodeReport {
            peer: "p".into(),
            host: "pc-1".into(),
            site: "hq".into(),
            groups: vec![],
            seq: 1,
            time: Timestamp::UNIX_EPOCH,
            agent_version: "0".into(),
            patches: states
                .iter()
                .map(|(patch, state, since)| PatchStatus {
                    patch: patch.parse().unwrap(),
                    policy: "baseline".into(),
                    state: *state,
                    since: Timestamp::from_second(*since).unwrap(),
                    started: Timestamp::UNIX_EPOCH,
                    detail: String::new(),
                    payload_hash: None,
                    bytes_same_site: 0,
                    bytes_cross_site: 0,
                })
                .collect(),
            stale: None,
        }
    }

    #[test]
    fn events_for_new_and_changed_states() {
        let first = report(&[("a@1", PatchState::Installing, 10)]);
        let events = report_events(None, &first);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, PatchState::Installing);

        let same = report(&[("a@1", PatchState::Installing, 10)]);
        assert!(report_events(Some(&first), &same).is_empty());

        let next = report(&[
            ("a@1", PatchState::Installed, 20),
            ("b@1", PatchState::Failed, 30),
        ]);
        let events = report_events(Some(&first), &next);
        let kinds: Vec<PatchState> = events.iter().map(|e| e.event).collect();
        assert_eq!(kinds, vec![PatchState::Installed, PatchState::Failed]);
        assert_eq!(events[0].time, Timestamp::from_second(20).unwrap());
    }

    #[test]
    fn log_drops_oldest_at_limit() {
        let mut log = HistoryLog::new(2);
        for second in [1, 2, 3] {
            let report = report(&[("a@1", PatchState::Installed, second)]);
            log.extend(report_events(None, &report));
        }
        let events = log.query(None, None, None);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].time, Timestamp::from_second(2).unwrap());
        assert_eq!(log.dropped(), 1);
    }

    #[test]
    fn query_filters_host_and_days() {
        let mut log = HistoryLog::new(10);
        let day = 86_400;
        log.extend(report_events(
            None,
            &report(&[("a@1", PatchState::Installed, day + 5)]),
        ));
        let mut other = report(&[("a@1", PatchState::Failed, 2 * day + 5)]);
        other.host = "pc-2".into();
        log.extend(report_events(None, &other));

        assert_eq!(log.query(Some("pc-2"), None, None).len(), 1);
        let jan2 = Some(Date::constant(1970, 1, 2));
        assert_eq!(log.query(None, jan2, jan2).len(), 1);
        assert_eq!(log.query(None, jan2, None).len(), 2);

        let json = serde_json::to_value(log.query(None, None, None)).unwrap();
        assert_eq!(json[0]["patch"], "a@1");
        assert_eq!(json[0]["event"], "installed");
        assert_eq!(json[1]["event"], "failed");
    }
}
