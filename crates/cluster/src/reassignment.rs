//! Reassignment of replication-factor-1 partitions (Kafka's `ReplicationControlManager
//! .alterPartitionReassignments` with `PartitionReassignmentReplicas`), decided from the image.
//!
//! Until partition data is replicated ("Cluster II"), a move copies the one replica's log to
//! the target and switches over so that no acknowledged record can be lost, whatever `acks`
//! was ("fence, then drain"). Its registrations, as Kafka shows a move:
//! 1. **Copying** (AlterPartitionReassignments): `replicas = [target, old]`, `isr = [old]`,
//!    `adding = [target]`, `removing = [old]`; the old replica leads and the target copies
//!    its log as a follower.
//! 2. **Draining** (`fence_for_drain`, asked by the target once its copy reached the
//!    leader's log end): no leader (-1, the leader epoch bumped) and an empty ISR, so the old
//!    replica refuses produce and its log stops growing, and no broker unfenced meanwhile is
//!    elected (an election needs an ISR member). The old replica still serves the target's
//!    fetches.
//! 3. **Done** (`complete`, asked by the target once it copied the old log to its end):
//!    `replicas = isr = [target]`, the target leads (leader epoch bumped), `adding` and
//!    `removing` cleared; the old replica deletes its copy.
//!
//! A cancel while copying reverts to the old replica; once draining, the move completes (the
//! old replica already stopped taking writes). A fenced or dead target leaves the move pending,
//! as Kafka does.

use uuid::Uuid;

use crate::error::{ClusterError, Result};
use crate::metadata::{MetadataImage, MetadataRecord, PartitionImage};
use crate::placement::{check_manual_assignment, REPLICATION_NOT_BUILT};

/// Where a moving partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovePhase {
    /// The old replica leads; the target copies its log.
    Copying,
    /// Nobody leads; the target copies the rest of the old replica's fixed log.
    Draining,
}

/// An ongoing move of a replication-factor-1 partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub from: i32,
    pub to: i32,
    pub phase: MovePhase,
}

/// The move a registration is in, if any (a reassignment this module wrote: one adding and
/// one removing replica).
pub fn ongoing_move(registration: &PartitionImage) -> Option<Move> {
    match (&registration.adding[..], &registration.removing[..]) {
        (&[to], &[from]) => Some(Move {
            from,
            to,
            phase: if registration.isr.is_empty() {
                MovePhase::Draining
            } else {
                MovePhase::Copying
            },
        }),
        _ => None,
    }
}

/// One partition of AlterPartitionReassignments: `target` replicas, or `None` to cancel.
/// Kafka's checks in its order: the topic and partition exist; a cancel needs a reassignment
/// in progress; a target is a non-empty list of distinct registered brokers of the current
/// size unless `allow_replication_factor_change`. A target of other than one replica is
/// refused with INVALID_REPLICATION_FACTOR (replication is not built). A target equal to the
/// current assignment changes nothing.
pub fn alter(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_replication_factor_change: bool,
) -> Result<Vec<MetadataRecord>> {
    let topic_image = image.topic(topic).ok_or_else(|| {
        ClusterError::UnknownTopicOrPartition(format!("Unable to find a topic named {topic}."))
    })?;
    let topic_id = topic_image.topic_id;
    let registration = topic_image.registration(partition).ok_or_else(|| {
        ClusterError::UnknownTopicOrPartition(format!(
            "Unable to find partition {topic}:{partition}."
        ))
    })?;
    let ongoing = ongoing_move(registration);
    let Some(target) = target else {
        return match ongoing {
            None if !registration.is_reassigning() => Err(ClusterError::NoReassignmentInProgress(
                "No partition reassignment is in progress.".into(),
            )),
            // Only this module writes reassignments, always as a move.
            None => Err(ClusterError::InvalidReplicaAssignment(format!(
                "Unable to revert partition assignment for {topic}:{partition}."
            ))),
            // The old replica stopped taking writes: the move completes.
            Some(m) if m.phase == MovePhase::Draining => Ok(Vec::new()),
            Some(_) => Ok(vec![revert(topic_id, partition, registration)]),
        };
    };
    check_manual_assignment(image, target, None)?;
    if !allow_replication_factor_change {
        let current = current_replication_factor(registration);
        if current != target.len() {
            return Err(ClusterError::InvalidReplicationFactor(format!(
                "The replication factor is changed from {current} to {}",
                target.len()
            )));
        }
    }
    let &[to] = target else {
        return Err(ClusterError::InvalidReplicationFactor(
            REPLICATION_NOT_BUILT.into(),
        ));
    };
    let original = original_replicas(registration);
    let &[from] = &original[..] else {
        return Err(ClusterError::InvalidReplicationFactor(
            REPLICATION_NOT_BUILT.into(),
        ));
    };
    match ongoing {
        Some(m) if m.to == to => Ok(Vec::new()),
        Some(m) if m.phase == MovePhase::Draining => Err(ClusterError::ReassignmentInProgress(
            format!(
                "Partition {topic}:{partition} is switching over to broker {}; its reassignment can change once that completes.",
                m.to
            ),
        )),
        Some(_) if to == from => Ok(vec![revert(topic_id, partition, registration)]),
        None if to == from => Ok(Vec::new()),
        _ => {
            // A new move, or a new target for a move still copying (the partial copy on the
            // abandoned target goes, as it is no longer a replica). A leaderless partition
            // whose replica left the ISR as an eligible leader (its broker fenced) moves with
            // that replica back as the ISR: the move's phases are told apart by an empty ISR,
            // and the ELR replica holds everything acknowledged.
            let from_elr = registration.isr.is_empty() && !registration.elr.is_empty();
            let isr: Vec<i32> = if from_elr {
                &registration.elr
            } else {
                &registration.isr
            }
            .iter()
            .copied()
            .filter(|r| !registration.adding.contains(r))
            .collect();
            Ok(vec![MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader: None,
                isr: (isr != registration.isr).then_some(isr),
                replicas: Some(vec![to, from]),
                adding: Some(vec![to]),
                removing: Some(vec![from]),
                elr: from_elr.then(Vec::new),
                last_known_elr: None,
            }])
        }
    }
}

/// Step 2 of a move (see the module docs), asked by `node_id`, the target, against the
/// registration at `partition_epoch`. Repeating it once draining changes nothing.
pub fn fence_for_drain(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    node_id: i32,
    partition_epoch: i32,
) -> Result<Vec<MetadataRecord>> {
    let registration = registration(image, topic_id, partition)?;
    match ongoing_move(registration) {
        Some(m) if m.to == node_id && m.phase == MovePhase::Draining => Ok(Vec::new()),
        Some(m) if m.to == node_id => {
            check_epoch(registration, partition_epoch)?;
            Ok(vec![MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader: Some(NO_LEADER),
                isr: Some(Vec::new()),
                replicas: None,
                adding: None,
                removing: None,
                elr: None,
                last_known_elr: None,
            }])
        }
        _ => Err(not_moving_to(topic_id, partition, node_id)),
    }
}

/// Step 3 of a move (see the module docs), asked by `node_id`, the target, against the
/// draining registration at `partition_epoch`. The target leads unless it was fenced
/// meanwhile (then it is the ISR, and leads once unfenced). Repeating it once done changes
/// nothing.
pub fn complete(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    node_id: i32,
    partition_epoch: i32,
) -> Result<Vec<MetadataRecord>> {
    let registration = registration(image, topic_id, partition)?;
    match ongoing_move(registration) {
        None if registration.replicas == [node_id] => Ok(Vec::new()),
        Some(m) if m.to == node_id && m.phase == MovePhase::Draining => {
            check_epoch(registration, partition_epoch)?;
            let active = image
                .brokers
                .get(&node_id)
                .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown);
            Ok(vec![MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader: Some(if active { node_id } else { NO_LEADER }),
                isr: Some(vec![node_id]),
                replicas: Some(vec![node_id]),
                adding: Some(Vec::new()),
                removing: Some(Vec::new()),
                // The ISR is whole again: no eligible leaders; a leader clears the last known.
                elr: (!registration.elr.is_empty()).then(Vec::new),
                last_known_elr: (active && !registration.last_known_elr.is_empty()).then(Vec::new),
            }])
        }
        _ => Err(not_moving_to(topic_id, partition, node_id)),
    }
}

/// One partition of ListPartitionReassignments (Kafka's `OngoingPartitionReassignment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// Kafka's `listPartitionReassignments`: every reassigning partition (`topics` `None`), or
/// those of the named partitions; unknown topics and partitions, and topics with nothing
/// reassigning, are left out.
pub fn list(
    image: &MetadataImage,
    topics: Option<&[(String, Vec<i32>)]>,
) -> Vec<(String, Vec<OngoingReassignment>)> {
    let ongoing = |registration: &PartitionImage, partition: i32| {
        registration.is_reassigning().then(|| OngoingReassignment {
            partition,
            replicas: registration.replicas.clone(),
            adding: registration.adding.clone(),
            removing: registration.removing.clone(),
        })
    };
    let mut out = Vec::new();
    match topics {
        None => {
            for topic in image.topics.values() {
                let partitions: Vec<_> = topic
                    .registrations
                    .iter()
                    .filter_map(|(p, r)| ongoing(r, *p))
                    .collect();
                if !partitions.is_empty() {
                    out.push((topic.name.clone(), partitions));
                }
            }
        }
        Some(topics) => {
            for (name, indexes) in topics {
                let Some(topic) = image.topic(name) else {
                    continue;
                };
                let partitions: Vec<_> = indexes
                    .iter()
                    .filter_map(|p| ongoing(topic.registration(*p)?, *p))
                    .collect();
                if !partitions.is_empty() {
                    out.push((name.clone(), partitions));
                }
            }
        }
    }
    out
}

const NO_LEADER: i32 = -1;

/// The replicas before the reassignment (Kafka's `originalReplicas`).
fn original_replicas(registration: &PartitionImage) -> Vec<i32> {
    registration
        .replicas
        .iter()
        .copied()
        .filter(|r| !registration.adding.contains(r))
        .collect()
}

/// The size of the assignment a reassignment is heading to, or of the current one (Kafka's
/// `validatePartitionReplicationFactorUnchanged`).
fn current_replication_factor(registration: &PartitionImage) -> usize {
    if !registration.is_reassigning() {
        return registration.replicas.len();
    }
    let mut set: std::collections::BTreeSet<i32> = registration.replicas.iter().copied().collect();
    set.extend(registration.adding.iter().copied());
    for r in &registration.removing {
        set.remove(r);
    }
    set.len()
}

/// Kafka's `PartitionReassignmentRevert` for a move still copying: the original replica, the
/// ISR without the target, nothing adding or removing. The leader stays.
fn revert(topic_id: Uuid, partition: i32, registration: &PartitionImage) -> MetadataRecord {
    let isr: Vec<i32> = registration
        .isr
        .iter()
        .copied()
        .filter(|r| !registration.adding.contains(r))
        .collect();
    MetadataRecord::PartitionChange {
        topic_id,
        partition,
        leader: None,
        isr: (isr != registration.isr).then_some(isr),
        replicas: Some(original_replicas(registration)),
        adding: Some(Vec::new()),
        removing: Some(Vec::new()),
        elr: None,
        last_known_elr: None,
    }
}

fn registration(image: &MetadataImage, topic_id: Uuid, partition: i32) -> Result<&PartitionImage> {
    let topic = image
        .topic_by_id(&topic_id)
        .ok_or(ClusterError::UnknownTopicId(topic_id))?;
    topic.registration(partition).ok_or_else(|| {
        ClusterError::UnknownTopicOrPartition(format!(
            "Unable to find partition {}:{partition}.",
            topic.name
        ))
    })
}

/// A step asked against a registration that changed since (Kafka's AlterPartition answers
/// INVALID_UPDATE_VERSION): the asker reads the new one and decides again.
fn check_epoch(registration: &PartitionImage, partition_epoch: i32) -> Result<()> {
    if registration.partition_epoch != partition_epoch {
        return Err(ClusterError::InvalidUpdateVersion(format!(
            "partition epoch {partition_epoch} is not the current {}",
            registration.partition_epoch
        )));
    }
    Ok(())
}

fn not_moving_to(topic_id: Uuid, partition: i32, node_id: i32) -> ClusterError {
    ClusterError::InvalidRequest(format!(
        "partition {topic_id}:{partition} is not moving to broker {node_id}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::BrokerListener;
    use std::collections::BTreeMap;

    const TOPIC: Uuid = Uuid::from_u128(7);

    /// Brokers 1..=3 registered and unfenced; topic "t" with partition 0 on broker 1.
    fn image() -> MetadataImage {
        let mut image = MetadataImage::empty();
        image.apply(&MetadataRecord::Cluster {
            cluster_id: "c".into(),
        });
        for node_id in 1..=3 {
            image.apply(&MetadataRecord::BrokerRegistration {
                node_id,
                incarnation_id: Uuid::from_u128(node_id as u128),
                broker_epoch: i64::from(node_id),
                listeners: vec![BrokerListener {
                    name: "PLAINTEXT".into(),
                    host: "h".into(),
                    port: 9000 + node_id as u16,
                    security_protocol: 0,
                }],
                rack: None,
                fenced: false,
                in_controlled_shutdown: false,
                log_dirs: vec![],
            });
        }
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: TOPIC,
            partitions: 1,
            configs: BTreeMap::new(),
        });
        image.apply(&MetadataRecord::Partition {
            topic_id: TOPIC,
            partition: 0,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
            elr: Vec::new(),
            last_known_elr: Vec::new(),
        });
        image
    }

    fn apply(image: &mut MetadataImage, records: Result<Vec<MetadataRecord>>) {
        for record in records.unwrap() {
            image.apply(&record);
        }
    }

    fn step(
        image: &mut MetadataImage,
        decide: impl FnOnce(&MetadataImage) -> Result<Vec<MetadataRecord>>,
    ) {
        let records = decide(image);
        apply(image, records);
    }

    /// Broker 1's caught-up heartbeat, which unfences it.
    fn unfence_broker_1(image: &MetadataImage) -> Result<Vec<MetadataRecord>> {
        crate::broker_lifecycle::heartbeat(
            image,
            &crate::broker_lifecycle::Heartbeat {
                node_id: 1,
                broker_epoch: 1,
                current_metadata_offset: i64::MAX,
                want_fence: false,
                want_shut_down: false,
            },
        )
    }

    fn part(image: &MetadataImage) -> PartitionImage {
        image.topic("t").unwrap().registration(0).unwrap().clone()
    }

    fn error(records: Result<Vec<MetadataRecord>>) -> (String, String) {
        let e = records.unwrap_err();
        let kind = format!("{e:?}");
        (kind.split('(').next().unwrap().to_string(), e.to_string())
    }

    #[test]
    fn a_move_goes_copying_draining_done_as_kafka_shows_it() {
        // Goal: the three registrations of a move, with Kafka's view mid-move (target first in
        // replicas, the old replica in the ISR and leading) and epochs bumped where a leader
        // changes.
        let mut image = image();
        step(&mut image, |i| alter(i, "t", 0, Some(&[2]), false));
        let p = part(&image);
        assert_eq!(
            (
                &p.replicas[..],
                &p.isr[..],
                p.leader,
                &p.adding[..],
                &p.removing[..]
            ),
            (&[2, 1][..], &[1][..], 1, &[2][..], &[1][..])
        );
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 1));
        assert_eq!(
            ongoing_move(&p),
            Some(Move {
                from: 1,
                to: 2,
                phase: MovePhase::Copying
            })
        );
        // Only the target may step the move on, against the current registration.
        assert_eq!(
            error(fence_for_drain(&image, TOPIC, 0, 3, 1)).0,
            "InvalidRequest"
        );
        assert_eq!(
            error(fence_for_drain(&image, TOPIC, 0, 2, 0)).0,
            "InvalidUpdateVersion"
        );
        assert_eq!(error(complete(&image, TOPIC, 0, 2, 1)).0, "InvalidRequest");
        step(&mut image, |i| fence_for_drain(i, TOPIC, 0, 2, 1));
        let p = part(&image);
        assert_eq!((p.leader, p.leader_epoch, p.isr.len()), (-1, 1, 0));
        assert_eq!(ongoing_move(&p).unwrap().phase, MovePhase::Draining);
        assert!(fence_for_drain(&image, TOPIC, 0, 2, 1).unwrap().is_empty());
        step(&mut image, |i| complete(i, TOPIC, 0, 2, p.partition_epoch));
        let p = part(&image);
        assert_eq!(
            (&p.replicas[..], &p.isr[..], p.leader, p.leader_epoch),
            (&[2][..], &[2][..], 2, 2)
        );
        assert!(!p.is_reassigning());
        assert!(complete(&image, TOPIC, 0, 2, 0).unwrap().is_empty());
        assert!(list(&image, None).is_empty());
    }

    #[test]
    fn refusals_carry_kafkas_errors_and_messages() {
        // Goal: each refusal of AlterPartitionReassignments is Kafka's error with its message.
        let image = image();
        assert_eq!(
            error(alter(&image, "nope", 0, Some(&[2]), false)),
            (
                "UnknownTopicOrPartition".into(),
                "Unable to find a topic named nope.".into()
            )
        );
        assert_eq!(
            error(alter(&image, "t", 5, Some(&[2]), false)),
            (
                "UnknownTopicOrPartition".into(),
                "Unable to find partition t:5.".into()
            )
        );
        assert_eq!(
            error(alter(&image, "t", 0, None, false)),
            (
                "NoReassignmentInProgress".into(),
                "No partition reassignment is in progress.".into()
            )
        );
        assert_eq!(
            error(alter(&image, "t", 0, Some(&[9]), false)).1,
            "The manual partition assignment includes broker 9, but no such broker is registered."
        );
        assert_eq!(
            error(alter(&image, "t", 0, Some(&[2, 2]), true)).1,
            "The manual partition assignment includes the broker 2 more than once."
        );
        assert_eq!(
            error(alter(&image, "t", 0, Some(&[]), false)).1,
            "The manual partition assignment includes an empty replica list."
        );
        assert_eq!(
            error(alter(&image, "t", 0, Some(&[2, 3]), false)),
            (
                "InvalidReplicationFactor".into(),
                "The replication factor is changed from 1 to 2".into()
            )
        );
        assert_eq!(
            error(alter(&image, "t", 0, Some(&[2, 3]), true)),
            (
                "InvalidReplicationFactor".into(),
                REPLICATION_NOT_BUILT.into()
            )
        );
        // The current assignment again changes nothing.
        assert!(alter(&image, "t", 0, Some(&[1]), false).unwrap().is_empty());
    }

    #[test]
    fn cancel_reverts_while_copying_and_lets_a_draining_move_complete() {
        // Goal: a cancel before the fence restores the original registration (leader kept),
        // and after it answers success and changes nothing; a retarget while copying starts
        // over from the original replica, while draining it is REASSIGNMENT_IN_PROGRESS.
        let mut image = image();
        step(&mut image, |i| alter(i, "t", 0, Some(&[2]), false));
        assert!(alter(&image, "t", 0, Some(&[2]), false).unwrap().is_empty());
        step(&mut image, |i| alter(i, "t", 0, Some(&[3]), false));
        let p = part(&image);
        assert_eq!(
            (&p.replicas[..], &p.adding[..], &p.removing[..]),
            (&[3, 1][..], &[3][..], &[1][..])
        );
        step(&mut image, |i| alter(i, "t", 0, None, false));
        let p = part(&image);
        assert_eq!(
            (
                &p.replicas[..],
                &p.isr[..],
                p.leader,
                p.leader_epoch,
                p.is_reassigning()
            ),
            (&[1][..], &[1][..], 1, 0, false)
        );
        // A target back to the original replica reverts too.
        step(&mut image, |i| alter(i, "t", 0, Some(&[2]), false));
        step(&mut image, |i| alter(i, "t", 0, Some(&[1]), false));
        assert!(!part(&image).is_reassigning());

        step(&mut image, |i| alter(i, "t", 0, Some(&[2]), false));
        let epoch = part(&image).partition_epoch;
        step(&mut image, |i| fence_for_drain(i, TOPIC, 0, 2, epoch));
        assert!(alter(&image, "t", 0, None, false).unwrap().is_empty());
        assert_eq!(
            error(alter(&image, "t", 0, Some(&[3]), false)).0,
            "ReassignmentInProgress"
        );
        assert_eq!(
            error(alter(&image, "t", 0, Some(&[1]), false)).0,
            "ReassignmentInProgress"
        );
    }

    #[test]
    fn listing_shows_ongoing_moves_only() {
        // Goal: ListPartitionReassignments lists reassigning partitions (all, or those named),
        // leaving out unknown topics and partitions and quiet ones.
        let mut image = image();
        assert!(list(&image, None).is_empty());
        step(&mut image, |i| alter(i, "t", 0, Some(&[3]), false));
        let expected = vec![(
            "t".to_string(),
            vec![OngoingReassignment {
                partition: 0,
                replicas: vec![3, 1],
                adding: vec![3],
                removing: vec![1],
            }],
        )];
        assert_eq!(list(&image, None), expected);
        assert_eq!(list(&image, Some(&[("t".into(), vec![0, 4])])), expected);
        assert!(list(
            &image,
            Some(&[("t".into(), vec![4]), ("x".into(), vec![0])])
        )
        .is_empty());
    }

    #[test]
    fn a_leaderless_partition_with_an_eligible_leader_moves_as_copying() {
        // Goal: the source broker fenced (its replica left the ISR as an eligible leader), a
        // new move starts copying with that replica as the ISR, not as if draining, and once
        // the source is back it leads until the copy is done; completing clears the ELR.
        let mut image = image();
        step(&mut image, |i| {
            Ok(crate::broker_lifecycle::fence_stale(i, 1, 1))
        });
        let p = part(&image);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (-1, vec![], vec![1])
        );
        step(&mut image, |i| alter(i, "t", 0, Some(&[2]), false));
        let p = part(&image);
        assert_eq!((p.isr.clone(), p.elr.clone()), (vec![1], vec![]));
        assert_eq!(ongoing_move(&p).unwrap().phase, MovePhase::Copying);
        step(&mut image, unfence_broker_1);
        let p = part(&image);
        assert_eq!((p.leader, p.last_known_elr.clone()), (1, vec![]));
        let epoch = p.partition_epoch;
        step(&mut image, |i| fence_for_drain(i, TOPIC, 0, 2, epoch));
        let epoch = part(&image).partition_epoch;
        step(&mut image, |i| complete(i, TOPIC, 0, 2, epoch));
        let p = part(&image);
        assert_eq!(
            (p.leader, p.replicas.clone(), p.isr.clone(), p.elr.clone()),
            (2, vec![2], vec![2], vec![])
        );
    }

    #[test]
    fn a_fenced_broker_never_leads_a_draining_partition() {
        // Goal: while draining, unfencing the old replica elects nobody (the ISR is empty), and
        // a target fenced before completion becomes the ISR without leading.
        let mut image = image();
        step(&mut image, |i| alter(i, "t", 0, Some(&[2]), false));
        let epoch = part(&image).partition_epoch;
        step(&mut image, |i| fence_for_drain(i, TOPIC, 0, 2, epoch));
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 1,
            broker_epoch: 1,
        });
        step(&mut image, unfence_broker_1);
        assert!(!image.brokers[&1].fenced, "the old replica was unfenced");
        assert_eq!(part(&image).leader, -1);
        image.apply(&MetadataRecord::FenceBroker {
            node_id: 2,
            broker_epoch: 2,
        });
        let epoch = part(&image).partition_epoch;
        step(&mut image, |i| complete(i, TOPIC, 0, 2, epoch));
        let p = part(&image);
        assert_eq!(
            (&p.replicas[..], &p.isr[..], p.leader),
            (&[2][..], &[2][..], -1)
        );
    }

    #[test]
    fn records_without_a_reassignment_keep_their_json() {
        // Goal: logs written before reassignment existed replay, and records that carry no
        // reassignment are written exactly as before.
        let old_partition = r#"{"type":"Partition","topic_id":"00000000-0000-0000-0000-000000000007","partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0,"partition_epoch":0}"#;
        let old_change = r#"{"type":"PartitionChange","topic_id":"00000000-0000-0000-0000-000000000007","partition":0,"leader":-1,"isr":null,"replicas":null}"#;
        for old in [old_partition, old_change] {
            let record: MetadataRecord = serde_json::from_str(old).unwrap();
            assert_eq!(serde_json::to_string(&record).unwrap(), old);
        }
        let moving = MetadataRecord::PartitionChange {
            topic_id: TOPIC,
            partition: 0,
            leader: None,
            isr: None,
            replicas: Some(vec![2, 1]),
            adding: Some(vec![2]),
            removing: Some(vec![1]),
            elr: None,
            last_known_elr: None,
        };
        let json = serde_json::to_string(&moving).unwrap();
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            moving
        );
    }
}
