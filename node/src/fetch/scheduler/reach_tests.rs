//! WAN duty follows reachability: only members that can reach another site
//! take part in the ranking, and a member that gains or loses its outside
//! link joins or leaves it while a download runs.

use super::tests::{all, chunks};
use super::*;

/// Remote peer holding every chunk.
const REMOTE: u32 = 99;

fn key(member: u32) -> Vec<u8> {
    vec![member as u8; 4]
}

fn config(wan: bool) -> SchedulerConfig {
    SchedulerConfig {
        requests_per_peer: 64,
        stall_secs: 10.0,
        idle_takeover_secs: 30.0,
        wan,
        ..SchedulerConfig::default()
    }
}

/// Member 0 of a site with same-site peers `others` (each a WAN member when
/// its flag is set) and the remote peer.
fn site(n: usize, local_wan: bool, others: &[(u32, bool)]) -> Scheduler<u32> {
    let mut scheduler = Scheduler::new(0u32, key(0), chunks(n), &[], config(local_wan), 0.0);
    for &(peer, wan) in others {
        scheduler.add_peer(peer, true, wan.then(|| key(peer)));
    }
    scheduler.add_peer(REMOTE, false, None);
    scheduler.set_have(&REMOTE, all(n));
    scheduler
}

fn cross_site(requests: &[Request<u32>]) -> usize {
    requests.iter().filter(|r| r.cross_site).count()
}

#[test]
fn gateway_fetches_everything_at_once() {
    // A gateway with three site members that cannot reach other sites: no
    // member ranks above it, so it takes every chunk without a stall wait.
    let mut gateway = site(32, true, &[(1, false), (2, false), (3, false)]);
    let requests = gateway.next_requests(0.0);
    assert_eq!(cross_site(&requests), 32);
}

#[test]
fn member_losing_wan_hands_over_its_chunks() {
    let mut scheduler = site(32, true, &[(1, true)]);
    let mine = scheduler.next_requests(0.0);
    assert!(!mine.is_empty(), "this node fetched nothing");
    assert!(mine.len() < 32, "this node took the other member's chunks");

    // The other member loses its outside link: its chunks fall to this
    // node at the next call, long before a stall would hand them over.
    scheduler.set_wan_member(&1, None);
    let rest = scheduler.next_requests(1.0);
    assert_eq!(cross_site(&rest), 32 - mine.len());
}

#[test]
fn member_gaining_wan_takes_its_share() {
    let mut scheduler = site(32, true, &[(1, false)]);
    scheduler.set_wan_member(&1, Some(key(1)));
    let mine = scheduler.next_requests(0.0);
    assert!(!mine.is_empty(), "this node fetched nothing");
    assert!(
        mine.len() < 32,
        "this node took the new member's chunks too"
    );
}

#[test]
fn node_without_wan_fetches_nothing_across() {
    let mut scheduler = site(16, false, &[]);
    assert!(!scheduler.local_wan());
    assert_eq!(cross_site(&scheduler.next_requests(0.0)), 0);

    scheduler.set_local_wan(true);
    assert!(scheduler.local_wan());
    assert_eq!(cross_site(&scheduler.next_requests(1.0)), 16);
}

#[test]
fn node_losing_wan_stops_fetching_across() {
    let mut scheduler = site(16, true, &[]);
    let first = scheduler.next_requests(0.0);
    for request in first.iter().take(4) {
        scheduler.on_failed(&request.peer, request.index);
    }
    scheduler.set_local_wan(false);
    assert_eq!(cross_site(&scheduler.next_requests(1.0)), 0);
}

#[test]
fn wan_flag_of_other_site_peers_is_ignored() {
    // Only same-site peers rank; a remote peer named a member changes
    // nothing, so this node still fetches every chunk.
    let mut scheduler = site(16, true, &[]);
    scheduler.set_wan_member(&REMOTE, Some(key(REMOTE)));
    assert_eq!(cross_site(&scheduler.next_requests(0.0)), 16);
}

#[test]
fn each_chunk_crosses_once_after_membership_changes() {
    // Three members, and member 2 loses its outside link before anything is
    // fetched. Members 0 and 1, each informed of it, split every chunk
    // between them and fetch none twice.
    let n = 64;
    let mut crossings = vec![0usize; n];
    for me in [0u32, 1] {
        let mut scheduler = Scheduler::new(me, key(me), chunks(n), &[], config(true), 0.0);
        for other in [0u32, 1, 2] {
            if other != me {
                scheduler.add_peer(other, true, Some(key(other)));
            }
        }
        scheduler.set_wan_member(&2, None);
        scheduler.add_peer(REMOTE, false, None);
        scheduler.set_have(&REMOTE, all(n));
        for request in scheduler.next_requests(0.0) {
            crossings[request.index] += 1;
        }
    }
    assert!(crossings.iter().all(|&c| c == 1), "{crossings:?}");
}
