//! DescribeLogDirs (Kafka's `KafkaApis.handleDescribeLogDirsRequest` and
//! `ReplicaManager.describeLogDirs`): the one log dir (`log.dirs`, runnel's data dir) with each
//! partition's size and offset lag, and the file system's total and usable bytes (v4).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::state::Broker;

/// Kafka's `DescribeLogDirsResponse.INVALID_OFFSET_LAG`: the lag of a replica whose log cannot
/// be read.
const INVALID_OFFSET_LAG: i64 = -1;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let response = DescribeLogDirsResponse::default();
    if !broker.authorizer.authorize(
        ctx.principal(),
        AclOperation::Describe,
        ResourceType::Cluster,
        "kafka-cluster",
    ) {
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // Null topics: every partition; otherwise exactly the named ones that exist here.
    let wanted: Option<BTreeSet<(&str, i32)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.as_str(), *p)))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for partition in broker.replicas.all() {
        let name = partition.topic.name.as_str();
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&(name, partition.index)))
        {
            continue;
        }
        let (size_bytes, offset_lag) = match partition.reader().snapshot() {
            // Kafka: max(HW - LEO, 0), so 0 for a leader.
            Ok(log) => (
                i64::try_from(log.size_bytes()).unwrap_or(i64::MAX),
                (log.high_watermark() - log.log_end_offset()).max(0),
            ),
            // A poisoned log (a failed write or fsync): Kafka would take the whole dir offline;
            // here only this partition is unreadable, so only its lag says so.
            Err(e) => {
                tracing::warn!(topic = name, partition = partition.index, error = %e, "describing a log");
                (0, INVALID_OFFSET_LAG)
            }
        };
        topics.entry(name.to_owned()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition.index)
                .with_partition_size(size_bytes)
                .with_offset_lag(offset_lag)
                .with_is_future_key(false),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    response.with_results(vec![log_dir_result(broker.data_dir(), topics)])
}

/// The result for one log dir: its absolute path (Kafka's `toAbsolutePath`), topics, and the
/// file system's space. A file system that cannot be asked answers KAFKA_STORAGE_ERROR, as
/// Kafka does for an offline log dir.
fn log_dir_result(dir: &Path, topics: Vec<DescribeLogDirsTopic>) -> DescribeLogDirsResult {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let result = DescribeLogDirsResult::default().with_log_dir(StrBytes::from_string(
        absolute.to_string_lossy().into_owned(),
    ));
    match file_system_space(&absolute) {
        Ok(space) => result
            .with_topics(topics)
            .with_total_bytes(space.total_bytes)
            .with_usable_bytes(space.usable_bytes),
        Err(e) => {
            tracing::warn!(dir = %absolute.display(), error = %e, "statvfs of the log dir");
            result.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}

/// What Java's `FileStore.getTotalSpace` / `getUsableSpace` report.
struct Space {
    total_bytes: i64,
    usable_bytes: i64,
}

/// `statvfs` of `dir`: total = blocks × fragment size, usable = blocks available to
/// unprivileged users × fragment size; above `i64::MAX` reported as `i64::MAX` (Kafka's
/// `adjustForLargeFileSystems`).
fn file_system_space(dir: &Path) -> std::io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` points to writable memory of the
    // right type; statvfs fills it completely when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialized `stat`.
    let stat = unsafe { stat.assume_init() };
    let bytes = |blocks: u64| {
        i64::try_from(u128::from(blocks) * u128::from(stat.f_frsize)).unwrap_or(i64::MAX)
    };
    #[allow(
        clippy::useless_conversion,
        reason = "fsblkcnt_t is u32 on some targets"
    )]
    Ok(Space {
        total_bytes: bytes(u64::from(stat.f_blocks)),
        usable_bytes: bytes(u64::from(stat.f_bavail)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // statvfs of a real directory gives a non-empty file system with usable <= total.
    #[test]
    fn file_system_space_of_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let space = file_system_space(dir.path()).unwrap();
        assert!(space.total_bytes > 0);
        assert!((0..=space.total_bytes).contains(&space.usable_bytes));
        assert!(file_system_space(&dir.path().join("missing")).is_err());
    }
}
