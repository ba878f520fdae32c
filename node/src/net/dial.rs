//! Dial policy: the addresses a node may dial, and a transport wrapper that
//! enforces it for every dial the swarm makes. That covers peer exchange,
//! mDNS, relay circuits and the direct dials of hole punching, whose
//! addresses a remote peer chooses.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, Transport};

/// Whether the node may dial `addr`: every IP in it (a relay circuit names
/// the relay's) must be loopback or inside one of `ranges`. Addresses
/// without an IP, such as DNS names, are never dialed.
pub fn dial_allowed(addr: &Multiaddr, ranges: &[String]) -> bool {
    let ips = ips_of(addr);
    !ips.is_empty()
        && ips
            .iter()
            .all(|ip| ip.is_loopback() || ranges.iter().any(|range| in_range(*ip, range)))
}

fn ips_of(addr: &Multiaddr) -> Vec<IpAddr> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        })
        .collect()
}

/// Whether `ip` lies in `range`, written `A.B.C.D/N` or `ADDR/N`.
fn in_range(ip: IpAddr, range: &str) -> bool {
    let Some((base, bits)) = range.split_once('/') else {
        return false;
    };
    let (Ok(base), Ok(bits)) = (base.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

/// The addresses the swarm may dial: loopback, the configured dial ranges,
/// and the hosts of the configured bootstrap and relay addresses, which the
/// admin named one by one.
#[derive(Clone, Debug, Default)]
pub struct DialPolicy {
    /// CIDR ranges, as in the `dial_ranges` config.
    pub ranges: Vec<String>,
    /// Single hosts, as `/32` or `/128` ranges.
    pub hosts: Vec<String>,
}

impl DialPolicy {
    /// Builds the policy for `ranges` plus the hosts of the configured
    /// addresses in `named`. Unparsable entries add nothing.
    pub fn new<'a>(ranges: &[String], named: impl IntoIterator<Item = &'a String>) -> Self {
        let mut hosts = Vec::new();
        for text in named {
            if let Ok(addr) = text.parse::<Multiaddr>() {
                for ip in ips_of(&addr) {
                    let bits = if ip.is_ipv4() { 32 } else { 128 };
                    hosts.push(format!("{ip}/{bits}"));
                }
            }
        }
        DialPolicy {
            ranges: ranges.to_vec(),
            hosts,
        }
    }

    /// Whether the swarm may dial `addr`.
    pub fn allows(&self, addr: &Multiaddr) -> bool {
        let ips = ips_of(addr);
        !ips.is_empty()
            && ips.iter().all(|ip| {
                ip.is_loopback()
                    || self
                        .ranges
                        .iter()
                        .chain(&self.hosts)
                        .any(|range| in_range(*ip, range))
            })
    }
}

/// A transport that rejects dials to addresses its [`DialPolicy`] does not
/// allow, and passes everything else to the inner transport. Listening is
/// not affected.
pub struct DialGuard<T> {
    inner: T,
    policy: DialPolicy,
}

impl<T> DialGuard<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, policy: DialPolicy) -> Self {
        DialGuard { inner, policy }
    }
}

impl<T> Transport for DialGuard<T>
where
    T: Transport<Error = io::Error> + Unpin,
{
    type Output = T::Output;
    type Error = io::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        if !self.policy.allows(&addr) {
            tracing::debug!(address = %addr, "dial rejected: address outside the dial ranges");
            return Err(TransportError::Other(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "dial to {addr} rejected: it is not loopback, not a bootstrap or relay \
                     host, and not inside a configured dial range (add one with --dial-range)"
                ),
            )));
        }
        self.inner.dial(addr, opts)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_always_allowed() {
        let addr: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        assert!(dial_allowed(&addr, &[]));
    }

    #[test]
    fn other_hosts_need_a_range() {
        let addr: Multiaddr = "/ip4/10.20.1.5/tcp/4001".parse().unwrap();
        assert!(!dial_allowed(&addr, &[]));
        assert!(dial_allowed(&addr, &["10.20.0.0/16".into()]));
        assert!(!dial_allowed(&addr, &["10.21.0.0/16".into()]));
    }

    #[test]
    fn dns_addresses_are_never_dialed() {
        let addr: Multiaddr = "/dns4/example.org/tcp/4001".parse().unwrap();
        assert!(!dial_allowed(&addr, &["0.0.0.0/0".into()]));
    }

    #[test]
    fn circuit_addresses_follow_the_relay_host() {
        let circuit: Multiaddr = "/ip4/10.20.1.5/udp/4001/quic-v1/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5F6TGCZeJ6DyK8tQfDD/p2p-circuit"
            .parse()
            .unwrap();
        assert!(dial_allowed(&circuit, &["10.20.0.0/16".into()]));
        assert!(!dial_allowed(&circuit, &["10.21.0.0/16".into()]));
    }

    #[test]
    fn every_ip_of_an_address_must_be_allowed() {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1/ip4/192.0.2.7/tcp/2".parse().unwrap();
        assert!(!dial_allowed(&addr, &[]));
    }

    #[test]
    fn policy_allows_named_hosts_only() {
        let bootstrap =
            "/ip4/192.0.2.7/udp/4001/quic-v1/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5F6TGCZeJ6DyK8tQfDD"
                .to_string();
        let policy = DialPolicy::new(&["10.20.0.0/16".into()], [&bootstrap]);
        let at = |text: &str| text.parse::<Multiaddr>().unwrap();
        assert!(policy.allows(&at("/ip4/192.0.2.7/tcp/4001")));
        assert!(!policy.allows(&at("/ip4/192.0.2.8/tcp/4001")));
        assert!(policy.allows(&at("/ip4/10.20.3.4/tcp/4001")));
        assert!(policy.allows(&at("/ip4/127.0.0.1/tcp/4001")));
        assert!(!policy.allows(&at("/dns4/example.org/tcp/4001")));
    }
}
