//! Dialing bootstrap peers again while the node is not connected to them.
//!
//! Bootstrap addresses are dialed once at start. A bootstrap peer that
//! restarts, or that was down when this node started, would otherwise stay
//! unconnected until some other peer introduced it, and objects published
//! on either side meanwhile would wait for that. A connection starts an
//! anti-entropy exchange both ways at once, so reconnecting is enough.

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId};

use super::Agent;

/// Pause between checks while every bootstrap peer is connected, and the
/// step by which the pause grows after each round that found one
/// unconnected. The pause grows linearly, not exponentially, so a peer
/// back after a short outage is found within seconds.
const PAUSE_STEP: Duration = Duration::from_secs(2);

/// Maximum pause between redial rounds while a bootstrap peer stays
/// unreachable.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// When the next redial round is due, and the pause after it.
#[derive(Debug)]
pub(super) struct BootstrapRedial {
    next_at: Instant,
    pause: Duration,
}

impl Default for BootstrapRedial {
    fn default() -> Self {
        BootstrapRedial {
            next_at: Instant::now() + PAUSE_STEP,
            pause: PAUSE_STEP,
        }
    }
}

/// Returns the peer id at the end of `addr`, if it names one.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|part| match part {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

impl Agent {
    /// Dials every configured bootstrap peer that is neither connected nor
    /// blocked. Rounds are 2 s apart while all are connected; the pause grows
    /// by 2 s per round that found one unconnected, up to 30 s.
    pub(super) fn maybe_redial_bootstrap(&mut self) {
        let now = Instant::now();
        if now < self.bootstrap_redial.next_at {
            return;
        }
        let mut unconnected = 0;
        for text in &self.config.bootstrap {
            let Ok(addr) = text.parse::<Multiaddr>() else {
                continue;
            };
            let Some(peer) = peer_of(&addr) else {
                continue;
            };
            if peer == self.local || self.blocked.contains(&peer) || self.swarm.is_connected(&peer)
            {
                continue;
            }
            unconnected += 1;
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => tracing::debug!(peer = %peer, %addr, "dialing bootstrap peer again"),
                Err(e) => {
                    tracing::debug!(peer = %peer, %addr, error = %e, "bootstrap redial skipped")
                }
            }
        }
        let redial = &mut self.bootstrap_redial;
        if unconnected == 0 {
            redial.pause = PAUSE_STEP;
        } else {
            redial.pause = (redial.pause + PAUSE_STEP).min(MAX_PAUSE);
        }
        redial.next_at = now + redial.pause;
    }
}
