//! Runs `patchmesh-signer policy preview` and checks its windows against
//! instants worked out by hand from each zone's offsets.

use std::fs;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_patchmesh-signer");

/// Writes a policy with `schedule` and returns the preview's JSON.
fn preview(schedule: &str, from: &str, count: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.toml");
    let text = format!(
        "id = \"p\"\nversion = 1\nexpires = \"2030-01-01T00:00:00Z\"\n\
         [content]\nmin_severity = \"low\"\n[schedule]\n{schedule}\n"
    );
    fs::write(&path, text).expect("write policy");
    let output = Command::new(BIN)
        .args([
            "policy", "preview", "--json", "--from", from, "--count", count,
        ])
        .arg(&path)
        .output()
        .expect("run signer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).expect("JSON")
}

fn field(value: &Value, index: usize, name: &str) -> String {
    value["windows"][index][name]
        .as_str()
        .expect(name)
        .to_string()
}

const BERLIN_MONTHLY: &str = "kind = \"monthly\"\nweekday = \"tuesday\"\nweek_of_month = 2\n\
    offset_days = 2\nwindow_start = \"22:00\"\nwindow_length = \"4h\"\ntimezone = \"Europe/Berlin\"";

#[test]
fn monthly_windows_across_spring_change() {
    let json = preview(BERLIN_MONTHLY, "2027-03-01T00:00:00Z", "2");
    assert_eq!(json["policy"], "p");
    assert_eq!(json["timezone"], "Europe/Berlin");
    // Second Tuesday of March 2027 is the 9th, plus two is the 11th (CET).
    assert_eq!(field(&json, 0, "start"), "2027-03-11T21:00:00Z");
    assert_eq!(field(&json, 0, "end"), "2027-03-12T01:00:00Z");
    assert_eq!(field(&json, 0, "start_local"), "2027-03-11T22:00:00+01:00");
    assert_eq!(field(&json, 0, "end_local"), "2027-03-12T02:00:00+01:00");
    // April: the 13th plus two is the 15th, after the change (CEST).
    assert_eq!(field(&json, 1, "start"), "2027-04-15T20:00:00Z");
    assert_eq!(field(&json, 1, "start_local"), "2027-04-15T22:00:00+02:00");
}

#[test]
fn window_start_is_inclusive() {
    let json = preview(BERLIN_MONTHLY, "2027-03-11T21:00:00Z", "1");
    assert_eq!(field(&json, 0, "start"), "2027-03-11T21:00:00Z");
    let json = preview(BERLIN_MONTHLY, "2027-03-11T21:00:01Z", "1");
    assert_eq!(field(&json, 0, "start"), "2027-04-15T20:00:00Z");
}

#[test]
fn sydney_gap_and_fold() {
    let schedule = "kind = \"weekly\"\nweekday = \"sunday\"\nwindow_start = \"02:30\"\n\
        window_length = \"1h\"\ntimezone = \"Australia/Sydney\"";
    // 4 April 2027: 02:30 occurs twice, the first at +11:00.
    let json = preview(schedule, "2027-04-03T00:00:00Z", "1");
    assert_eq!(field(&json, 0, "start"), "2027-04-03T15:30:00Z");
    assert_eq!(field(&json, 0, "start_local"), "2027-04-04T02:30:00+11:00");
    // 3 October 2027: 02:30 is skipped; read at +10:00 it is 03:30 at +11:00.
    let json = preview(schedule, "2027-10-02T00:00:00Z", "1");
    assert_eq!(field(&json, 0, "start"), "2027-10-02T16:30:00Z");
    assert_eq!(field(&json, 0, "start_local"), "2027-10-03T03:30:00+11:00");
}

#[test]
fn half_hour_zone_and_next_month() {
    // Last Friday of April 2027 is the 30th; plus five days is 5 May, at
    // 09:00 in Adelaide (+09:30 in May).
    let schedule = "kind = \"monthly\"\nweekday = \"friday\"\nweek_of_month = \"last\"\n\
        offset_days = 5\nwindow_start = \"09:00\"\nwindow_length = \"2h\"\n\
        timezone = \"Australia/Adelaide\"";
    let json = preview(schedule, "2027-04-20T00:00:00Z", "1");
    assert_eq!(field(&json, 0, "start"), "2027-05-04T23:30:00Z");
    assert_eq!(field(&json, 0, "start_local"), "2027-05-05T09:00:00+09:30");
    assert_eq!(field(&json, 0, "end_local"), "2027-05-05T11:00:00+09:30");
}

#[test]
fn asap_lists_no_windows() {
    let json = preview("kind = \"asap\"", "2027-01-01T00:00:00Z", "3");
    assert_eq!(json["windows"].as_array().map(Vec::len), Some(0));
}
