//! `history`: installs, failures and rollbacks per day (UTC) from the
//! observer's `GET /v1/history`, for one host or the whole fleet, over an
//! optional date range.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::query_value;
use crate::client::Client;
use crate::{output, Context};

/// Arguments of `history`.
#[derive(Args)]
pub struct HistoryArgs {
    /// Control API URL of an observer node, such as http://127.0.0.1:7300.
    #[arg(long)]
    node: String,
    /// Show only this host, with each event listed.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// First day included, YYYY-MM-DD in UTC.
    #[arg(long, value_name = "DATE")]
    from: Option<Date>,
    /// Last day included, YYYY-MM-DD in UTC.
    #[arg(long, value_name = "DATE")]
    to: Option<Date>,
}

/// Reply of `GET /v1/history`.
#[derive(Clone, Debug, Deserialize)]
pub struct HistoryReply {
    /// Events, in any order.
    pub events: Vec<Event>,
}

/// One change of a patch's state on one host.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Event {
    /// When it happened, by the host's clock.
    pub time: Timestamp,
    /// Host name.
    pub host: String,
    /// `name@version`.
    pub patch: String,
    /// State entered: `installed`, `failed`, `rolled_back`, …
    pub event: String,
}

/// Totals of one day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DayTotals {
    /// Day in UTC.
    pub date: String,
    /// `installed` events.
    pub installs: usize,
    /// `failed` events.
    pub failures: usize,
    /// `rolled_back` events.
    pub rollbacks: usize,
    /// Any other event.
    pub other: usize,
}

/// Runs `history`.
pub fn run(context: &Context, args: HistoryArgs) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if from > to {
            bail!("invalid range: --from {from} is after --to {to}");
        }
    }
    let client = Client::new(&args.node)?;
    let mut query = Vec::new();
    if let Some(host) = &args.host {
        query.push(format!("host={}", query_value(host)));
    }
    if let Some(from) = args.from {
        query.push(format!("from={from}"));
    }
    if let Some(to) = args.to {
        query.push(format!("to={to}"));
    }
    let path = if query.is_empty() {
        "/v1/history".to_string()
    } else {
        format!("/v1/history?{}", query.join("&"))
    };
    let reply: HistoryReply = client.get(&path)?;

    // Filter here too, in case the observer ignores the query.
    let mut events: Vec<Event> = reply
        .events
        .into_iter()
        .filter(|event| args.host.as_ref().is_none_or(|host| &event.host == host))
        .filter(|event| in_range(day(event.time), args.from, args.to))
        .collect();
    events.sort_by(|a, b| (a.time, &a.host, &a.patch).cmp(&(b.time, &b.host, &b.patch)));
    let days = totals_per_day(&events);

    if args.host.is_some() {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| vec![e.time.to_string(), e.patch.clone(), e.event.clone()])
            .collect();
        context
            .out
            .say(output::table(&["time", "patch", "event"], &rows));
    }
    let rows: Vec<Vec<String>> = days
        .iter()
        .map(|d| {
            vec![
                d.date.clone(),
                d.installs.to_string(),
                d.failures.to_string(),
                d.rollbacks.to_string(),
                d.other.to_string(),
            ]
        })
        .collect();
    context.out.say(output::table(
        &["day", "installs", "failures", "rollbacks", "other"],
        &rows,
    ));
    let mut result = json!({ "days": days });
    if let Some(host) = &args.host {
        result["host"] = json!(host);
        result["events"] = json!(events);
    }
    context.out.finish(result);
    Ok(())
}

fn day(time: Timestamp) -> Date {
    time.to_zoned(TimeZone::UTC).date()
}

fn in_range(date: Date, from: Option<Date>, to: Option<Date>) -> bool {
    from.is_none_or(|from| date >= from) && to.is_none_or(|to| date <= to)
}

/// Counts events per UTC day, in date order.
pub fn totals_per_day(events: &[Event]) -> Vec<DayTotals> {
    let mut days: BTreeMap<Date, DayTotals> = BTreeMap::new();
    for event in events {
        let date = day(event.time);
        let totals = days.entry(date).or_insert_with(|| DayTotals {
            date: date.to_string(),
            ..DayTotals::default()
        });
        match event.event.as_str() {
            "installed" => totals.installs += 1,
            "failed" => totals.failures += 1,
            "rolled_back" => totals.rollbacks += 1,
            _ => totals.other += 1,
        }
    }
    days.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: &str, event: &str) -> Event {
        Event {
            time: time.parse().unwrap(),
            host: "pc-1".into(),
            patch: "demo@1".into(),
            event: event.into(),
        }
    }

    #[test]
    fn totals_group_by_utc_day() {
        let events = [
            event("2026-01-01T23:30:00Z", "installed"),
            event("2026-01-01T10:00:00Z", "failed"),
            event("2026-01-02T00:10:00Z", "rolled_back"),
            event("2026-01-02T01:00:00Z", "installed"),
            event("2026-01-02T02:00:00Z", "downloading"),
        ];
        let days = totals_per_day(&events);
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].date, "2026-01-01");
        assert_eq!((days[0].installs, days[0].failures), (1, 1));
        assert_eq!(days[1].rollbacks, 1);
        assert_eq!(days[1].installs, 1);
        assert_eq!(days[1].other, 1);
    }

    #[test]
    fn range_includes_both_ends() {
        let from = Some(Date::constant(2026, 1, 2));
        let to = Some(Date::constant(2026, 1, 3));
        assert!(!in_range(Date::constant(2026, 1, 1), from, to));
        assert!(in_range(Date::constant(2026, 1, 2), from, to));
        assert!(in_range(Date::constant(2026, 1, 3), from, to));
        assert!(!in_range(Date::constant(2026, 1, 4), from, to));
    }
}
