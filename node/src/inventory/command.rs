//! The `command` adapter: runs an admin-configured command with `sh -c` and
//! reads the packages it prints, for platforms whose package database the
//! node does not read itself (RPM, Windows).
//!
//! The command prints one JSON object on standard output:
//!
//! ```json
//! {"packages": [{"name": "openssl", "version": "3.0.13-1", "arch": "x86_64"}],
//!  "os": {"id": "rhel", "version_id": "9.3", "pretty_name": "…", "arch": "x86_64"},
//!  "reboot_pending": false}
//! ```
//!
//! `packages` is required; `arch` inside a package, `os` and every field of
//! `os`, and `reboot_pending` are optional. A field given in `os` replaces
//! the value the node read itself.

use std::time::Duration;

use patchmesh_protocol::inventory::Package;
use serde_json::{Map, Value};
use tokio::process::Command;

use super::CollectError;

/// Largest output read from the command, in bytes.
const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Parsed output of the inventory command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandInventory {
    /// Installed packages.
    pub packages: Vec<Package>,
    /// `os` fields the command gave, each replacing the node's own value.
    pub os: OsOverride,
    /// `reboot_pending` from the output, when given.
    pub reboot_pending: Option<bool>,
}

/// Operating system fields from the command's `os` object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsOverride {
    /// `os.id`.
    pub id: Option<String>,
    /// `os.version_id`.
    pub version_id: Option<String>,
    /// `os.pretty_name`.
    pub pretty_name: Option<String>,
    /// `os.kernel`.
    pub kernel: Option<String>,
    /// `os.arch`.
    pub arch: Option<String>,
}

/// Runs `command` and parses its output, killing it after `timeout`.
pub async fn run(command: &str, timeout: Duration) -> Result<CommandInventory, CollectError> {
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);

    // NOTE: a timeout kills `sh` only. Processes the command started in the
    // background keep running until they exit by themselves.
    let output = match tokio::time::timeout(timeout, child.output()).await {
        Err(_) => {
            return Err(CollectError::CommandTimeout {
                command: command.to_string(),
                timeout,
            })
        }
        Ok(Err(source)) => {
            return Err(CollectError::CommandStart {
                command: command.to_string(),
                source,
            })
        }
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(CollectError::CommandFailed {
            command: command.to_string(),
            code: output.status.code(),
            stderr: stderr.trim().chars().take(500).collect(),
        });
    }
    if output.stdout.len() > MAX_OUTPUT_BYTES {
        return Err(CollectError::CommandOutput {
            field: "(output)".into(),
            reason: format!(
                "{} bytes, over the limit of {MAX_OUTPUT_BYTES} bytes",
                output.stdout.len()
            ),
        });
    }
    parse_output(&output.stdout)
}

fn output_error(field: impl Into<String>, reason: impl Into<String>) -> CollectError {
    CollectError::CommandOutput {
        field: field.into(),
        reason: reason.into(),
    }
}

fn string_field(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
    required: bool,
) -> Result<Option<String>, CollectError> {
    match object.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(output_error(format!("{path}.{key}"), "is missing")),
        Some(Value::String(text)) if required && text.is_empty() => {
            Err(output_error(format!("{path}.{key}"), "is empty"))
        }
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(output_error(
            format!("{path}.{key}"),
            format!("expected a string, found {other}"),
        )),
    }
}

/// Parses the command's standard output.
pub fn parse_output(stdout: &[u8]) -> Result<CommandInventory, CollectError> {
    let value: Value = serde_json::from_slice(stdout).map_err(|e| {
        let text = String::from_utf8_lossy(stdout);
        let start: String = text.trim().chars().take(80).collect();
        output_error(
            "(output)",
            format!("not JSON ({e}); output starts {start:?}"),
        )
    })?;
    let Value::Object(root) = value else {
        return Err(output_error("(output)", "expected a JSON object"));
    };

    let Some(list) = root.get("packages") else {
        return Err(output_error("packages", "is missing"));
    };
    let Value::Array(list) = list else {
        return Err(output_error("packages", "expected an array"));
    };
    let mut packages = Vec::with_capacity(list.len());
    for (index, item) in list.iter().enumerate() {
        let path = format!("packages[{index}]");
        let Value::Object(item) = item else {
            return Err(output_error(path, "expected an object"));
        };
        let name = string_field(item, "name", &path, true)?.unwrap_or_default();
        let version = string_field(item, "version", &path, true)?.unwrap_or_default();
        let arch = string_field(item, "arch", &path, false)?.unwrap_or_default();
        packages.push(Package {
            name,
            version,
            arch,
        });
    }

    let os = match root.get("os") {
        None | Some(Value::Null) => OsOverride::default(),
        Some(Value::Object(os)) => OsOverride {
            id: string_field(os, "id", "os", false)?.map(|id| id.to_lowercase()),
            version_id: string_field(os, "version_id", "os", false)?,
            pretty_name: string_field(os, "pretty_name", "os", false)?,
            kernel: string_field(os, "kernel", "os", false)?,
            arch: string_field(os, "arch", "os", false)?,
        },
        Some(other) => {
            return Err(output_error(
                "os",
                format!("expected an object, found {other}"),
            ))
        }
    };
    let reboot_pending = match root.get("reboot_pending") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(flag)) => Some(*flag),
        Some(other) => {
            return Err(output_error(
                "reboot_pending",
                format!("expected true or false, found {other}"),
            ))
        }
    };
    Ok(CommandInventory {
        packages,
        os,
        reboot_pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_output_is_parsed() {
        let script = r#"echo '{"packages":[{"name":"openssl","version":"3.0.13"}],"os":{"id":"RHEL"},"reboot_pending":true}'"#;
        let inventory = run(script, Duration::from_secs(5)).await.expect("runs");
        assert_eq!(inventory.packages.len(), 1);
        assert_eq!(inventory.packages[0].name, "openssl");
        assert_eq!(inventory.packages[0].arch, "");
        assert_eq!(inventory.os.id.as_deref(), Some("rhel"));
        assert_eq!(inventory.reboot_pending, Some(true));
    }

    #[tokio::test]
    async fn hanging_command_times_out() {
        let err = run("sleep 10", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, CollectError::CommandTimeout { .. }), "{err}");
        assert!(err.to_string().contains("sleep 10"), "{err}");
    }

    #[tokio::test]
    async fn failing_command_keeps_stderr() {
        let err = run("echo broken >&2; exit 4", Duration::from_secs(5))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("4"), "{message}");
        assert!(message.contains("broken"), "{message}");
    }

    #[test]
    fn garbage_output_is_rejected() {
        let err = parse_output(b"Installed packages:\nfoo 1.0\n").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
        assert!(err.to_string().contains("Installed packages"), "{err}");
    }

    #[test]
    fn wrong_field_type_names_field() {
        let cases: [(&str, &str); 6] = [
            (r#"{}"#, "\"packages\""),
            (r#"{"packages":{}}"#, "\"packages\""),
            (r#"{"packages":[7]}"#, "\"packages[0]\""),
            (
                r#"{"packages":[{"name":"a","version":"1"},{"name":"b","version":2}]}"#,
                "\"packages[1].version\"",
            ),
            (
                r#"{"packages":[{"name":"","version":"1"}]}"#,
                "\"packages[0].name\"",
            ),
            (
                r#"{"packages":[],"reboot_pending":"yes"}"#,
                "\"reboot_pending\"",
            ),
        ];
        for (output, field) in cases {
            let err = parse_output(output.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(field), "{output}: {err}");
        }
    }
}
