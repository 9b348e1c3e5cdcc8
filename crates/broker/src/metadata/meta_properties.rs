//! `<data-dir>/meta.properties`: the node's metadata directory id (Kafka's `directory.id`),
//! stable across restarts. A quorum's member book names each controller by id and directory
//! id, so a node that came back with a new one would be a stranger to it; and
//! `kafka-metadata-quorum add-controller --command-config` reads this very file (from the
//! first of `log.dirs`, or `metadata.log.dir`) to learn the directory id of the node it adds.
//!
//! Written in Kafka's format, version 0 (`broker.id`, `directory.id`): version 1 would also
//! require `cluster.id`, which a node joining a quorum does not know yet.

use std::io::Write;
use std::path::Path;

use runnel_cluster::controller::{kafka_uuid_string, random_kafka_uuid};
use runnel_cluster::ClusterError;
use uuid::Uuid;

pub const FILE: &str = "meta.properties";

/// Largest `meta.properties` read (it holds a few short lines).
const MAX_BYTES: u64 = 64 << 10;

/// The directory id kept in `dir/meta.properties`, made up and written (fsynced) on first use.
pub fn load_or_create(dir: &Path, node_id: i32) -> Result<Uuid, ClusterError> {
    let path = dir.join(FILE);
    let io = |e: std::io::Error| ClusterError::Io {
        path: path.clone(),
        source: e,
    };
    if path.exists() {
        let len = std::fs::metadata(&path).map_err(io)?.len();
        if len > MAX_BYTES {
            return Err(corrupt(
                &path,
                format!("{len} bytes is more than {MAX_BYTES}"),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let value = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == "directory.id")
            .map(|(_, v)| v.trim().to_owned());
        if let Some(value) = value {
            return parse_kafka_uuid(&value)
                .ok_or_else(|| corrupt(&path, format!("directory.id '{value}' is not a UUID")));
        }
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let id = random_kafka_uuid();
    let text = format!(
        "#runnel: the metadata directory id of this data dir\nversion=0\nbroker.id={node_id}\n\
         directory.id={}\n",
        kafka_uuid_string(&id)
    );
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(id)
}

fn corrupt(path: &Path, reason: String) -> ClusterError {
    ClusterError::CorruptLog {
        path: path.to_path_buf(),
        position: 0,
        reason,
    }
}

/// Kafka's text form of a UUID (URL-safe base64, no padding) back to a UUID.
pub fn parse_kafka_uuid(text: &str) -> Option<Uuid> {
    runnel_protocol::kafka_uuid::from_text(text).map(Uuid::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the directory id is made once and read back unchanged.
    #[test]
    fn directory_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), 3).unwrap();
        assert_eq!(load_or_create(dir.path(), 3).unwrap(), first);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains(&format!("directory.id={}", kafka_uuid_string(&first))));
        std::fs::write(dir.path().join(FILE), "directory.id=###\n").unwrap();
        assert!(load_or_create(dir.path(), 3).is_err());
    }
}
