//! HTTP client for a node's control API (`http://127.0.0.1:PORT`).
//!
//! Every non-2xx reply becomes an error carrying the node's own `error`
//! message; a node that cannot be reached gives an error that names the URL.

use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Time allowed to open a connection to the node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for one whole request, including a 4 MiB chunk upload.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to one node's control API.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// Client for the control API at `url`, which must be `http://…`.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("invalid --node \"{url}\" (expected the control API URL, such as http://127.0.0.1:7300)");
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build();
        Ok(Client { base, agent })
    }

    /// Base URL of the node.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` and decodes the JSON reply.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let reply = self.agent.get(&url).call();
        self.decode("GET", &url, reply)
    }

    /// `POST path` with raw bytes and decodes the JSON reply.
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let reply = self
            .agent
            .post(&url)
            .set("content-type", "application/octet-stream")
            .send_bytes(body);
        self.decode("POST", &url, reply)
    }

    /// `PUT path` with raw bytes and decodes the JSON reply.
    pub fn put_bytes(&self, path: &str, body: &[u8]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let reply = self
            .agent
            .put(&url)
            .set("content-type", "application/octet-stream")
            .send_bytes(body);
        self.decode("PUT", &url, reply)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        reply: Result<ureq::Response, ureq::Error>,
    ) -> anyhow::Result<T> {
        match reply {
            Ok(response) => response.into_json().map_err(|e| {
                anyhow!("{method} {url}: the node's reply is not the expected JSON: {e}")
            }),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                Err(anyhow!(
                    "{method} {url}: node replied {status}: {}",
                    error_message(&text)
                ))
            }
            Err(ureq::Error::Transport(transport)) => Err(anyhow!(
                "cannot reach node at \"{}\": {transport} (check that patchmesh-node runs and \
                 that --node is the URL in its control.url file)",
                self.base
            )),
        }
    }
}

/// Extracts the `error` field of a JSON error reply, or returns the raw text.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|value| {
            value
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                "no error message".to_string()
            } else {
                trimmed.chars().take(500).collect()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_json_field() {
        assert_eq!(error_message(r#"{"error":"bad chunk"}"#), "bad chunk");
        assert_eq!(error_message("plain text\n"), "plain text");
        assert_eq!(error_message(""), "no error message");
    }

    #[test]
    fn rejects_non_http_url() {
        let err = Client::new("127.0.0.1:7300").err().expect("rejected");
        assert!(err.to_string().contains("\"127.0.0.1:7300\""), "{err}");
    }
}
