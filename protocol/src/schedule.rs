//! Maintenance windows: when a policy's schedule lets nodes install.
//!
//! A [`Calendar`] is a [`Schedule`] parsed once (time zone, start time and
//! length checked) so that window arithmetic cannot fail later. Windows are
//! computed in the schedule's time zone with jiff's bundled tz database:
//!
//! - weekly windows start on every `weekday`; monthly ones on the n-th (1 to
//!   4) or last `weekday` of each month, then `offset_days` later, even when
//!   that carries the window into the next month;
//! - `window_start` is a local time. A start that falls into the hour skipped
//!   by a daylight-saving change is read with the offset before the change
//!   (02:30 in a gap becomes 03:30), and one that occurs twice takes its
//!   first occurrence, as RFC 5545 does;
//! - a window lasts `window_length` of elapsed time, so a window spanning a
//!   change ends at a local time one hour off its start plus its length.
//!
//! An `asap` schedule has no windows: it is always open.

use jiff::civil::{Date, DateTime};
use jiff::tz::{Disambiguation, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};

use crate::policy::{parse_clock_time, Schedule, ScheduleKind, WeekOfMonth, Weekday};

/// One maintenance window, as instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First instant inside the window.
    pub start: Timestamp,
    /// First instant after the window.
    pub end: Timestamp,
}

impl Window {
    /// The window that is always open, for `asap` schedules.
    pub const ALWAYS: Window = Window {
        start: Timestamp::MIN,
        end: Timestamp::MAX,
    };

    /// Whether `now` lies inside the window.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }

    /// The window's bounds as local times in `tz`.
    pub fn in_zone(&self, tz: &TimeZone) -> ZonedWindow {
        ZonedWindow {
            start: self.start.to_zoned(tz.clone()),
            end: self.end.to_zoned(tz.clone()),
        }
    }
}

/// A window's bounds as local times with their offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZonedWindow {
    /// Start in the schedule's zone.
    pub start: Zoned,
    /// End in the schedule's zone.
    pub end: Zoned,
}

/// Why a schedule cannot be turned into windows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The time zone is not in the tz database.
    #[error("unknown time zone {0:?} (expected an IANA name such as \"Europe/Berlin\")")]
    UnknownZone(String),
    /// A field weekly or monthly schedules need is missing or invalid.
    #[error("schedule field \"{field}\" is missing or invalid (validate the policy to see what is wrong)")]
    Incomplete {
        /// Name of the field inside `[schedule]`.
        field: &'static str,
    },
}

/// How window start dates recur.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recurrence {
    Asap,
    Weekly(Weekday),
    Monthly {
        weekday: Weekday,
        week: WeekOfMonth,
        offset_days: i32,
    },
}

/// A schedule ready for window arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct Calendar {
    recurrence: Recurrence,
    tz: TimeZone,
    start: (i8, i8),
    length: SignedDuration,
}

impl Calendar {
    /// Parses `schedule`, failing on the fields that policy validation rejects.
    pub fn new(schedule: &Schedule) -> Result<Self, ScheduleError> {
        let tz = TimeZone::get(&schedule.timezone)
            .map_err(|_| ScheduleError::UnknownZone(schedule.timezone.clone()))?;
        let missing = |field| ScheduleError::Incomplete { field };
        let recurrence = match schedule.kind {
            ScheduleKind::Asap => Recurrence::Asap,
            ScheduleKind::Weekly => Recurrence::Weekly(schedule.weekday.ok_or(missing("weekday"))?),
            ScheduleKind::Monthly => Recurrence::Monthly {
                weekday: schedule.weekday.ok_or(missing("weekday"))?,
                week: schedule.week_of_month.ok_or(missing("week_of_month"))?,
                offset_days: schedule.offset_days,
            },
        };
        if recurrence == Recurrence::Asap {
            return Ok(Calendar {
                recurrence,
                tz,
                start: (0, 0),
                length: SignedDuration::ZERO,
            });
        }
        let start = schedule
            .window_start
            .as_deref()
            .and_then(parse_clock_time)
            .ok_or(missing("window_start"))?;
        let length = schedule
            .window_length
            .filter(|l| (1..=7 * 86_400).contains(&l.as_secs()))
            .ok_or(missing("window_length"))?
            .to_signed_duration();
        if schedule.offset_days.abs() > 27 {
            return Err(missing("offset_days"));
        }
        Ok(Calendar {
            recurrence,
            tz,
            start,
            length,
        })
    }

    /// Time zone windows are read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Whether the schedule is `asap`, so always open.
    pub fn is_asap(&self) -> bool {
        self.recurrence == Recurrence::Asap
    }

    /// Windows whose start is at or after `from`, in order; none for `asap`.
    pub fn windows_from(&self, from: Timestamp) -> impl Iterator<Item = Window> + '_ {
        // A local date's window starts within a day of that date's midnight
        // in any zone, so starting two days early misses nothing.
        let first = from.to_zoned(self.tz.clone()).date();
        let first = first.checked_sub(2.days()).unwrap_or(first);
        self.dates_from(first)
            .map(|date| self.window_on(date))
            .filter(move |window| window.start >= from)
    }

    /// The next `count` windows starting at or after `from`.
    pub fn next_windows(&self, from: Timestamp, count: usize) -> Vec<Window> {
        self.windows_from(from).take(count).collect()
    }

    /// The window open at `now`, if any; [`Window::ALWAYS`] for `asap`.
    pub fn is_open(&self, now: Timestamp) -> Option<Window> {
        if self.is_asap() {
            return Some(Window::ALWAYS);
        }

        // Windows last at most a week, so one open now started at most
        // eight days ago (a day of margin for offsets).
        let back = now
            .checked_sub(SignedDuration::from_hours(8 * 24))
            .unwrap_or(Timestamp::MIN);
        self.windows_from(back)
            .take_while(|window| window.start <= now)
            .find(|window| window.contains(now))
    }

    /// The window open at `now`, or else the next one to open.
    pub fn next_open(&self, now: Timestamp) -> Option<Window> {
        self.is_open(now).or_else(|| self.windows_from(now).next())
    }

    /// The window starting on local `date`.
    fn window_on(&self, date: Date) -> Window {
        let (hour, minute) = self.start;
        let local = DateTime::from(date)
            .with()
            .hour(hour)
            .minute(minute)
            .build();
        // `Compatible` reads a time in a gap with the offset before the
        // change and takes the first of two occurrences in a fold.
        let start = local
            .and_then(|local| {
                self.tz
                    .to_ambiguous_zoned(local)
                    .disambiguate(Disambiguation::Compatible)
            })
            .map(|zoned| zoned.timestamp())
            .unwrap_or(Timestamp::MAX);
        let end = start.checked_add(self.length).unwrap_or(Timestamp::MAX);
        Window { start, end }
    }

    /// Local start dates at or after `first`, in order.
    fn dates_from(&self, first: Date) -> Box<dyn Iterator<Item = Date> + '_> {
        match self.recurrence {
            Recurrence::Asap => Box::new(std::iter::empty()),
            Recurrence::Weekly(weekday) => {
                let ahead = first.weekday().until(weekday.to_jiff());
                let start = first.checked_add(i64::from(ahead).days()).ok();
                Box::new(
                    std::iter::successors(start, |date| date.checked_add(7.days()).ok())
                        .take_while(|date| date.year() < 9999),
                )
            }
            Recurrence::Monthly {
                weekday,
                week,
                offset_days,
            } => {
                // The month before can carry its window into `first`'s month.
                let month = first.first_of_month();
                let month = month.checked_sub(1.month()).unwrap_or(month);
                let months = std::iter::successors(Some(month), |m| m.checked_add(1.month()).ok())
                    .take_while(|m| m.year() < 9999);
                Box::new(
                    months
                        .filter_map(move |month| {
                            let nth = match week {
                                WeekOfMonth::Nth(n) => n as i8,
                                WeekOfMonth::Last => -1,
                            };
                            let day = month.nth_weekday_of_month(nth, weekday.to_jiff()).ok()?;
                            day.checked_add(i64::from(offset_days).days()).ok()
                        })
                        .filter(move |date| *date >= first),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn schedule(
        kind: ScheduleKind,
        weekday: Weekday,
        start: &str,
        length: u64,
        tz: &str,
    ) -> Schedule {
        Schedule {
            kind,
            weekday: Some(weekday),
            week_of_month: None,
            offset_days: 0,
            window_start: Some(start.into()),
            window_length: Some(Duration::from_secs(length)),
            timezone: tz.into(),
            ..Schedule::default()
        }
    }

    fn monthly(
        week: WeekOfMonth,
        weekday: Weekday,
        offset: i32,
        start: &str,
        tz: &str,
    ) -> Schedule {
        Schedule {
            week_of_month: Some(week),
            offset_days: offset,
            ..schedule(ScheduleKind::Monthly, weekday, start, 4 * 3600, tz)
        }
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("test timestamp")
    }

    fn starts(schedule: &Schedule, from: &str, count: usize) -> Vec<String> {
        let calendar = Calendar::new(schedule).expect("valid schedule");
        calendar
            .next_windows(ts(from), count)
            .iter()
            .map(|w| w.start.to_string())
            .collect()
    }

    #[test]
    fn second_tuesday_when_month_starts_on_wednesday() {
        // September 2027 starts on a Wednesday: Tuesdays are the 7th and 14th.
        let s = monthly(
            WeekOfMonth::Nth(2),
            Weekday::Tuesday,
            0,
            "22:00",
            "Europe/Berlin",
        );
        // 22:00 CEST (+02:00) is 20:00 UTC.
        assert_eq!(
            starts(&s, "2027-09-01T00:00:00Z", 1),
            ["2027-09-14T20:00:00Z"]
        );
    }

    #[test]
    fn offset_days_pushes_into_next_month() {
        // Last Friday of April 2027 is the 30th; five days later is 5 May.
        let s = monthly(WeekOfMonth::Last, Weekday::Friday, 5, "09:00", "UTC");
        assert_eq!(
            starts(&s, "2027-04-20T00:00:00Z", 2),
            ["2027-05-05T09:00:00Z", "2027-06-02T09:00:00Z"]
        );
        // From inside May, the window carried over from April still counts.
        assert_eq!(
            starts(&s, "2027-05-01T00:00:00Z", 1),
            ["2027-05-05T09:00:00Z"]
        );
    }

    #[test]
    fn second_tuesday_plus_two_days() {
        // Second Tuesday of March 2027 is the 9th, plus two days is the 11th
        // (CET, +01:00); April: the 13th plus two is the 15th (CEST, +02:00).
        let s = monthly(
            WeekOfMonth::Nth(2),
            Weekday::Tuesday,
            2,
            "22:00",
            "Europe/Berlin",
        );
        assert_eq!(
            starts(&s, "2027-03-01T00:00:00Z", 2),
            ["2027-03-11T21:00:00Z", "2027-04-15T20:00:00Z"]
        );
    }

    #[test]
    fn last_friday() {
        // Fridays of December 2027: 3, 10, 17, 24, 31.
        let s = monthly(
            WeekOfMonth::Last,
            Weekday::Friday,
            0,
            "18:30",
            "America/New_York",
        );
        // 18:30 EST (-05:00) is 23:30 UTC.
        assert_eq!(
            starts(&s, "2027-12-01T00:00:00Z", 1),
            ["2027-12-31T23:30:00Z"]
        );
    }

    #[test]
    fn window_crossing_midnight_and_spring_forward() {
        // Berlin moves from +01:00 to +02:00 at 02:00 on Sunday 28 March 2027.
        // A Saturday 22:00 window of 6 h runs 21:00Z to 03:00Z, which is
        // 05:00 CEST local: six elapsed hours, seven on the wall clock.
        let s = schedule(
            ScheduleKind::Weekly,
            Weekday::Saturday,
            "22:00",
            6 * 3600,
            "Europe/Berlin",
        );
        let calendar = Calendar::new(&s).unwrap();
        let window = calendar.next_windows(ts("2027-03-27T00:00:00Z"), 1)[0];
        assert_eq!(window.start, ts("2027-03-27T21:00:00Z"));
        assert_eq!(window.end, ts("2027-03-28T03:00:00Z"));
        let local = window.in_zone(calendar.time_zone());
        assert_eq!(local.end.offset().seconds(), 7200);
        assert_eq!(local.end.hour(), 5);
        assert!(calendar.is_open(ts("2027-03-28T01:30:00Z")).is_some());
        assert!(calendar.is_open(ts("2027-03-28T03:00:00Z")).is_none());
    }

    #[test]
    fn start_in_spring_gap_moves_forward() {
        // 02:30 does not exist in Berlin on 28 March 2027; read with the
        // offset before the change (+01:00) it is 01:30Z, shown as 03:30 CEST.
        let s = schedule(
            ScheduleKind::Weekly,
            Weekday::Sunday,
            "02:30",
            3600,
            "Europe/Berlin",
        );
        let calendar = Calendar::new(&s).unwrap();
        let window = calendar.next_windows(ts("2027-03-27T00:00:00Z"), 1)[0];
        assert_eq!(window.start, ts("2027-03-28T01:30:00Z"));
        assert_eq!(window.in_zone(calendar.time_zone()).start.hour(), 3);
    }

    #[test]
    fn start_in_autumn_fold_takes_first() {
        // Berlin goes back from +02:00 to +01:00 at 03:00 on 31 October 2027;
        // 02:30 happens twice and the first (CEST) is 00:30Z.
        let s = schedule(
            ScheduleKind::Weekly,
            Weekday::Sunday,
            "02:30",
            3600,
            "Europe/Berlin",
        );
        assert_eq!(
            starts(&s, "2027-10-30T00:00:00Z", 2),
            ["2027-10-31T00:30:00Z", "2027-11-07T01:30:00Z"]
        );
    }

    #[test]
    fn sydney_both_changes() {
        // Sydney leaves +11:00 for +10:00 at 03:00 on Sunday 4 April 2027 and
        // returns to +11:00 at 02:00 on Sunday 3 October 2027.
        let s = schedule(
            ScheduleKind::Weekly,
            Weekday::Sunday,
            "02:30",
            3600,
            "Australia/Sydney",
        );
        // Fold: the first 02:30 is AEDT, 15:30Z on the Saturday.
        assert_eq!(
            starts(&s, "2027-04-03T00:00:00Z", 1),
            ["2027-04-03T15:30:00Z"]
        );
        // Gap: read with +10:00, 16:30Z on the Saturday, shown as 03:30 AEDT.
        assert_eq!(
            starts(&s, "2027-10-02T00:00:00Z", 1),
            ["2027-10-02T16:30:00Z"]
        );
    }

    #[test]
    fn half_hour_zones() {
        // Kolkata is +05:30 all year.
        let s = schedule(
            ScheduleKind::Weekly,
            Weekday::Wednesday,
            "01:00",
            3600,
            "Asia/Kolkata",
        );
        assert_eq!(
            starts(&s, "2027-01-01T00:00:00Z", 1),
            ["2027-01-05T19:30:00Z"]
        );
        // Adelaide: +10:30 in January (summer), +09:30 in July.
        let s = schedule(
            ScheduleKind::Weekly,
            Weekday::Monday,
            "09:00",
            3600,
            "Australia/Adelaide",
        );
        assert_eq!(
            starts(&s, "2027-01-01T00:00:00Z", 1),
            ["2027-01-03T22:30:00Z"]
        );
        assert_eq!(
            starts(&s, "2027-07-01T00:00:00Z", 1),
            ["2027-07-04T23:30:00Z"]
        );
    }

    #[test]
    fn asap_is_always_open_and_has_no_windows() {
        let calendar = Calendar::new(&Schedule::default()).unwrap();
        assert_eq!(
            calendar.is_open(ts("2027-01-01T00:00:00Z")),
            Some(Window::ALWAYS)
        );
        assert!(calendar
            .next_windows(ts("2027-01-01T00:00:00Z"), 3)
            .is_empty());
    }

    #[test]
    fn next_open_returns_current_then_following() {
        let s = schedule(ScheduleKind::Weekly, Weekday::Monday, "10:00", 7200, "UTC");
        let calendar = Calendar::new(&s).unwrap();
        // Monday 4 January 2027.
        let inside = calendar.next_open(ts("2027-01-04T11:00:00Z")).unwrap();
        assert_eq!(inside.start, ts("2027-01-04T10:00:00Z"));
        let after = calendar.next_open(ts("2027-01-04T12:00:00Z")).unwrap();
        assert_eq!(after.start, ts("2027-01-11T10:00:00Z"));
        assert!(
            calendar
                .windows_from(ts("2027-01-04T10:00:00Z"))
                .next()
                .unwrap()
                .start
                == inside.start
        );
    }

    #[test]
    fn rejects_unknown_zone() {
        let s = Schedule {
            timezone: "Mars/Olympus".into(),
            ..Schedule::default()
        };
        assert_eq!(
            Calendar::new(&s),
            Err(ScheduleError::UnknownZone("Mars/Olympus".into()))
        );
    }
}
