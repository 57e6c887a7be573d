//! The shovels' side of the loop: their outbound sockets on the same `Poll` (non-blocking
//! connect, tokens from `SHOVEL_TOKEN_BASE`, two per shovel), bytes between each socket and
//! its `client::Client`, and the shovels' lifecycle: static ones from the config, dynamic ones
//! following the broker's `shovel` parameters, retried after their reconnect-delay, deleted
//! when src-delete-after is reached. `shovel::Shovel` holds the protocol logic.
//!
//! Federation links are shovels too (`Shovel::federation_link`): one per federated exchange
//! and upstream, following the broker's federation generation and parameters; the binding
//! changes the broker recorded are handed to their links each turn (at most
//! `FEDERATION_BINDING_EVENTS_PER_TURN_MAX`), and each link sends at most
//! `FEDERATION_BINDS_PER_TURN_MAX` binds or unbinds upstream per turn.
//!
//! Per turn each shovel with work gets one pass: the destination's input first (confirms),
//! then the source's, at most `SHOVEL_MESSAGES_PER_TURN_MAX` deliveries and
//! `SHOVEL_READ_BYTES_PER_TURN_MAX` bytes, and none while the destination has
//! `SHOVEL_OUTPUT_HIGH_BYTES` unsent; then both outputs are written.

use crate::broker::federation::BindingChange;
use crate::broker::Broker;
use crate::client::uri::Target;
use crate::definitions::federation::{
    parse_upstream, parse_upstream_set, with_overrides, FederationTarget, UpstreamSpec,
    UPSTREAM_COMPONENT, UPSTREAM_SET_COMPONENT,
};
use crate::definitions::shovel::parse_shovel;
use crate::limits::{
    FEDERATION_BINDING_EVENTS_MAX, FEDERATION_BINDING_EVENTS_PER_TURN_MAX,
    FEDERATION_BINDS_PER_TURN_MAX, FEDERATION_LINKS_MAX, SHOVEL_MESSAGES_PER_TURN_MAX,
    SHOVEL_OUTPUT_HIGH_BYTES, SHOVEL_READ_BYTES_PER_TURN_MAX,
};
use crate::net::resolver::{self, Lookup, Progress, Started};
use crate::shovel::federation::FedLink;
use crate::shovel::{Kind, Shovel, ShovelList, DEST, SRC};
use log::{info, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// First shovel socket token: below the HTTP side's, far above any AMQP connection's.
pub(super) const SHOVEL_TOKEN_BASE: usize = 1 << 39;

struct Sock {
    stream: TcpStream,
    /// Input not taken by the client yet (a partial frame, or deliveries past the turn's
    /// share).
    input: Vec<u8>,
    readable: bool,
    writable: bool,
    /// The non-blocking connect completed.
    connected: bool,
    eof: bool,
}

/// A remote end whose host name is being looked up (DNS over UDP, on the side's token).
struct Resolving {
    lookup: Lookup,
    port: u16,
    readable: bool,
}

struct Entry {
    shovel: Shovel,
    socks: [Option<Sock>; 2],
    lookups: [Option<Resolving>; 2],
    queued: bool,
}

pub(super) struct ShovelSide {
    entries: Slab<Entry>,
    /// Dynamic shovels by (vhost, name).
    dynamic: HashMap<(String, String), usize>,
    /// Shovels with work this turn.
    work: Vec<usize>,
    /// Dynamic shovels the API asked to restart, acted on at the next turn.
    restarts: Vec<usize>,
    /// The broker's parameters generation last followed.
    generation: Option<u64>,
    /// Federation links by (vhost, exchange, upstream), with the spec each runs.
    links: HashMap<(String, String, String), (usize, UpstreamSpec)>,
    /// The links of each federated exchange, by (vhost, exchange).
    by_exchange: HashMap<(String, String), Vec<usize>>,
    /// The (parameters, federation) generations the links last followed.
    federation_generation: Option<(u64, u64)>,
    /// Binding changes were left in the broker, or listings are being taken in, for the
    /// next turn (the loop must not sleep).
    events_left: bool,
    /// Links taking in a listing of their exchange (`BindingSync::relist_some`).
    relisting: Vec<usize>,
    /// Where `amqp://` ends connect: this broker's AMQP listener.
    local: Option<SocketAddr>,
    node: &'static str,
}

fn token(key: usize, side: usize) -> Token {
    Token(SHOVEL_TOKEN_BASE + key * 2 + side)
}

impl ShovelList for ShovelSide {
    fn each(&self, f: &mut dyn FnMut(&Shovel)) {
        for (_, e) in self.entries.iter() {
            f(&e.shovel);
        }
    }

    fn restart(&mut self, vhost: &str, name: &str) -> bool {
        let Some(&key) = self.dynamic.get(&(vhost.to_owned(), name.to_owned())) else {
            return false;
        };
        self.request_restart(key);
        true
    }

    fn restart_link(&mut self, id: &str) -> bool {
        let Some(key) = self
            .entries
            .iter()
            .find(|(_, e)| e.shovel.federation.as_ref().is_some_and(|f| f.id == id))
            .map(|(k, _)| k)
        else {
            return false;
        };
        self.request_restart(key);
        true
    }
}

impl ShovelSide {
    pub(super) fn new(
        statics: &[(String, crate::definitions::shovel::ShovelSpec)],
        local: Option<SocketAddr>,
        node: &'static str,
    ) -> Self {
        // A wildcard listener is reached on loopback, where the internal login is accepted.
        let local = local.map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            a
        });
        let mut side = ShovelSide {
            entries: Slab::new(),
            dynamic: HashMap::new(),
            work: Vec::new(),
            restarts: Vec::new(),
            generation: None,
            links: HashMap::new(),
            by_exchange: HashMap::new(),
            federation_generation: None,
            events_left: false,
            relisting: Vec::new(),
            local,
            node,
        };
        for (name, spec) in statics {
            let s = Shovel::new(
                name,
                "/",
                Kind::Static,
                spec.clone(),
                serde_json::Value::Null,
                node,
            );
            side.entries.insert(Entry {
                shovel: s,
                socks: [None, None],
                lookups: [None, None],
                queued: false,
            });
        }
        side
    }

    pub(super) fn busy(&self) -> bool {
        !self.work.is_empty() || self.events_left
    }

    /// Takes an event for a token at or above `SHOVEL_TOKEN_BASE`.
    pub(super) fn on_event(&mut self, t: usize, ev: &mio::event::Event) {
        let (key, side) = ((t - SHOVEL_TOKEN_BASE) / 2, (t - SHOVEL_TOKEN_BASE) % 2);
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(r) = e.lookups[side].as_mut() {
            r.readable = true;
        }
        let Some(s) = e.socks[side].as_mut() else {
            if e.lookups[side].is_some() && !e.queued {
                e.queued = true;
                self.work.push(key);
            }
            return;
        };
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            s.readable = true;
        }
        if ev.is_writable() || ev.is_error() {
            s.writable = true;
        }
        if !e.queued {
            e.queued = true;
            self.work.push(key);
        }
    }

    /// Follows the broker's shovel parameters: starts new ones, stops deleted or changed
    /// ones (a changed one starts again with its new definition).
    fn follow_parameters(&mut self, broker: &Broker, registry: &Registry) {
        if self.generation == Some(broker.parameters_generation()) {
            return;
        }
        self.generation = Some(broker.parameters_generation());
        let gone: Vec<(String, String)> = self
            .dynamic
            .iter()
            .filter(|((v, n), &key)| {
                broker.shovel_parameter(v, n) != self.entries.get(key).map(|e| &e.shovel.value)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(key) = self.dynamic.remove(&k) {
                let mut e = self.entries.remove(key);
                e.shovel.stop("shovel deleted");
                close_socks(&mut e, registry);
            }
        }
        for (v, n, value) in broker.shovel_parameters() {
            let k = (v.to_owned(), n.to_owned());
            if self.dynamic.contains_key(&k) {
                continue;
            }
            let spec = match parse_shovel(n, value) {
                Ok(s) => s,
                Err(e) => {
                    warn!("shovel '{n}' in vhost '{v}': invalid definition: {e}");
                    continue;
                }
            };
            let s = Shovel::new(n, v, Kind::Dynamic, spec, value.clone(), self.node);
            let key = self.entries.insert(Entry {
                shovel: s,
                socks: [None, None],
                lookups: [None, None],
                queued: true,
            });
            self.work.push(key);
            self.dynamic.insert(k, key);
        }
    }

    fn request_restart(&mut self, key: usize) {
        // At most one request per shovel: the list is bounded by the shovels.
        if !self.restarts.contains(&key) {
            self.restarts.push(key);
        }
    }

    /// Stops the shovels and links the API asked to restart (their connections closed, what
    /// was in flight requeued by the source). A shovel starts again from its definition, as a
    /// new one: status starting, a new timestamp, src-delete-after counted afresh. A link
    /// starts its next attempt at once, syncing its bindings as after any failure.
    fn restart_requested(&mut self, now: Instant, registry: &Registry) {
        for key in std::mem::take(&mut self.restarts) {
            let Some(e) = self.entries.get_mut(key) else {
                continue;
            };
            if e.shovel.federation.is_some() {
                info!("{}: restarted", e.shovel.what());
                e.shovel.restart_now("restarted", now);
                close_socks(e, registry);
                if !e.queued {
                    e.queued = true;
                    self.work.push(key);
                }
                continue;
            }
            e.shovel.stop("restarted");
            close_socks(e, registry);
            let old = &e.shovel;
            info!("shovel '{}' in vhost '{}': restarted", old.name, old.vhost);
            e.shovel = Shovel::new(
                &old.name,
                &old.vhost,
                old.kind,
                old.spec.clone(),
                old.value.clone(),
                self.node,
            );
            if !e.queued {
                e.queued = true;
                self.work.push(key);
            }
        }
    }

    /// The links each federated exchange should have: (vhost, exchange, upstream) → spec.
    fn wanted_links(broker: &Broker) -> HashMap<(String, String, String), UpstreamSpec> {
        let mut wanted = HashMap::new();
        for x in broker.federated_exchanges() {
            let upstreams: Vec<(String, Result<UpstreamSpec, String>)> = match &x.target {
                FederationTarget::Upstream(u) => broker
                    .parameter(UPSTREAM_COMPONENT, &x.vhost, u)
                    .map(|v| (u.clone(), parse_upstream(u, v)))
                    .into_iter()
                    .collect(),
                FederationTarget::Set(all) if all == "all" => broker
                    .parameters_of(UPSTREAM_COMPONENT)
                    .filter(|(v, _, _)| *v == x.vhost)
                    .map(|(_, u, val)| (u.to_owned(), parse_upstream(u, val)))
                    .collect(),
                FederationTarget::Set(set) => broker
                    .parameter(UPSTREAM_SET_COMPONENT, &x.vhost, set)
                    .and_then(|v| parse_upstream_set(set, v).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|e| {
                        let up = broker.parameter(UPSTREAM_COMPONENT, &x.vhost, &e.upstream)?;
                        Some((
                            e.upstream.clone(),
                            with_overrides(&e.upstream, up, &e.overrides),
                        ))
                    })
                    .collect(),
            };
            for (u, spec) in upstreams {
                match spec {
                    Ok(spec) => {
                        wanted.insert((x.vhost.clone(), x.name.clone(), u), spec);
                    }
                    Err(e) => warn!(
                        "federation of exchange '{}' in vhost '{}': upstream '{u}' is invalid: {}",
                        x.name,
                        x.vhost,
                        e.trim_end()
                    ),
                }
            }
        }
        wanted
    }

    /// Follows the federated exchanges and their upstreams: stops the links no longer
    /// wanted or whose upstream changed (deleting the upstream queue of a removed one),
    /// starts the new ones with the exchange's bindings listed.
    fn follow_federation(&mut self, broker: &Broker, registry: &Registry) {
        let now_gen = (
            broker.parameters_generation(),
            broker.federation_generation(),
        );
        if self.federation_generation == Some(now_gen) {
            return;
        }
        self.federation_generation = Some(now_gen);
        let wanted = Self::wanted_links(broker);
        let gone: Vec<(String, String, String)> = self
            .links
            .iter()
            .filter(|(k, (_, spec))| wanted.get(*k) != Some(spec))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some((key, _)) = self.links.remove(&k) {
                let mut e = self.entries.remove(key);
                if !wanted.contains_key(&k) {
                    e.shovel.delete_upstream_queue();
                }
                e.shovel.stop("federation link removed");
                close_socks(&mut e, registry);
            }
        }
        for (k, spec) in wanted {
            if self.links.contains_key(&k) {
                continue;
            }
            if self.links.len() >= FEDERATION_LINKS_MAX {
                warn!(
                    "federation of exchange '{}' in vhost '{}' from '{}': not started, {} links already (FEDERATION_LINKS_MAX)",
                    k.1, k.0, k.2, FEDERATION_LINKS_MAX
                );
                continue;
            }
            let keys = broker.exchange_binding_keys(&k.0, &k.1).unwrap_or_default();
            let link = FedLink::new(&k.0, &k.1, &k.2, spec.clone(), keys, self.node);
            let key = self.entries.insert(Entry {
                shovel: Shovel::federation_link(link),
                socks: [None, None],
                lookups: [None, None],
                queued: true,
            });
            self.work.push(key);
            self.relisting.push(key);
            self.links.insert(k, (key, spec));
        }
        self.by_exchange.clear();
        for ((v, x, _), (key, _)) in &self.links {
            self.by_exchange
                .entry((v.clone(), x.clone()))
                .or_default()
                .push(*key);
        }
    }

    /// Takes in the links' listings a bounded number of keys a turn, then (once none is
    /// left) hands the broker's binding changes to the links of their exchanges. Returns
    /// false when listings or changes are left for the next turn (new links then wait: their
    /// listing of the bindings would count the changes still queued twice).
    fn take_binding_changes(&mut self, broker: &mut Broker) -> bool {
        // Listings first, FEDERATION_BINDING_EVENTS_PER_TURN_MAX keys a turn over all links;
        // the changes made since wait in the broker until every listing is taken in.
        let mut budget = FEDERATION_BINDING_EVENTS_PER_TURN_MAX;
        let (entries, work) = (&mut self.entries, &mut self.work);
        self.relisting.retain(|&key| {
            let Some(e) = entries.get_mut(key) else {
                return false;
            };
            let Some(f) = e.shovel.federation.as_mut() else {
                return false;
            };
            let (used, more) = f.sync.relist_some(budget);
            budget -= used.min(budget);
            if !more && !e.queued {
                e.queued = true;
                work.push(key);
            }
            more
        });
        if !self.relisting.is_empty() {
            self.events_left = true;
            return false;
        }
        let events = broker.take_federation_events(FEDERATION_BINDING_EVENTS_PER_TURN_MAX);
        self.events_left = broker.federation_events_pending();
        for ev in events {
            let k = (ev.vhost, ev.exchange);
            let Some(keys) = self.by_exchange.get(&k) else {
                continue;
            };
            let started = matches!(ev.change, BindingChange::Resync).then(Instant::now);
            let mut listed = match ev.change {
                BindingChange::Resync => broker.exchange_binding_keys(&k.0, &k.1),
                _ => None,
            };
            let listed_len = listed.as_ref().map(Vec::len);
            for (i, &key) in keys.iter().enumerate() {
                let Some(e) = self.entries.get_mut(key) else {
                    continue;
                };
                let Some(f) = e.shovel.federation.as_mut() else {
                    continue;
                };
                match &ev.change {
                    BindingChange::Added(b) => f.sync.added(b.clone()),
                    BindingChange::Removed(b) => f.sync.removed(b.clone()),
                    BindingChange::Resync => {
                        // The last link takes the listing, the others a copy.
                        let mine = if i + 1 == keys.len() {
                            listed.take()
                        } else {
                            listed.clone()
                        };
                        f.sync.reset(mine.unwrap_or_default());
                        self.relisting.push(key);
                    }
                }
                if !e.queued {
                    e.queued = true;
                    self.work.push(key);
                }
            }
            if let (Some(n), Some(started)) = (listed_len, started) {
                info!(
                    "federation of exchange '{}' in vhost '{}': more than {} binding changes waiting (FEDERATION_BINDING_EVENTS_MAX), its {} bindings listed again for {} links in {} µs (taken in over the next turns)",
                    k.1,
                    k.0,
                    FEDERATION_BINDING_EVENTS_MAX,
                    n,
                    keys.len(),
                    started.elapsed().as_micros()
                );
            }
        }
        !self.events_left
    }

    /// One pass over the shovels with work; `buf` is the loop's read buffer.
    pub(super) fn turn(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        registry: &Registry,
        broker: &mut Broker,
    ) {
        self.follow_parameters(broker, registry);
        self.restart_requested(now, registry);
        if self.take_binding_changes(broker) {
            self.follow_federation(broker, registry);
        }
        let list = std::mem::take(&mut self.work);
        for key in list {
            let Some(e) = self.entries.get_mut(key) else {
                continue;
            };
            e.queued = false;
            e.shovel.taken_this_turn = 0;
            if e.shovel.due_to_start(now) {
                start(e, key, now, self.local, registry);
            }
            resolve(e, key, now, registry);
            let binds_left = e.shovel.sync_bindings(FEDERATION_BINDS_PER_TURN_MAX);
            let again = pass(e, now, buf) || binds_left;
            if e.shovel.is_down() {
                close_socks(e, registry);
            }
            if e.shovel.completed() {
                let (v, n) = (e.shovel.vhost.clone(), e.shovel.name.clone());
                info!(
                    "shovel '{n}' in vhost '{v}': src-delete-after reached after {} messages",
                    e.shovel.moved
                );
                e.shovel.stop("completed");
                pass(e, now, buf);
                close_socks(e, registry);
                if e.shovel.kind == Kind::Dynamic {
                    broker.delete_shovel_parameter(&v, &n);
                }
            } else if again && !e.queued {
                e.queued = true;
                self.work.push(key);
            }
        }
    }

    /// Once a second: heartbeats, setup deadlines, retries that are due.
    pub(super) fn tick(&mut self, now: Instant, registry: &Registry) {
        for (key, e) in self.entries.iter_mut() {
            if !e.shovel.tick(now) {
                close_socks(e, registry);
            }
            let late = e
                .lookups
                .iter()
                .flatten()
                .any(|r| now >= r.lookup.deadline());
            let due = late || e.shovel.due_to_start(now);
            let output = e
                .shovel
                .links
                .iter()
                .flatten()
                .any(|l| l.client.pending() > 0);
            if (due || output) && !e.queued {
                e.queued = true;
                self.work.push(key);
            }
        }
    }

    /// Shutdown: every shovel closes its connections (best effort, no retry).
    pub(super) fn stop_all(&mut self, now: Instant, buf: &mut [u8], registry: &Registry) {
        for (_, e) in self.entries.iter_mut() {
            e.shovel.stop("shutdown");
            pass(e, now, buf);
            close_socks(e, registry);
        }
    }
}

/// Starts an attempt: both clients and their sockets connecting.
fn start(e: &mut Entry, key: usize, now: Instant, local: Option<SocketAddr>, registry: &Registry) {
    if let Err(err) = e.shovel.start(now) {
        e.shovel.fail(err, now);
        return;
    }
    for side in [SRC, DEST] {
        let Some(link) = e.shovel.links[side].as_mut() else {
            continue;
        };
        let addr = match &link.uri.target {
            Target::Local => {
                link.use_internal_login(now);
                local.ok_or_else(|| "amqp:// needs coney's AMQP listener".to_owned())
            }
            Target::Remote { host, port } => match resolver::start(host, now) {
                Started::Ready(ip) => Ok(SocketAddr::new(ip, *port)),
                Started::Failed(err) => Err(err),
                Started::Pending(mut lookup) => {
                    let port = *port;
                    if let Err(err) =
                        registry.register(lookup.socket(), token(key, side), Interest::READABLE)
                    {
                        e.shovel.fail(format!("register: {err}"), now);
                        return;
                    }
                    e.lookups[side] = Some(Resolving {
                        lookup,
                        port,
                        readable: true,
                    });
                    continue;
                }
            },
        };
        if !connect(e, key, side, addr, now, registry) {
            return;
        }
    }
}

/// Moves the host-name lookups on (an answer arrived, or a try's time is up); an address
/// found starts that side's connect.
fn resolve(e: &mut Entry, key: usize, now: Instant, registry: &Registry) {
    for side in [SRC, DEST] {
        let Some(r) = e.lookups[side].as_mut() else {
            continue;
        };
        let progress = if std::mem::take(&mut r.readable) {
            match r.lookup.readable(now) {
                Progress::Pending => r.lookup.timer(now),
                done => done,
            }
        } else {
            r.lookup.timer(now)
        };
        let addr = match progress {
            Progress::Pending => continue,
            Progress::Ready(ip) => Ok(SocketAddr::new(ip, r.port)),
            Progress::Failed(err) => Err(err),
        };
        if let Some(mut r) = e.lookups[side].take() {
            let _ = registry.deregister(r.lookup.socket());
        }
        if !connect(e, key, side, addr, now, registry) {
            return;
        }
    }
}

/// Starts one side's non-blocking connect to `addr`; false (the shovel failed) if it could
/// not.
fn connect(
    e: &mut Entry,
    key: usize,
    side: usize,
    addr: Result<SocketAddr, String>,
    now: Instant,
    registry: &Registry,
) -> bool {
    let stream = addr.and_then(|a| TcpStream::connect(a).map_err(|err| format!("{a}: {err}")));
    let mut stream = match stream {
        Ok(s) => s,
        Err(err) => {
            e.shovel.fail(format!("{}: {err}", which(side)), now);
            return false;
        }
    };
    if let Err(err) = registry.register(
        &mut stream,
        token(key, side),
        Interest::READABLE | Interest::WRITABLE,
    ) {
        e.shovel.fail(format!("register: {err}"), now);
        return false;
    }
    let _ = stream.set_nodelay(true);
    e.socks[side] = Some(Sock {
        stream,
        input: Vec::new(),
        readable: false,
        writable: false,
        connected: false,
        eof: false,
    });
    true
}

/// Deregisters and drops a shovel's sockets after writing what they hold (a close, best
/// effort); the shovel forgets its clients.
fn close_socks(e: &mut Entry, registry: &Registry) {
    for side in [SRC, DEST] {
        if let (Some(s), Some(l)) = (e.socks[side].as_mut(), e.shovel.links[side].as_mut()) {
            if s.connected {
                let out = l.client.output();
                if let Ok(n) = s.stream.write(out) {
                    out.drain(..n);
                }
            }
        }
        if let Some(mut s) = e.socks[side].take() {
            let _ = registry.deregister(&mut s.stream);
        }
        if let Some(mut r) = e.lookups[side].take() {
            let _ = registry.deregister(r.lookup.socket());
        }
    }
    e.shovel.drop_links();
}

fn which(side: usize) -> &'static str {
    if side == SRC {
        "source"
    } else {
        "destination"
    }
}

/// Reads, feeds the clients, writes. Returns whether work is left that no event announces.
fn pass(e: &mut Entry, now: Instant, buf: &mut [u8]) -> bool {
    let mut again = false;
    for side in [DEST, SRC] {
        match read_side(e, side, now, buf) {
            Ok(held) => again |= held,
            Err(reason) => {
                // An empty reason: the shovel already failed while taking the input.
                if !reason.is_empty() && !e.shovel.is_down() {
                    e.shovel.fail(reason, now);
                }
                return false;
            }
        }
    }
    for side in [SRC, DEST] {
        if let Err(reason) = write_side(e, side, now) {
            e.shovel.fail(reason, now);
            return false;
        }
    }
    // Writing the destination may have made room for the source's held input.
    let src_held = e.socks[SRC]
        .as_ref()
        .is_some_and(|s| s.readable || !s.input.is_empty());
    again
        || (src_held
            && e.shovel
                .source_may_read(SHOVEL_OUTPUT_HIGH_BYTES, SHOVEL_MESSAGES_PER_TURN_MAX))
}

/// Completes a connect, then takes one side's kept input and reads its socket, within the
/// turn's bounds. Ok(true) when input is held back by this turn's bound (not by the
/// destination's output, whose writable event resumes the pass); Err ends the attempt.
fn read_side(e: &mut Entry, side: usize, now: Instant, buf: &mut [u8]) -> Result<bool, String> {
    let Some(s) = e.socks[side].as_mut() else {
        return Ok(false);
    };
    if !s.connected && s.writable {
        match s.stream.take_error() {
            Ok(None) if s.stream.peer_addr().is_ok() => {
                s.connected = true;
                if let (DEST, Some(f), Ok(local), Ok(peer)) = (
                    side,
                    e.shovel.federation.as_mut(),
                    s.stream.local_addr(),
                    s.stream.peer_addr(),
                ) {
                    f.local_connection = Some(format!("{local} -> {peer}"));
                }
            }
            Ok(Some(err)) | Err(err) => return Err(format!("{}: {err}", which(side))),
            Ok(None) => {}
        }
    }
    if !s.connected {
        return Ok(false);
    }
    let may = |sh: &Shovel| {
        side == DEST || sh.source_may_read(SHOVEL_OUTPUT_HIGH_BYTES, SHOVEL_MESSAGES_PER_TURN_MAX)
    };
    // Input kept from an earlier turn first, then the socket.
    let mut read = 0;
    loop {
        if !s.input.is_empty() && may(&e.shovel) {
            let used = e
                .shovel
                .input(side, &s.input, now, SHOVEL_MESSAGES_PER_TURN_MAX);
            s.input.drain(..used.min(s.input.len()));
        }
        if e.shovel.links[side].is_none() || e.shovel.is_down() {
            return Err(String::new());
        }
        if !s.readable || read >= SHOVEL_READ_BYTES_PER_TURN_MAX || !may(&e.shovel) {
            break;
        }
        match s.stream.read(buf) {
            Ok(0) => {
                s.readable = false;
                s.eof = true;
            }
            Ok(n) => {
                read += n;
                s.input.extend_from_slice(&buf[..n]);
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => s.readable = false,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("{}: read: {err}", which(side))),
        }
        if s.eof && s.input.is_empty() {
            break;
        }
    }
    if s.eof {
        return Err(format!("{} closed the connection", which(side)));
    }
    let held = s.readable || !s.input.is_empty();
    let dest_has_room = e.shovel.links[DEST]
        .as_ref()
        .is_some_and(|l| l.client.pending() < SHOVEL_OUTPUT_HIGH_BYTES);
    Ok(held && (side == DEST || dest_has_room))
}

/// Writes one side's output until the socket would block.
fn write_side(e: &mut Entry, side: usize, now: Instant) -> Result<(), String> {
    let (Some(s), Some(l)) = (e.socks[side].as_mut(), e.shovel.links[side].as_mut()) else {
        return Ok(());
    };
    if !s.connected || !s.writable {
        return Ok(());
    }
    let mut wrote = false;
    let out = l.client.output();
    while !out.is_empty() {
        match s.stream.write(out) {
            Ok(n) => {
                out.drain(..n);
                wrote = true;
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                s.writable = false;
                break;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("{}: write: {err}", which(side))),
        }
    }
    if wrote {
        l.client.sent(now);
    }
    Ok(())
}
