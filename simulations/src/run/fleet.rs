//! The discrete-event fleet model: sites, links, gossip and one
//! [`Scheduler`] per node.
//!
//! Each node runs the node's own chunk scheduler. The model feeds it what
//! the agent would: peers of its site with their rendezvous keys, the HQ
//! publisher as a cross-site peer, peers' chunk maps on a 500 ms poll (as
//! the agent polls), chunk arrivals, missing chunks and failures, and time.
//! Transfers are flows on processor-sharing links: a same-site transfer
//! shares the sender's LAN port, and a transfer from HQ shares the office's
//! WAN link, whose capacity is the office's max-min share of the HQ uplink.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use patchmesh_node::fetch::{Scheduler, SchedulerConfig};
use patchmesh_protocol::wire::bitmap;
use patchmesh_protocol::Hash;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::link::{max_min_shares, Key, Link};

/// Node id of the publisher, the only node of the HQ site.
pub const PUBLISHER: u32 = 0;
/// Seconds between two chunk-map polls of a downloading node, as the agent.
const HAVE_POLL_SECS: f64 = 0.5;
/// One-way latency inside a site, in seconds.
const LAN_LATENCY_SECS: f64 = 0.0005;
/// Bytes of the gossiped policy with the manifest it names (an estimate:
/// a signed policy of about 1 KiB plus 32 bytes per chunk hash).
const METADATA_BASE_BYTES: u64 = 1536;
/// Bytes of one signed status report (an estimate from the report fields).
const REPORT_BYTES: u64 = 400;
/// Gossip mesh: same-site neighbours each node picks, and the publisher's
/// number of office neighbours.
const MESH_SAME_SITE: usize = 5;
const MESH_PUBLISHER: usize = 12;

/// Model inputs.
#[derive(Clone, Debug)]
pub struct Params {
    pub offices: usize,
    pub nodes_per_office: usize,
    pub patch_bytes: u64,
    pub chunk_bytes: u64,
    /// Office WAN link, bytes per second, each direction.
    pub wan_bps: f64,
    /// HQ uplink, bytes per second.
    pub hq_bps: f64,
    /// LAN port of each node, bytes per second.
    pub lan_bps: f64,
    /// WAN one-way latency in seconds.
    pub wan_latency_secs: f64,
    /// Packet loss fraction on WAN links.
    // NOTE: loss only scales WAN goodput; retransmission delays and the
    // congestion window's reaction to loss are not modelled.
    pub loss: f64,
    /// Fraction of office nodes offline at the start, and another fraction
    /// that goes offline during the run.
    pub churn: f64,
    /// Offices whose WAN link is down from `cut_at_secs` for `cut_secs`.
    pub cut_offices: usize,
    pub cut_at_secs: f64,
    pub cut_secs: f64,
    pub seed: u64,
    pub scheduler: SchedulerConfig,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Time each node held the whole patch, publisher first.
    pub completed: Vec<Option<f64>>,
    /// Time each node held the policy.
    pub policy_at: Vec<Option<f64>>,
    /// Bytes that crossed each office's WAN link inward (chunks, partial
    /// chunks of cancelled transfers, and metadata).
    pub wan_bytes_in: Vec<u64>,
    /// Metadata bytes on WAN links, both directions: policy gossip and
    /// reports forwarded by site observers to HQ.
    pub metadata_wan_bytes: u64,
    /// Chunk requests sent, and those answered over the WAN.
    pub requests: u64,
    pub wan_requests: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The policy reaches a node.
    Policy(u32),
    /// A node polls its peers' chunk maps; the epoch drops polls of an
    /// earlier session.
    Poll(u32, u32),
    /// A request reaches its server.
    Request(u64),
    /// A link may have a finished flow.
    Wake(usize, u64),
    /// The answer to a request reaches the requester.
    Answer(u64),
    Down(u32),
    Up(u32),
    Cut(u32, bool),
}

/// State of a chunk request: unanswered, or the answer the server gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Pending,
    Chunk,
    Missing,
    Failed,
}

#[derive(Clone, Debug)]
struct Flow {
    server: u32,
    client: u32,
    index: u32,
    epoch: u32,
    cross_site: bool,
    link: Option<usize>,
    finish: f64,
    outcome: Reply,
}

struct Node {
    office: Option<usize>,
    key: Vec<u8>,
    online: bool,
    epoch: u32,
    have: Vec<u8>,
    held: usize,
    scheduler: Option<Scheduler<u32>>,
    mesh: Vec<u32>,
    /// When `have` last gained a chunk, and when this node last polled:
    /// a poll skips chunk maps that did not change since the last one.
    changed_at: f64,
    polled_at: f64,
}

/// The simulation state.
pub struct Fleet {
    params: Params,
    chunks: Vec<Hash>,
    nodes: Vec<Node>,
    /// Members of each office.
    members: Vec<Vec<u32>>,
    links: Vec<Link>,
    cut: Vec<bool>,
    flows: Vec<Flow>,
    live: BTreeSet<u64>,
    queue: BinaryHeap<Reverse<(Key, u64, Event)>>,
    sequence: u64,
    now: f64,
    rng: StdRng,
    out: Outcome,
}

impl Fleet {
    /// Builds the fleet: nodes, gossip mesh, links and churn and cut events.
    pub fn new(params: Params) -> Self {
        let mut rng = StdRng::seed_from_u64(params.seed);
        let count = params.patch_bytes.div_ceil(params.chunk_bytes) as usize;
        let chunks: Vec<Hash> = (0..count)
            .map(|i| Hash::of(format!("patch chunk {i}").as_bytes()))
            .collect();
        let empty = bitmap::from_fn(count, |_| false);

        let mut nodes = vec![Node {
            office: None,
            key: b"publisher".to_vec(),
            online: true,
            epoch: 0,
            have: bitmap::from_fn(count, |_| true),
            held: count,
            scheduler: None,
            mesh: Vec::new(),
            changed_at: 0.0,
            polled_at: f64::NEG_INFINITY,
        }];
        let mut members = vec![Vec::new(); params.offices];
        for (office, site) in members.iter_mut().enumerate() {
            for _ in 0..params.nodes_per_office {
                let id = nodes.len() as u32;
                site.push(id);
                nodes.push(Node {
                    office: Some(office),
                    key: format!("node-{id}").into_bytes(),
                    online: true,
                    epoch: 0,
                    have: empty.clone(),
                    held: 0,
                    scheduler: None,
                    mesh: Vec::new(),
                    changed_at: 0.0,
                    polled_at: f64::NEG_INFINITY,
                });
            }
        }

        // Gossip mesh, undirected: same-site neighbours, one neighbour in
        // another office, and the publisher's office neighbours.
        let total = nodes.len() as u32;
        let mut edges = Vec::new();
        for (office, site) in members.iter().enumerate() {
            for &node in site {
                let picks = site.choose_multiple(&mut rng, MESH_SAME_SITE + 1);
                edges.extend(
                    picks
                        .filter(|&&m| m != node)
                        .take(MESH_SAME_SITE)
                        .map(|&m| (node, m)),
                );
                if params.offices > 1 {
                    let other = loop {
                        let candidate = rng.gen_range(1..total);
                        if nodes[candidate as usize].office != Some(office) {
                            break candidate;
                        }
                    };
                    edges.push((node, other));
                }
            }
        }
        for _ in 0..MESH_PUBLISHER.min(total as usize - 1) {
            edges.push((PUBLISHER, rng.gen_range(1..total)));
        }
        for (a, b) in edges {
            if !nodes[a as usize].mesh.contains(&b) {
                nodes[a as usize].mesh.push(b);
                nodes[b as usize].mesh.push(a);
            }
        }

        let wan = params.wan_bps * (1.0 - params.loss);
        let mut links: Vec<Link> = (0..params.offices).map(|_| Link::new(wan)).collect();
        links.extend((0..nodes.len()).map(|_| Link::new(params.lan_bps)));

        let mut fleet = Fleet {
            chunks,
            members,
            links,
            cut: vec![false; params.offices],
            flows: Vec::new(),
            live: BTreeSet::new(),
            queue: BinaryHeap::new(),
            sequence: 0,
            now: 0.0,
            out: Outcome {
                completed: vec![None; nodes.len()],
                policy_at: vec![None; nodes.len()],
                wan_bytes_in: vec![0; params.offices],
                metadata_wan_bytes: 0,
                requests: 0,
                wan_requests: 0,
            },
            nodes,
            rng,
            params,
        };
        fleet.out.completed[PUBLISHER as usize] = Some(0.0);
        fleet.plan_churn_and_cuts();
        fleet
    }

    fn plan_churn_and_cuts(&mut self) {
        let horizon = self.params.patch_bytes as f64 / self.params.wan_bps;
        let offline = (self.params.churn * (self.nodes.len() - 1) as f64).round() as usize;
        let mut order: Vec<u32> = (1..self.nodes.len() as u32).collect();
        order.shuffle(&mut self.rng);
        // Nodes offline at the start come back within one transfer time.
        for &node in order.iter().take(offline) {
            self.nodes[node as usize].online = false;
            let back = self.rng.gen_range(0.0..horizon);
            self.push(back, Event::Up(node));
        }
        // Others leave during the transfer and return 30-120 s later.
        for &node in order.iter().skip(offline).take(offline) {
            let leave = self.rng.gen_range(0.0..horizon);
            let away = self.rng.gen_range(30.0..120.0);
            self.push(leave, Event::Down(node));
            self.push(leave + away, Event::Up(node));
        }
        for office in 0..self.params.cut_offices.min(self.params.offices) {
            let at = self.params.cut_at_secs;
            self.push(at, Event::Cut(office as u32, true));
            self.push(at + self.params.cut_secs, Event::Cut(office as u32, false));
        }
    }

    fn push(&mut self, at: f64, event: Event) {
        self.sequence += 1;
        self.queue.push(Reverse((Key(at), self.sequence, event)));
    }

    fn site(&self, node: u32) -> Option<usize> {
        self.nodes[node as usize].office
    }

    fn one_way(&self, a: u32, b: u32) -> f64 {
        if self.site(a) == self.site(b) {
            LAN_LATENCY_SECS
        } else {
            self.params.wan_latency_secs
        }
    }

    fn metadata_bytes(&self) -> u64 {
        METADATA_BASE_BYTES + 32 * self.chunks.len() as u64
    }

    /// Runs until every node holds the patch or `limit_secs` passes.
    pub fn run(mut self, limit_secs: f64) -> Outcome {
        self.push(0.0, Event::Policy(PUBLISHER));
        while let Some(Reverse((Key(at), _, event))) = self.queue.pop() {
            if at > limit_secs || self.out.completed.iter().all(Option::is_some) {
                break;
            }
            self.now = at;
            match event {
                Event::Policy(node) => self.on_policy(node),
                Event::Poll(node, epoch) => self.on_poll(node, epoch),
                Event::Request(flow) => self.on_request(flow),
                Event::Wake(link, generation) => self.on_wake(link, generation),
                Event::Answer(flow) => self.on_answer(flow),
                Event::Down(node) => self.on_down(node),
                Event::Up(node) => self.on_up(node),
                Event::Cut(office, on) => self.on_cut(office as usize, on),
            }
        }
        self.out
    }

    fn on_policy(&mut self, node: u32) {
        let index = node as usize;
        if !self.nodes[index].online || self.out.policy_at[index].is_some() {
            return;
        }
        self.out.policy_at[index] = Some(self.now);

        // Forward to mesh neighbours, as gossipsub does to its mesh.
        let size = self.metadata_bytes();
        let mesh = self.nodes[index].mesh.clone();
        for peer in mesh {
            let mut at = self.now + self.one_way(node, peer);
            if let Some(office) = self
                .site(peer)
                .filter(|_| self.site(peer) != self.site(node))
            {
                self.out.wan_bytes_in[office] += size;
                self.out.metadata_wan_bytes += size;
                at += size as f64 / self.params.wan_bps;
            }
            if let Some(office) = self
                .site(node)
                .filter(|_| self.site(peer) != self.site(node))
            {
                // Leaving a cut office waits for the link too.
                if self.cut[office] {
                    at = at.max(self.params.cut_at_secs + self.params.cut_secs);
                }
            }
            if let Some(office) = self.site(peer) {
                if self.cut[office] && self.site(peer) != self.site(node) {
                    at = at.max(self.params.cut_at_secs + self.params.cut_secs);
                }
            }
            self.push(at, Event::Policy(peer));
        }
        self.report(node);
        if node != PUBLISHER {
            self.start_download(node);
        }
    }

    /// A status report to the site's observer, forwarded by it to HQ.
    fn report(&mut self, node: u32) {
        if self.site(node).is_some() {
            self.out.metadata_wan_bytes += REPORT_BYTES;
        }
    }

    fn start_download(&mut self, node: u32) {
        let index = node as usize;
        let Some(office) = self.site(node) else {
            return;
        };
        let held: Vec<bool> = (0..self.chunks.len())
            .map(|i| bitmap::get(&self.nodes[index].have, i))
            .collect();
        let mut scheduler = Scheduler::new(
            node,
            self.nodes[index].key.clone(),
            self.chunks.clone(),
            &held,
            self.params.scheduler.clone(),
            self.now,
        );
        for &member in &self.members[office] {
            let peer = &self.nodes[member as usize];
            if member != node && peer.online {
                scheduler.add_peer(member, true, Some(peer.key.clone()));
            }
        }
        scheduler.add_peer(PUBLISHER, false, None);
        scheduler.set_have(&PUBLISHER, self.nodes[0].have.clone());
        self.nodes[index].scheduler = Some(scheduler);
        self.nodes[index].polled_at = f64::NEG_INFINITY;
        let epoch = self.nodes[index].epoch;
        self.push(self.now, Event::Poll(node, epoch));
    }

    fn on_poll(&mut self, node: u32, epoch: u32) {
        let index = node as usize;
        let state = &self.nodes[index];
        if !state.online || state.epoch != epoch || state.scheduler.is_none() {
            return;
        }
        if self.out.completed[index].is_some() {
            return;
        }
        let office = state.office.expect("only office nodes download");
        // A chunk-map answer also says whether the member has WAN requests
        // in flight, as the agent's answers do.
        let polled_at = state.polled_at;
        let maps: Vec<(u32, Option<Vec<u8>>, bool)> = self.members[office]
            .iter()
            .filter(|&&m| m != node && self.nodes[m as usize].online)
            .map(|&m| {
                let member = &self.nodes[m as usize];
                let fetching = member
                    .scheduler
                    .as_ref()
                    .is_some_and(Scheduler::fetching_cross_site);
                let have = (member.changed_at >= polled_at).then(|| member.have.clone());
                (m, have, fetching)
            })
            .collect();
        self.nodes[index].polled_at = self.now;
        let scheduler = self.nodes[index].scheduler.as_mut().expect("checked above");
        for (member, have, fetching) in maps {
            if let Some(have) = have {
                scheduler.set_have(&member, have);
            }
            scheduler.set_fetching(&member, fetching);
        }
        for (peer, chunk) in scheduler.expired(self.now) {
            scheduler.on_failed(&peer, chunk);
        }
        self.send_requests(node);
        self.push(self.now + HAVE_POLL_SECS, Event::Poll(node, epoch));
    }

    fn send_requests(&mut self, node: u32) {
        let index = node as usize;
        let now = self.now;
        let Some(scheduler) = self.nodes[index].scheduler.as_mut() else {
            return;
        };
        let requests = scheduler.next_requests(now);
        let epoch = self.nodes[index].epoch;
        for request in requests {
            let id = self.flows.len() as u64;
            self.flows.push(Flow {
                server: request.peer,
                client: node,
                index: request.index as u32,
                epoch,
                cross_site: request.cross_site,
                link: None,
                finish: 0.0,
                outcome: Reply::Pending,
            });
            self.live.insert(id);
            self.out.requests += 1;
            let at = now + self.one_way(node, request.peer);
            self.push(at, Event::Request(id));
        }
    }

    fn on_request(&mut self, id: u64) {
        let flow = self.flows[id as usize].clone();
        if flow.outcome != Reply::Pending {
            return;
        }
        let server = &self.nodes[flow.server as usize];
        if !server.online {
            return self.answer(id, Reply::Failed);
        }
        if !bitmap::get(&server.have, flow.index as usize) {
            return self.answer(id, Reply::Missing);
        }
        let link = match self.site(flow.client) {
            Some(office) if flow.cross_site => office,
            _ => self.params.offices + flow.server as usize,
        };
        let was_idle = self.links[link].active() == 0;
        let finish = self.links[link].start(self.now, id, self.params.chunk_bytes as f64);
        self.flows[id as usize].link = Some(link);
        self.flows[id as usize].finish = finish;
        if flow.cross_site {
            self.out.wan_requests += 1;
            if was_idle {
                self.share_hq_uplink();
            }
        }
        self.wake(link);
    }

    fn wake(&mut self, link: usize) {
        if let Some(at) = self.links[link].next_finish() {
            let generation = self.links[link].generation;
            self.push(at.max(self.now), Event::Wake(link, generation));
        }
    }

    fn on_wake(&mut self, link: usize, generation: u64) {
        if self.links[link].generation != generation {
            return;
        }
        let mut finished = Vec::new();
        while let Some(id) = self.links[link].pop_finished(self.now) {
            if self.flows[id as usize].outcome == Reply::Pending {
                self.links[link].finish();
                finished.push(id);
            }
        }
        for id in finished {
            if link < self.params.offices {
                self.out.wan_bytes_in[link] += self.params.chunk_bytes;
            }
            self.answer(id, Reply::Chunk);
        }
        if link < self.params.offices && self.links[link].active() == 0 {
            self.share_hq_uplink();
        }
        self.wake(link);
    }

    /// Settles a request and sends the answer back after one latency.
    fn answer(&mut self, id: u64, outcome: Reply) {
        let flow = &mut self.flows[id as usize];
        flow.outcome = outcome;
        let (client, server) = (flow.client, flow.server);
        let at = self.now + self.one_way(client, server);
        self.push(at, Event::Answer(id));
    }

    fn on_answer(&mut self, id: u64) {
        self.live.remove(&id);
        let flow = self.flows[id as usize].clone();
        let index = flow.client as usize;
        let node = &mut self.nodes[index];
        if !node.online || node.epoch != flow.epoch {
            return;
        }
        let Some(scheduler) = node.scheduler.as_mut() else {
            return;
        };
        let chunk = flow.index as usize;
        match flow.outcome {
            Reply::Chunk => {
                scheduler.on_chunk(&flow.server, chunk);
                if !bitmap::get(&node.have, chunk) {
                    node.have[chunk / 8] |= 1 << (chunk % 8);
                    node.held += 1;
                    node.changed_at = self.now;
                }
            }
            Reply::Missing => scheduler.on_missing(&flow.server, chunk),
            Reply::Failed | Reply::Pending => scheduler.on_failed(&flow.server, chunk),
        }
        if node.held == self.chunks.len() {
            if self.out.completed[index].is_none() {
                self.out.completed[index] = Some(self.now);
                self.report(flow.client);
            }
            return;
        }
        self.send_requests(flow.client);
    }

    /// Gives every office with WAN flows its max-min share of the HQ
    /// uplink, capped by its own link.
    fn share_hq_uplink(&mut self) {
        let wan = self.params.wan_bps * (1.0 - self.params.loss);
        let demands: Vec<f64> = (0..self.params.offices)
            .map(|office| {
                if self.cut[office] || self.links[office].active() == 0 {
                    0.0
                } else {
                    wan
                }
            })
            .collect();
        let shares = max_min_shares(self.params.hq_bps, &demands);
        for office in 0..self.params.offices {
            let capacity = if self.cut[office] {
                0.0
            } else if demands[office] > 0.0 {
                shares[office]
            } else {
                wan
            };
            if self.links[office].capacity() != capacity {
                self.links[office].set_capacity(self.now, capacity);
                self.wake(office);
            }
        }
    }

    fn on_cut(&mut self, office: usize, on: bool) {
        self.cut[office] = on;
        self.share_hq_uplink();
    }

    fn on_down(&mut self, node: u32) {
        let index = node as usize;
        if !self.nodes[index].online {
            return;
        }
        self.nodes[index].online = false;
        self.nodes[index].epoch += 1;
        self.nodes[index].scheduler = None;

        // Transfers from or to the node stop; partial WAN bytes count.
        let touching: Vec<u64> = self
            .live
            .iter()
            .copied()
            .filter(|&id| {
                let flow = &self.flows[id as usize];
                flow.outcome == Reply::Pending && (flow.server == node || flow.client == node)
            })
            .collect();
        for id in touching {
            let flow = self.flows[id as usize].clone();
            if let Some(link) = flow.link {
                let bytes = self.params.chunk_bytes as f64;
                let got = self.links[link].progress(self.now, flow.finish, bytes);
                self.links[link].cancel(self.now);
                if link < self.params.offices {
                    self.out.wan_bytes_in[link] += got as u64;
                }
                self.wake(link);
            }
            self.answer(id, Reply::Failed);
        }
        self.share_hq_uplink();

        // Site members forget it.
        if let Some(office) = self.site(node) {
            for member in self.members[office].clone() {
                if let Some(scheduler) = self.nodes[member as usize].scheduler.as_mut() {
                    scheduler.remove_peer(&node);
                }
            }
        }
    }

    fn on_up(&mut self, node: u32) {
        let index = node as usize;
        if self.nodes[index].online {
            return;
        }
        self.nodes[index].online = true;
        self.nodes[index].epoch += 1;
        // Members learn its chunk map at their next poll.
        self.nodes[index].changed_at = self.now;
        let Some(office) = self.site(node) else {
            return;
        };
        let key = self.nodes[index].key.clone();
        for member in self.members[office].clone() {
            if member == node || !self.nodes[member as usize].online {
                continue;
            }
            if let Some(scheduler) = self.nodes[member as usize].scheduler.as_mut() {
                scheduler.add_peer(node, true, Some(key.clone()));
            }
        }

        // Anti-entropy on connect: the policy comes from a site member that
        // holds it, else from HQ; a download resumes from held chunks.
        if self.out.policy_at[index].is_some() {
            self.start_download(node);
            return;
        }
        let from_site = self.members[office]
            .iter()
            .any(|&m| self.nodes[m as usize].online && self.out.policy_at[m as usize].is_some());
        let at = if from_site {
            self.now + 2.0 * LAN_LATENCY_SECS
        } else {
            let size = self.metadata_bytes();
            self.out.wan_bytes_in[office] += size;
            self.out.metadata_wan_bytes += size;
            self.now + 2.0 * self.params.wan_latency_secs
        };
        self.push(at, Event::Policy(node));
    }
}
