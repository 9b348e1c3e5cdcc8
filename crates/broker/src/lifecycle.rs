//! Broker lifecycle as KRaft runs it, both sides.
//!
//! Controller side ([`Liveness`], [`register`], [`heartbeat`], [`unregister`],
//! [`fence_expired`]): what BrokerRegistration, BrokerHeartbeat and UnregisterBroker do on the
//! active controller. The decisions are the engine's (`runnel_cluster::broker_lifecycle`);
//! heartbeat sessions are the sans-IO `HeartbeatTracker`'s; this module feeds both the clock
//! and commits through the metadata driver.
//!
//! Broker side ([`BrokerLifecycle`]): a broker registers with a new incarnation at startup,
//! heartbeats every `broker.heartbeat.interval.ms`, asks to be unfenced once its metadata has
//! caught up with its registration, and on SIGTERM asks for a controlled shutdown (its
//! leaderships move away) before it closes. A node without voters is its own controller and
//! talks to it in process ([`InProcess`]), through the same functions the handlers call, so
//! fencing works the same as over the wire.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runnel_cluster::broker_lifecycle::{self as engine, Heartbeat, HeartbeatReply, Registration};
use runnel_cluster::heartbeat::{Fencing, HeartbeatTracker};
use runnel_cluster::metadata::BrokerListener;
use runnel_cluster::{ClusterError, Command};
use uuid::Uuid;

use crate::state::Broker;

/// The controller's heartbeat sessions (soft state, as Kafka's: a new active controller
/// starts every session fresh).
pub struct Liveness {
    tracker: Mutex<HeartbeatTracker>,
    /// Monotonic origin of the tracker's milliseconds: wall-clock jumps must not fence.
    origin: Instant,
    /// In a quorum: the Raft term in which this node last activated as the controller (0:
    /// not active). Sessions are soft state of one term's controller.
    active_term: Mutex<u64>,
    /// Heartbeats received per broker and not answered yet: a broker waiting on this
    /// controller (stalled behind a long command, such as a CreateTopics opening thousands of
    /// logs) is talking to it, so its session is not expired meanwhile.
    in_flight: Mutex<BTreeMap<i32, usize>>,
}

/// Counts one heartbeat in flight for its broker until dropped.
struct InFlight<'a> {
    liveness: &'a Liveness,
    node_id: i32,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.liveness.in_flight();
        if let Some(n) = in_flight.get_mut(&self.node_id) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.node_id);
            }
        }
    }
}

impl Liveness {
    pub fn new(session_timeout_ms: u64) -> Liveness {
        Liveness {
            tracker: Mutex::new(HeartbeatTracker::new(session_timeout_ms)),
            origin: Instant::now(),
            active_term: Mutex::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, usize>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a heartbeat of `node_id` in flight until the guard drops.
    fn heartbeat_started(&self, node_id: i32) -> InFlight<'_> {
        *self.in_flight().entry(node_id).or_insert(0) += 1;
        InFlight {
            liveness: self,
            node_id,
        }
    }

    /// Whether a heartbeat of `node_id` is being handled now.
    fn heartbeat_in_flight(&self, node_id: i32) -> bool {
        self.in_flight().contains_key(&node_id)
    }

    /// Follows the quorum's leadership: `term` is `Some` while this node is the active
    /// controller. A new term of this node's leadership activates it (every session runs from
    /// now); losing it drops the sessions, so a later term starts fresh rather than from
    /// contact times another controller has since seen renewed. Every broker the image
    /// shows registered without a session gets one from now: a leader activates before it has
    /// applied every earlier committed batch (Raft commits them with its first entry), and a
    /// broker registered in such a batch must still be fenced if it stays silent.
    pub fn follow(&self, term: Option<u64>, image: &runnel_cluster::MetadataImage) {
        let mut active = self.active_term.lock().unwrap_or_else(|e| e.into_inner());
        match term {
            Some(term) if *active != term => {
                *active = term;
                self.activate(image);
                tracing::info!(
                    term,
                    "active controller: broker heartbeat sessions start now"
                );
            }
            Some(_) => {
                let now = self.now_ms();
                let mut tracker = self.tracker();
                for broker in image.brokers.values() {
                    if tracker
                        .epoch(broker.node_id)
                        .is_none_or(|e| e < broker.broker_epoch)
                    {
                        tracker.carry_over(broker.node_id, broker.broker_epoch, broker.fenced, now);
                    }
                }
            }
            None if *active != 0 => {
                *active = 0;
                let mut tracker = self.tracker();
                *tracker = HeartbeatTracker::new(tracker.session_timeout_ms());
            }
            None => {}
        }
    }

    /// A node became the active controller: every registered broker's session runs from now
    /// (as Kafka's controller does on activation), so one that died under the previous
    /// controller is still fenced a session later, none is fenced for a silence this node never
    /// saw, and a restarted broker may register its new incarnation at once.
    pub fn activate(&self, image: &runnel_cluster::MetadataImage) {
        let now = self.now_ms();
        let mut tracker = self.tracker();
        *tracker = HeartbeatTracker::new(tracker.session_timeout_ms());
        for broker in image.brokers.values() {
            tracker.carry_over(broker.node_id, broker.broker_epoch, broker.fenced, now);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, HeartbeatTracker> {
        // The tracker is plain data updated in single steps: a poisoned lock holds a usable one.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Brings the heartbeat sessions in line with this node's part in the quorum (see
/// [`Liveness::follow`]); a node without voters activated once, at startup.
fn follow_leadership(broker: &Broker) {
    if let Some(quorum) = broker.metadata.quorum() {
        let status = quorum.status();
        let term = (status.leader && broker.metadata.is_active_controller()).then_some(status.term);
        broker.liveness.follow(term, &broker.image());
    }
}

/// BrokerRegistration on the active controller: commits the registration and starts the
/// broker's heartbeat session. Returns the broker epoch. `session_alive` of `request` is
/// filled in here, from the tracker.
pub fn register(broker: &Broker, mut request: Registration) -> Result<i64, ClusterError> {
    follow_leadership(broker);
    let liveness = &broker.liveness;
    let image = broker.image();
    request.session_alive = image.brokers.get(&request.node_id).is_some_and(|b| {
        liveness
            .tracker()
            .has_valid_session(b.node_id, b.broker_epoch, liveness.now_ms())
    });
    let image = broker
        .metadata
        .submit(&Command::BrokerRegistration(request.clone()), broker)?;
    // The image `submit` returns may lag the commit (its wait for publication timed out) or
    // already hold a later UnregisterBroker: the broker retries its registration either way.
    let Some(registered) = image.brokers.get(&request.node_id) else {
        return Err(ClusterError::NotController(format!(
            "the registration of broker {} committed but is not in the image yet",
            request.node_id
        )));
    };
    liveness.tracker().register(
        request.node_id,
        registered.broker_epoch,
        registered.fenced,
        liveness.now_ms(),
    );
    tracing::info!(
        node_id = request.node_id,
        incarnation_id = %request.incarnation_id,
        broker_epoch = registered.broker_epoch,
        fenced = registered.fenced,
        "broker registered"
    );
    Ok(registered.broker_epoch)
}

/// BrokerHeartbeat on the active controller: the state change it asks for, committed, and
/// Kafka's reply read from the resulting image.
pub fn heartbeat(broker: &Broker, request: Heartbeat) -> Result<HeartbeatReply, ClusterError> {
    follow_leadership(broker);
    let liveness = &broker.liveness;
    let _in_flight = liveness.heartbeat_started(request.node_id);
    let before = broker.image();
    let image = broker
        .metadata
        .submit(&Command::BrokerHeartbeat(request), broker)?;
    let reply = engine::heartbeat_reply(&image, &request);
    let mut tracker = liveness.tracker();
    let now = liveness.now_ms();
    if !tracker.has_valid_session(request.node_id, request.broker_epoch, now) {
        // No session yet (this controller became active after the registration) or an
        // expired one that heartbeats again: start it now.
        tracker.register(request.node_id, request.broker_epoch, reply.is_fenced, now);
    }
    tracker.touch(
        request.node_id,
        request.broker_epoch,
        reply.is_fenced,
        request.current_metadata_offset,
        now,
    );
    let was_fenced = before
        .brokers
        .get(&request.node_id)
        .is_none_or(|b| b.fenced);
    if was_fenced != reply.is_fenced {
        tracing::info!(
            node_id = request.node_id,
            broker_epoch = request.broker_epoch,
            fenced = reply.is_fenced,
            "broker {}",
            if reply.is_fenced {
                "fenced"
            } else {
                "unfenced"
            }
        );
    }
    Ok(reply)
}

/// UnregisterBroker on the active controller.
pub fn unregister(broker: &Broker, node_id: i32) -> Result<(), ClusterError> {
    broker
        .metadata
        .submit(&Command::UnregisterBroker { node_id }, broker)?;
    broker.liveness.tracker().remove(node_id);
    tracing::info!(node_id, "broker unregistered");
    Ok(())
}

/// Fences every broker whose session expired (Kafka's periodic `maybeFenceOneStaleBroker`).
pub fn fence_expired(broker: &Broker) {
    follow_leadership(broker);
    if !broker.metadata.is_active_controller() {
        return;
    }
    let now = broker.liveness.now_ms();
    let expired = broker.liveness.tracker().tick(now);
    for Fencing::Fence {
        node_id,
        broker_epoch,
    } in expired
    {
        if broker.liveness.heartbeat_in_flight(node_id) {
            // Its heartbeat waits on this controller: alive. The session runs again from
            // that heartbeat's answer.
            broker.liveness.tracker().set_fenced(node_id, false);
            tracing::debug!(
                node_id,
                "session expired while its heartbeat waits; not fenced"
            );
            continue;
        }
        let command = Command::FenceStaleBroker {
            node_id,
            broker_epoch,
        };
        match broker.metadata.submit(&command, broker) {
            Ok(_) => tracing::warn!(
                node_id,
                broker_epoch,
                session_timeout_ms = broker.config.broker_session_timeout_ms,
                "broker missed its heartbeat session; fenced"
            ),
            Err(e) => {
                // Retried at the next tick: the session is marked fenced only in the tracker.
                broker.liveness.tracker().set_fenced(node_id, false);
                tracing::error!(node_id, error = %e, "fencing a broker whose session expired");
            }
        }
    }
}

/// How often the controller looks for expired sessions: well within a session, so a silent
/// broker is fenced soon after its timeout.
fn fencing_check_interval(session_timeout_ms: u64) -> Duration {
    Duration::from_millis((session_timeout_ms / 8).clamp(50, 1_000))
}

/// The controller's fencing timer, for the life of the process.
pub async fn run_fencing(broker: Arc<Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(fencing_check_interval(
        broker.config.broker_session_timeout_ms,
    ));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let b = Arc::clone(&broker);
        // Commits fsync: off the async worker.
        if tokio::task::spawn_blocking(move || fence_expired(&b))
            .await
            .is_err()
        {
            tracing::error!("the fencing check panicked");
        }
    }
}

/// How a broker reaches the active controller. In process for a node that is its own
/// controller; a wire client (BrokerRegistration / BrokerHeartbeat to the voters) plugs in
/// here for a cluster.
pub trait ControllerChannel: Send + Sync {
    fn register(&self, request: Registration) -> Result<i64, ClusterError>;
    fn heartbeat(&self, request: Heartbeat) -> Result<HeartbeatReply, ClusterError>;
}

/// How this node reaches the active controller, made once per process: in process for a
/// node without voters; in a quorum, over the wire to the voters' CONTROLLER listeners,
/// starting with the Raft leader this node knows of. A quorum node that is itself the active
/// controller uses the wire too, as a Kafka combined-mode node does: one path, and the
/// controller's sessions see every broker the same way.
pub fn controller_channel(broker: &Arc<Broker>) -> Arc<dyn ControllerChannel> {
    Arc::clone(broker.controller_channel.get_or_init(|| {
        let Some(quorum) = broker.metadata.quorum() else {
            return Arc::new(InProcess(Arc::downgrade(broker)));
        };
        // The voters known at start, then a dynamic quorum's bootstrap servers (a node that
        // joins knows no voter yet); a leader outside this list is reached through the hint.
        let mut controllers: Vec<String> = quorum.voters().iter().map(|v| v.address()).collect();
        for address in quorum.bootstrap_addresses() {
            if !controllers.contains(&address) {
                controllers.push(address);
            }
        }
        let weak = Arc::downgrade(broker);
        let hint: LeaderHint = Box::new(move || {
            let broker = weak.upgrade()?;
            let (_, address) = broker.metadata.quorum()?.active_controller()?;
            Some(address)
        });
        Arc::new(WireChannel::new(controllers, quorum.request_timeout()).with_leader_hint(hint))
    }))
}

/// The node is its own controller: calls go straight to the controller side.
pub struct InProcess(pub std::sync::Weak<Broker>);

impl InProcess {
    fn broker(&self) -> Result<Arc<Broker>, ClusterError> {
        self.0
            .upgrade()
            .ok_or_else(|| ClusterError::InvalidRequest("the broker is shutting down".into()))
    }
}

impl ControllerChannel for InProcess {
    fn register(&self, request: Registration) -> Result<i64, ClusterError> {
        register(&*self.broker()?, request)
    }

    fn heartbeat(&self, request: Heartbeat) -> Result<HeartbeatReply, ClusterError> {
        heartbeat(&*self.broker()?, request)
    }
}

/// This broker's side of the lifecycle: its incarnation and the epoch the controller gave it.
pub struct BrokerLifecycle {
    pub incarnation_id: Uuid,
    /// The id of its one log directory (Kafka keeps it in meta.properties; runnel's data dir
    /// has one directory, registered under a fresh id by each incarnation).
    pub directory_id: Uuid,
    broker_epoch: AtomicI64,
}

impl Default for BrokerLifecycle {
    fn default() -> Self {
        BrokerLifecycle {
            incarnation_id: runnel_cluster::controller::random_kafka_uuid(),
            directory_id: runnel_cluster::controller::random_kafka_uuid(),
            broker_epoch: AtomicI64::new(-1),
        }
    }
}

impl BrokerLifecycle {
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    pub fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.store(epoch, Ordering::Release);
    }

    /// The BrokerRegistration this broker sends: its listeners with their advertised
    /// endpoints, its rack, the features it supports.
    pub fn registration(&self, broker: &Broker) -> Registration {
        let image = broker.image();
        let mut features: Vec<(String, i16, i16)> = runnel_cluster::features::SUPPORTED_FEATURES
            .iter()
            .map(|f| (f.name.to_owned(), f.min_level, f.max_level))
            .collect();
        features.push((engine::METADATA_VERSION.to_owned(), 1, 1));
        Registration {
            node_id: broker.node_id(),
            cluster_id: image.cluster_id.clone(),
            incarnation_id: self.incarnation_id,
            listeners: broker.registered_listeners(),
            features,
            rack: broker.config.rack.clone(),
            previous_broker_epoch: -1,
            log_dirs: vec![self.directory_id],
            is_migrating_zk_broker: false,
            session_alive: false,
        }
    }

    /// Registers this incarnation (fenced until caught up).
    pub fn register(
        &self,
        broker: &Broker,
        channel: &dyn ControllerChannel,
    ) -> Result<i64, ClusterError> {
        let epoch = channel.register(self.registration(broker))?;
        self.broker_epoch.store(epoch, Ordering::Release);
        Ok(epoch)
    }

    /// One heartbeat: asks to be unfenced (the image it reports is the one it serves from),
    /// or to shut down.
    pub fn heartbeat(
        &self,
        broker: &Broker,
        channel: &dyn ControllerChannel,
        want_shut_down: bool,
    ) -> Result<HeartbeatReply, ClusterError> {
        channel.heartbeat(Heartbeat {
            node_id: broker.node_id(),
            broker_epoch: self.broker_epoch(),
            current_metadata_offset: broker.image().offset,
            want_fence: false,
            want_shut_down,
        })
    }

    /// Kafka's controlled shutdown: heartbeats asking to shut down until the controller grants
    /// it (its leaderships moved away) or `deadline` passes.
    pub fn controlled_shutdown(
        &self,
        broker: &Broker,
        channel: &dyn ControllerChannel,
        deadline: Duration,
    ) {
        let started = Instant::now();
        let mut no_controller_since: Option<Instant> = None;
        loop {
            match self.heartbeat(broker, channel, true) {
                Ok(reply) if reply.should_shut_down => {
                    tracing::info!("controlled shutdown granted");
                    return;
                }
                Ok(_) => no_controller_since = None,
                Err(e @ ClusterError::NotController(_)) => {
                    // No controller to move the leaderships (the rest of the cluster is
                    // already down, or the quorum lost its majority): waiting out the whole
                    // deadline would only delay the shutdown of the last nodes of a cluster.
                    let since = *no_controller_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= NO_CONTROLLER_SHUTDOWN_WAIT {
                        tracing::warn!(error = %e, "no active controller for a controlled shutdown; shutting down anyway");
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "controlled shutdown heartbeat failed"),
            }
            if started.elapsed() >= deadline {
                tracing::warn!("controlled shutdown not granted in time; shutting down anyway");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// This broker's heartbeats, for the life of the process; ends on shutdown (the controlled
/// shutdown is `BrokerLifecycle::controlled_shutdown`). Scheduled as Kafka's
/// `BrokerLifecycleManager`: the first one right after the registration, then every 10 ms
/// while the controller says this broker has not caught up with the metadata log (so a
/// starting broker is unfenced as soon as it can be), then every `broker.heartbeat.interval.ms`.
/// Until the broker is registered (a quorum node registers once a controller is elected)
/// there is nothing to send.
pub async fn run_heartbeats(
    broker: Arc<Broker>,
    channel: Arc<dyn ControllerChannel>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(broker.config.broker_heartbeat_interval_ms);
    let mut delay = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        if broker.lifecycle.broker_epoch() < 0 {
            delay = UNREGISTERED_POLL;
            continue;
        }
        let b = Arc::clone(&broker);
        let c = Arc::clone(&channel);
        let result =
            tokio::task::spawn_blocking(move || b.lifecycle.heartbeat(&b, &*c, false)).await;
        delay = interval;
        match result {
            Ok(Ok(reply)) if !reply.is_caught_up => delay = CATCHING_UP_INTERVAL,
            Ok(Ok(reply)) if reply.is_fenced => {
                tracing::warn!("this broker is fenced");
            }
            Ok(Ok(_)) => {}
            Ok(Err(ClusterError::StaleBrokerEpoch(message))) => {
                // The controller lost our registration (unregistered, or a new incarnation
                // took it): register again, as Kafka's lifecycle manager does.
                tracing::warn!(%message, "heartbeat refused; registering again");
                let b = Arc::clone(&broker);
                let c = Arc::clone(&channel);
                let registered = tokio::task::spawn_blocking(move || {
                    b.lifecycle
                        .register(&b, &*c)
                        .map_err(|e| tracing::error!(error = %e, "registering again"))
                        .is_ok()
                })
                .await;
                if registered.unwrap_or(false) {
                    delay = Duration::ZERO;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat failed"),
            Err(_) => tracing::error!("the heartbeat panicked"),
        }
    }
}

/// How long a controlled shutdown waits while no controller answers at all.
const NO_CONTROLLER_SHUTDOWN_WAIT: Duration = Duration::from_secs(3);
/// Heartbeat cadence while the controller says the broker has not caught up (Kafka's 10 ms).
const CATCHING_UP_INTERVAL: Duration = Duration::from_millis(10);
/// How often an unregistered broker looks whether it has registered.
const UNREGISTERED_POLL: Duration = Duration::from_millis(10);

/// Security protocol codes of BrokerRegistration's listeners (Kafka's `SecurityProtocol.id`).
pub fn security_protocol_id(protocol: crate::context::SecurityProtocol) -> i16 {
    match protocol {
        crate::context::SecurityProtocol::Plaintext => 0,
        crate::context::SecurityProtocol::Ssl => 1,
    }
}

/// A registered listener (for `Broker::registered_listeners`).
pub fn listener(name: &str, host: &str, port: u16, security_protocol: i16) -> BrokerListener {
    BrokerListener {
        name: name.to_owned(),
        host: host.to_owned(),
        port,
        security_protocol,
    }
}

/// The wire form of [`ControllerChannel`]: BrokerRegistration / BrokerHeartbeat over the Kafka
/// protocol to the controllers in turn (Kafka's `NodeToControllerChannelManager`), moving on to
/// the next one on NOT_CONTROLLER or a connection error and staying with the one that answered.
/// Blocking I/O with timeouts: it runs on the lifecycle's blocking threads.
pub struct WireChannel {
    /// `host:port` of each controller's listener.
    controllers: Vec<String>,
    state: Mutex<WireState>,
    timeout: Duration,
    /// Where the active controller is believed to be (a quorum node knows its Raft leader):
    /// tried first, so a failover costs no round of NOT_CONTROLLER answers.
    leader_hint: Option<LeaderHint>,
}

/// The `host:port` of the active controller's listener, when known.
pub type LeaderHint = Box<dyn Fn() -> Option<String> + Send + Sync>;

struct WireState {
    /// Which controller to try first.
    current: usize,
    stream: Option<std::net::TcpStream>,
    correlation_id: i32,
}

/// Largest response frame the channel reads: its responses are a few dozen bytes.
const CONTROLLER_RESPONSE_BYTES_MAX: usize = 1 << 20;

impl WireChannel {
    pub fn new(controllers: Vec<String>, timeout: Duration) -> WireChannel {
        assert!(!controllers.is_empty(), "at least one controller address");
        WireChannel {
            controllers,
            state: Mutex::new(WireState {
                current: 0,
                stream: None,
                correlation_id: 0,
            }),
            timeout,
            leader_hint: None,
        }
    }

    /// Tries the controller `hint` names first.
    pub fn with_leader_hint(mut self, hint: LeaderHint) -> WireChannel {
        self.leader_hint = Some(hint);
        self
    }

    /// Sends `request` to the controllers in turn until one answers other than
    /// NOT_CONTROLLER. When none does (no controller elected, or none reachable) the error is
    /// `NotController`, which callers retry, with the last attempt's reason.
    fn call(
        &self,
        key: kafka_protocol::messages::ApiKey,
        version: i16,
        request: &kafka_protocol::messages::RequestKind,
        error_code: impl Fn(&kafka_protocol::messages::ResponseKind) -> i16,
    ) -> Result<kafka_protocol::messages::ResponseKind, ClusterError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let hint = self.leader_hint.as_ref().and_then(|hint| hint());
        let mut last = String::from("no controller tried");
        match hint
            .as_ref()
            .map(|address| (address, self.controllers.iter().position(|c| c == address)))
        {
            Some((_, Some(hinted))) if hinted != state.current => {
                state.current = hinted;
                state.stream = None;
            }
            Some((address, None)) => {
                // A leader added after this node started (a dynamic quorum): asked on a
                // connection of its own, then the list as usual.
                state.stream = None;
                let result = self.exchange(&mut state, address, key, version, request);
                state.stream = None;
                match result {
                    Ok(response)
                        if error_code(&response)
                            != kafka_protocol::error::ResponseError::NotController.code() =>
                    {
                        return Ok(response)
                    }
                    Ok(_) => last = format!("{address} is not the active controller"),
                    Err(e) => last = format!("{address}: {e}"),
                }
            }
            _ => {}
        }
        for _ in 0..self.controllers.len() {
            let address = self.controllers[state.current].clone();
            match self.exchange(&mut state, &address, key, version, request) {
                Ok(response)
                    if error_code(&response)
                        == kafka_protocol::error::ResponseError::NotController.code() =>
                {
                    last = format!("{address} is not the active controller");
                }
                Ok(response) => return Ok(response),
                Err(e) => last = format!("{address}: {e}"),
            }
            state.stream = None;
            state.current = (state.current + 1) % self.controllers.len();
        }
        Err(ClusterError::NotController(last))
    }

    fn exchange(
        &self,
        state: &mut WireState,
        address: &str,
        key: kafka_protocol::messages::ApiKey,
        version: i16,
        request: &kafka_protocol::messages::RequestKind,
    ) -> anyhow::Result<kafka_protocol::messages::ResponseKind> {
        use std::net::ToSocketAddrs;

        use kafka_protocol::messages::ResponseKind;

        if state.stream.is_none() {
            let socket = address
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| anyhow::anyhow!("{address} resolves to nothing"))?;
            let stream = std::net::TcpStream::connect_timeout(&socket, self.timeout)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            stream.set_nodelay(true)?;
            state.stream = Some(stream);
        }
        state.correlation_id = state.correlation_id.wrapping_add(1);
        let call = crate::peer_request::Call {
            key,
            version,
            correlation_id: state.correlation_id,
            client_id: "runnel-broker-lifecycle",
            response_bytes_max: CONTROLLER_RESPONSE_BYTES_MAX,
        };
        let stream = state.stream.as_mut().expect("connected above");
        crate::peer_request::exchange_blocking(
            stream,
            call,
            |body| request.encode(body, version),
            |body| ResponseKind::decode(key, body, version),
        )
    }
}

/// A refusal code of a controller response as the error the controller side returns, so the
/// broker side handles wire and in-process answers alike (its message is the code's).
fn code_error(code: i16) -> ClusterError {
    use kafka_protocol::error::ResponseError;
    let message = format!("controller answered error code {code}");
    match ResponseError::try_from_code(code) {
        Some(ResponseError::StaleBrokerEpoch) => ClusterError::StaleBrokerEpoch(message),
        Some(ResponseError::DuplicateBrokerRegistration) => {
            ClusterError::DuplicateBrokerRegistration(message)
        }
        Some(ResponseError::InconsistentClusterId) => ClusterError::InconsistentClusterId(message),
        Some(ResponseError::InvalidRegistration) => ClusterError::InvalidRegistration(message),
        Some(ResponseError::UnsupportedVersion) => ClusterError::UnsupportedVersion(message),
        Some(ResponseError::BrokerIdNotRegistered) => ClusterError::BrokerIdNotRegistered(message),
        _ => ClusterError::InvalidRequest(message),
    }
}

impl ControllerChannel for WireChannel {
    fn register(&self, request: Registration) -> Result<i64, ClusterError> {
        use kafka_protocol::messages::broker_registration_request::{Feature, Listener};
        use kafka_protocol::messages::{
            ApiKey, BrokerId, BrokerRegistrationRequest, RequestKind, ResponseKind,
        };
        use kafka_protocol::protocol::StrBytes;
        let body = RequestKind::BrokerRegistration(
            BrokerRegistrationRequest::default()
                .with_broker_id(BrokerId(request.node_id))
                .with_cluster_id(StrBytes::from_string(request.cluster_id.clone()))
                .with_incarnation_id(request.incarnation_id)
                .with_listeners(
                    request
                        .listeners
                        .iter()
                        .map(|l| {
                            Listener::default()
                                .with_name(StrBytes::from_string(l.name.clone()))
                                .with_host(StrBytes::from_string(l.host.clone()))
                                .with_port(l.port)
                                .with_security_protocol(l.security_protocol)
                        })
                        .collect(),
                )
                .with_features(
                    request
                        .features
                        .iter()
                        .map(|(name, min, max)| {
                            Feature::default()
                                .with_name(StrBytes::from_string(name.clone()))
                                .with_min_supported_version(*min)
                                .with_max_supported_version(*max)
                        })
                        .collect(),
                )
                .with_rack(request.rack.clone().map(StrBytes::from_string))
                .with_log_dirs(request.log_dirs.clone())
                .with_previous_broker_epoch(request.previous_broker_epoch),
        );
        let response = self.call(ApiKey::BrokerRegistration, 4, &body, |r| match r {
            ResponseKind::BrokerRegistration(r) => r.error_code,
            _ => 0,
        })?;
        let ResponseKind::BrokerRegistration(r) = response else {
            return Err(ClusterError::InvalidRequest(
                "not a BrokerRegistration response".into(),
            ));
        };
        if r.error_code != 0 {
            return Err(code_error(r.error_code));
        }
        Ok(r.broker_epoch)
    }

    fn heartbeat(&self, request: Heartbeat) -> Result<HeartbeatReply, ClusterError> {
        use kafka_protocol::messages::{
            ApiKey, BrokerHeartbeatRequest, BrokerId, RequestKind, ResponseKind,
        };
        let body = RequestKind::BrokerHeartbeat(
            BrokerHeartbeatRequest::default()
                .with_broker_id(BrokerId(request.node_id))
                .with_broker_epoch(request.broker_epoch)
                .with_current_metadata_offset(request.current_metadata_offset)
                .with_want_fence(request.want_fence)
                .with_want_shut_down(request.want_shut_down),
        );
        let response = self.call(ApiKey::BrokerHeartbeat, 1, &body, |r| match r {
            ResponseKind::BrokerHeartbeat(r) => r.error_code,
            _ => 0,
        })?;
        let ResponseKind::BrokerHeartbeat(r) = response else {
            return Err(ClusterError::InvalidRequest(
                "not a BrokerHeartbeat response".into(),
            ));
        };
        if r.error_code != 0 {
            return Err(code_error(r.error_code));
        }
        Ok(HeartbeatReply {
            is_caught_up: r.is_caught_up,
            is_fenced: r.is_fenced,
            should_shut_down: r.should_shut_down,
            in_controlled_shutdown: false,
        })
    }
}
