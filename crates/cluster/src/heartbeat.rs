//! The active controller's view of broker liveness (Kafka's `BrokerHeartbeatManager` and
//! `BrokerHeartbeatTracker`), sans I/O: registrations and heartbeats come in with the time they
//! arrived, clock ticks ask which unfenced brokers missed their session
//! (`broker.session.timeout.ms`), and the answer is the fencing to carry out. Soft state, as in
//! Kafka: a new active controller starts with every session fresh, so no broker is fenced for a
//! silence the previous controller saw.

use std::collections::BTreeMap;

/// Kafka's `broker.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 9_000;
/// Kafka's `broker.heartbeat.interval.ms` default.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    broker_epoch: i64,
    last_contact_ms: u64,
    fenced: bool,
    metadata_offset: i64,
    /// Heard from this incarnation (registration or heartbeat) rather than carried over from
    /// the log when this controller activated: only then is its session a valid one that
    /// makes another incarnation a duplicate (Kafka's separate `BrokerHeartbeatTracker`).
    heard: bool,
}

/// What the tracker asks the controller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// This incarnation missed its session: fence it (records from
    /// [`crate::broker_lifecycle::fence_stale`]).
    Fence { node_id: i32, broker_epoch: i64 },
}

/// Sessions of registered brokers, by node id.
#[derive(Debug, Clone)]
pub struct HeartbeatTracker {
    session_timeout_ms: u64,
    sessions: BTreeMap<i32, Session>,
}

impl HeartbeatTracker {
    pub fn new(session_timeout_ms: u64) -> HeartbeatTracker {
        HeartbeatTracker {
            session_timeout_ms,
            sessions: BTreeMap::new(),
        }
    }

    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    /// A registration was committed for `node_id` at `broker_epoch` (a new incarnation
    /// replaces the old session; an amended one keeps its contact time fresh).
    pub fn register(&mut self, node_id: i32, broker_epoch: i64, fenced: bool, now_ms: u64) {
        self.sessions.insert(
            node_id,
            Session {
                broker_epoch,
                last_contact_ms: now_ms,
                fenced,
                metadata_offset: -1,
                heard: true,
            },
        );
    }

    /// A controller activated with `node_id` registered in its image: the session runs from
    /// now, so a silent broker is fenced a session later, but it is not one that makes a new
    /// incarnation of the node a duplicate until the broker is heard from.
    pub fn carry_over(&mut self, node_id: i32, broker_epoch: i64, fenced: bool, now_ms: u64) {
        self.sessions.insert(
            node_id,
            Session {
                broker_epoch,
                last_contact_ms: now_ms,
                fenced,
                metadata_offset: -1,
                heard: false,
            },
        );
    }

    /// A heartbeat of the registered incarnation was processed; `fenced` is the state it left
    /// the broker in. A heartbeat of another epoch changes nothing (the controller refused it).
    pub fn touch(
        &mut self,
        node_id: i32,
        broker_epoch: i64,
        fenced: bool,
        metadata_offset: i64,
        now_ms: u64,
    ) {
        if let Some(s) = self
            .sessions
            .get_mut(&node_id)
            .filter(|s| s.broker_epoch == broker_epoch)
        {
            s.last_contact_ms = s.last_contact_ms.max(now_ms);
            s.heard = true;
            s.fenced = fenced;
            s.metadata_offset = metadata_offset;
        }
    }

    /// The broker was fenced or unfenced other than by its own heartbeat.
    pub fn set_fenced(&mut self, node_id: i32, fenced: bool) {
        if let Some(s) = self.sessions.get_mut(&node_id) {
            s.fenced = fenced;
        }
    }

    /// The broker epoch of `node_id`'s session, if it has one.
    pub fn epoch(&self, node_id: i32) -> Option<i64> {
        self.sessions.get(&node_id).map(|s| s.broker_epoch)
    }

    /// The broker unregistered.
    pub fn remove(&mut self, node_id: i32) {
        self.sessions.remove(&node_id);
    }

    /// Kafka's `hasValidSession`: the incarnation at `broker_epoch` heard from within the
    /// session timeout (fenced or not).
    pub fn has_valid_session(&self, node_id: i32, broker_epoch: i64, now_ms: u64) -> bool {
        self.sessions
            .get(&node_id)
            .is_some_and(|s| s.heard && s.broker_epoch == broker_epoch && !self.expired(s, now_ms))
    }

    fn expired(&self, session: &Session, now_ms: u64) -> bool {
        now_ms.saturating_sub(session.last_contact_ms) >= self.session_timeout_ms
    }

    /// Kafka's `maybeRemoveExpired`, for every broker at once: unfenced brokers whose last
    /// contact is a session timeout or more ago. They are marked fenced here so one silence
    /// yields one fencing; the controller commits the records.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Fencing> {
        let timeout = self.session_timeout_ms;
        let mut out = Vec::new();
        for (node_id, s) in &mut self.sessions {
            if !s.fenced && now_ms.saturating_sub(s.last_contact_ms) >= timeout {
                s.fenced = true;
                out.push(Fencing::Fence {
                    node_id: *node_id,
                    broker_epoch: s.broker_epoch,
                });
            }
        }
        out
    }

    /// The lowest metadata offset any unfenced broker reported (Kafka's `lowestActiveOffset`).
    pub fn lowest_active_offset(&self) -> Option<i64> {
        self.sessions
            .values()
            .filter(|s| !s.fenced)
            .map(|s| s.metadata_offset)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves an unfenced broker is fenced exactly once when its session runs out, and not
    // before; heartbeats keep it alive.
    #[test]
    fn silence_of_a_session_fences_once() {
        let mut t = HeartbeatTracker::new(SESSION_TIMEOUT_MS_DEFAULT);
        t.register(1, 10, true, 0);
        t.touch(1, 10, false, 10, 1_000);
        assert!(t.tick(9_999).is_empty());
        t.touch(1, 10, false, 10, 9_000);
        assert!(t.tick(17_999).is_empty());
        assert_eq!(
            t.tick(18_000),
            [Fencing::Fence {
                node_id: 1,
                broker_epoch: 10
            }]
        );
        assert!(t.tick(30_000).is_empty(), "fenced once");
        assert!(!t.has_valid_session(1, 10, 30_000));
    }

    // A fenced broker that keeps heartbeating keeps a valid session (a new incarnation is then
    // a duplicate registration), but is never "fenced again".
    #[test]
    fn fenced_broker_keeps_a_session_while_heartbeating() {
        let mut t = HeartbeatTracker::new(1_000);
        t.register(2, 5, true, 0);
        assert!(t.tick(5_000).is_empty());
        t.touch(2, 5, true, -1, 5_000);
        assert!(t.has_valid_session(2, 5, 5_500));
        assert!(!t.has_valid_session(2, 4, 5_500), "another epoch");
        assert!(!t.has_valid_session(2, 5, 6_000));
    }

    // Heartbeats of a stale epoch, or from the past, do not extend a session.
    #[test]
    fn stale_heartbeats_do_not_extend_a_session() {
        let mut t = HeartbeatTracker::new(1_000);
        t.register(3, 7, false, 100);
        t.touch(3, 6, false, 0, 900);
        t.touch(3, 7, false, 0, 50);
        assert_eq!(t.tick(1_100).len(), 1);
    }

    // A session carried over from the log at activation expires like any other but is no
    // valid session until the broker is heard from.
    #[test]
    fn carried_over_sessions_expire_but_do_not_block_a_new_incarnation() {
        let mut t = HeartbeatTracker::new(1_000);
        t.carry_over(4, 3, false, 0);
        assert!(!t.has_valid_session(4, 3, 10));
        t.touch(4, 3, false, 9, 500);
        assert!(t.has_valid_session(4, 3, 600));
        t.carry_over(5, 8, false, 0);
        assert_eq!(
            t.tick(1_000),
            [Fencing::Fence {
                node_id: 5,
                broker_epoch: 8
            }]
        );
    }

    // A new incarnation replaces the session; unregistering forgets it.
    #[test]
    fn registration_replaces_and_remove_forgets() {
        let mut t = HeartbeatTracker::new(1_000);
        t.register(1, 1, false, 0);
        t.register(1, 9, true, 500);
        assert!(t.tick(2_000).is_empty(), "the new incarnation is fenced");
        assert!(!t.has_valid_session(1, 1, 600));
        t.remove(1);
        assert!(!t.has_valid_session(1, 9, 600));
        assert_eq!(t.lowest_active_offset(), None);
    }
}
