//! Circuit relay v2 settings: the limits a relay server applies, and which
//! of its listened addresses it announces to the peers that reserve a slot.

use std::net::IpAddr;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{relay, Multiaddr};

use crate::config::RelayConfig;

/// Builds the relay server configuration for `config`. Rate limits stay at
/// the libp2p defaults, per peer and per IP. The circuit limits are small
/// because circuits carry gossip, sync requests and reports, never chunks.
// NOTE: libp2p-relay 0.22 counts a peer's own reservation when the peer
// renews it, so a relay at `max_reservations` denies renewals too (read in
// its source, not tested here). A node behind a relay that a flood keeps
// full loses its slot at its first renewal, 45 minutes after reserving with
// the default one-hour reservations, and then retries against the flood.
pub fn server_config(config: &RelayConfig) -> relay::Config {
    relay::Config {
        max_reservations: config.max_reservations,
        max_circuits: config.max_circuits,
        max_circuit_duration: Duration::from_secs(config.max_circuit_secs.min(u64::from(u32::MAX))),
        max_circuit_bytes: config.max_circuit_bytes,
        ..relay::Config::default()
    }
}

/// Whether a relay server announces `listened` as its external address.
/// The relay hands these to the peers that reserve a slot, and they
/// announce circuits through them, so a loopback address is announced only
/// when every configured listen address is loopback (a test on one host).
/// An unspecified address (`0.0.0.0`) is never announced: the swarm reports
/// each interface address separately.
pub fn announces(listened: &Multiaddr, configured: &[String]) -> bool {
    let Some(ip) = first_ip(listened) else {
        return false;
    };
    if ip.is_unspecified() {
        return false;
    }
    if !ip.is_loopback() {
        return true;
    }
    configured.iter().all(|text| {
        text.parse::<Multiaddr>()
            .ok()
            .and_then(|addr| first_ip(&addr))
            .is_some_and(|ip| ip.is_loopback())
    })
}

/// Parses a configured relay address, which must name the relay's peer id
/// last (`.../p2p/PEER`) so a circuit through it can be addressed.
pub fn parse_relay_addr(text: &str) -> anyhow::Result<Multiaddr> {
    let addr: Multiaddr = text
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid relay address {text:?}: {e}"))?;
    if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        anyhow::bail!(
            "relay address {text:?} does not end in /p2p/PEER; append the relay's peer id \
             from its listen.addrs file"
        );
    }
    Ok(addr)
}

fn first_ip(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn loopback_is_announced_only_on_a_loopback_node() {
        let all = vec!["/ip4/0.0.0.0/udp/4001/quic-v1".to_string()];
        let local = vec!["/ip4/127.0.0.1/udp/0/quic-v1".to_string()];
        assert!(!announces(&at("/ip4/127.0.0.1/udp/4001/quic-v1"), &all));
        assert!(announces(&at("/ip4/10.1.0.5/udp/4001/quic-v1"), &all));
        assert!(announces(&at("/ip4/127.0.0.1/udp/4001/quic-v1"), &local));
        assert!(!announces(&at("/ip4/0.0.0.0/udp/4001/quic-v1"), &all));
    }

    #[test]
    fn relay_address_needs_a_peer_id() {
        let err = parse_relay_addr("/ip4/10.1.0.5/udp/4001/quic-v1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/p2p/PEER"), "{err}");
        assert!(parse_relay_addr("not an address").is_err());
        let ok = "/ip4/10.1.0.5/udp/4001/quic-v1/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5F6TGCZeJ6DyK8tQfDD";
        assert!(parse_relay_addr(ok).is_ok());
    }

    #[test]
    fn server_limits_come_from_the_config() {
        let config = RelayConfig {
            max_circuit_secs: 30,
            max_circuit_bytes: 4096,
            ..RelayConfig::default()
        };
        let server = server_config(&config);
        assert_eq!(server.max_circuit_duration, Duration::from_secs(30));
        assert_eq!(server.max_circuit_bytes, 4096);
    }
}
