//! Feature levels (KIP-584): what runnel supports, what the cluster has finalized, and Kafka's
//! rules for changing a level (`FeatureControlManager.updateFeature`, `QuorumFeatures`).
//!
//! Only features runnel implements are listed. `group.version` 1 is KIP-848's consumer group
//! protocol, which runnel serves; at 0 the broker refuses ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe as Kafka does. `transaction.version` 2 is KIP-890's transaction
//! protocol (an epoch bump per transaction, partitions added by produce), 1 flexible
//! `__transaction_state` values, 0 the original protocol; a new cluster is created at 2 (Kafka
//! 4.x formats at 2), a data directory created before runnel knew the feature has no record of
//! it and stays at 0 until UpdateFeatures raises it (Kafka likewise keeps a cluster formatted
//! without the feature at 0). `metadata.version` and `kraft.version` (KRaft record formats
//! runnel does not share), and
//! the share, streams and ELR features are not supported: asking for a level of them is refused
//! as a controller that does not support the feature refuses it.

use std::collections::BTreeMap;

use crate::metadata::{MetadataImage, MetadataRecord};

/// A feature runnel implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedFeature {
    pub name: &'static str,
    /// The lowest level runnel can run at.
    pub min_level: i16,
    /// The highest level runnel can run at.
    pub max_level: i16,
    /// The level in force while no `FeatureLevel` record names the feature.
    pub bootstrap_level: i16,
    /// The level a new cluster is created at (Kafka 4.x formats a new cluster with it): a
    /// `FeatureLevel` record at cluster creation when it differs from `bootstrap_level`.
    pub new_cluster_level: i16,
}

/// `group.version`: 1 enables the KIP-848 consumer rebalance protocol.
pub const GROUP_VERSION: &str = "group.version";

/// `transaction.version`: 2 enables KIP-890 part 2 (TV2).
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// Every feature runnel implements, sorted by name.
pub const SUPPORTED_FEATURES: &[SupportedFeature] = &[
    SupportedFeature {
        name: GROUP_VERSION,
        min_level: 0,
        max_level: 1,
        bootstrap_level: 1,
        new_cluster_level: 1,
    },
    SupportedFeature {
        name: TRANSACTION_VERSION,
        min_level: 0,
        max_level: 2,
        bootstrap_level: 0,
        new_cluster_level: 2,
    },
];

/// The records that finalize a new cluster's features (see `new_cluster_level`).
pub fn new_cluster_records() -> Vec<MetadataRecord> {
    SUPPORTED_FEATURES
        .iter()
        .filter(|f| f.new_cluster_level != f.bootstrap_level)
        .map(|f| MetadataRecord::FeatureLevel {
            name: f.name.to_owned(),
            level: f.new_cluster_level,
        })
        .collect()
}

/// Kafka 4.4's feature names (`Feature.FEATURES` and `metadata.version`): a name outside this
/// list is "not found" where Kafka would look it up.
const KAFKA_FEATURES: &[&str] = &[
    "eligible.leader.replicas.version",
    "group.version",
    "kraft.version",
    "metadata.version",
    "share.version",
    "streams.version",
    "transaction.version",
];

/// Kafka's `FeatureUpdate.UpgradeType` codes (UpdateFeatures v1+; v0 requests decode as 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
    Unknown,
}

impl UpgradeType {
    pub fn from_code(code: i8) -> UpgradeType {
        match code {
            1 => UpgradeType::Upgrade,
            2 => UpgradeType::SafeDowngrade,
            3 => UpgradeType::UnsafeDowngrade,
            _ => UpgradeType::Unknown,
        }
    }
}

/// One requested change of UpdateFeatures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureUpdate {
    pub name: String,
    pub level: i16,
    pub upgrade_type: UpgradeType,
}

/// The supported range of `name`, if runnel implements it.
pub fn supported(name: &str) -> Option<&'static SupportedFeature> {
    SUPPORTED_FEATURES.iter().find(|f| f.name == name)
}

/// The finalized level of `name` in `image`: its last `FeatureLevel` record, else its bootstrap
/// level; 0 for a feature runnel does not implement.
pub fn level(image: &MetadataImage, name: &str) -> i16 {
    image
        .features
        .get(name)
        .copied()
        .or_else(|| supported(name).map(|f| f.bootstrap_level))
        .unwrap_or(0)
}

/// Finalized features as ApiVersions reports them: every level above 0 (Kafka removes a
/// feature finalized at 0).
pub fn finalized(image: &MetadataImage) -> BTreeMap<&'static str, i16> {
    SUPPORTED_FEATURES
        .iter()
        .map(|f| (f.name, level(image, f.name)))
        .filter(|(_, level)| *level != 0)
        .collect()
}

/// The records for one UpdateFeatures request, or Kafka's INVALID_UPDATE_VERSION message for
/// the first update that fails (then nothing changes). Later duplicates of a feature replace
/// earlier ones, as in Kafka's map of updates.
/// `node_id` is this controller's, named in Kafka's messages.
pub fn update(
    image: &MetadataImage,
    node_id: i32,
    updates: &[FeatureUpdate],
) -> Result<Vec<MetadataRecord>, String> {
    let mut latest: BTreeMap<&str, &FeatureUpdate> = BTreeMap::new();
    for update in updates {
        latest.insert(update.name.as_str(), update);
    }
    let mut records = Vec::with_capacity(latest.len());
    for update in latest.values() {
        if let Some(record) = update_feature(image, node_id, update)? {
            records.push(record);
        }
    }
    Ok(records)
}

/// Kafka's `updateFeature` for one feature.
fn update_feature(
    image: &MetadataImage,
    node_id: i32,
    update: &FeatureUpdate,
) -> Result<Option<MetadataRecord>, String> {
    let FeatureUpdate {
        name,
        level: new_level,
        upgrade_type,
    } = update;
    let invalid =
        |reason: &str| format!("Invalid update version {new_level} for feature {name}. {reason}");
    if *upgrade_type == UpgradeType::Unknown {
        return Err(invalid(
            "The controller does not support the given upgrade type.",
        ));
    }
    let current = level(image, name);
    if *new_level < 0 {
        return Err(invalid("A feature version cannot be less than 0."));
    }
    // QuorumFeatures.reasonNotSupported: a feature this node does not implement is DISABLED
    // (0-0). On one node the local controller is the only node to ask.
    let (min, max) = supported(name).map_or((0, 0), |f| (f.min_level, f.max_level));
    if !(min..=max).contains(new_level) {
        return Err(if max == 0 {
            invalid(&format!(
                "Local controller {node_id} does not support this feature."
            ))
        } else {
            invalid(&format!(
                "Local controller {node_id} only supports versions {}",
                range_text(min, max)
            ))
        });
    }
    if *new_level < current && *upgrade_type == UpgradeType::Upgrade {
        return Err(invalid(
            "Can't downgrade the version of this feature without setting the upgrade type to \
             either safe or unsafe downgrade.",
        ));
    }
    if *new_level > current && *upgrade_type != UpgradeType::Upgrade {
        return Err(invalid("Can't downgrade to a newer version."));
    }
    if !KAFKA_FEATURES.contains(&name.as_str()) {
        return Err(invalid(&format!("Feature {name} not found.")));
    }
    // A feature runnel does not implement only gets here at level 0, which it already is.
    if supported(name).is_none() {
        return Ok(None);
    }
    Ok(Some(MetadataRecord::FeatureLevel {
        name: name.clone(),
        level: *new_level,
    }))
}

/// Kafka's `VersionRange.toString`.
fn range_text(min: i16, max: i16) -> String {
    if min == max {
        min.to_string()
    } else if max == i16::MAX {
        format!("{min}+")
    } else {
        format!("{min}-{max}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(records: &[MetadataRecord]) -> MetadataImage {
        let mut image = MetadataImage::empty();
        for r in records {
            image.apply(r);
        }
        image
    }

    fn up(name: &str, level: i16, upgrade_type: UpgradeType) -> FeatureUpdate {
        FeatureUpdate {
            name: name.to_owned(),
            level,
            upgrade_type,
        }
    }

    // A new cluster finalizes group.version 1; a FeatureLevel record moves it, and level 0 drops
    // it from the finalized features.
    #[test]
    fn bootstrap_and_recorded_levels() {
        let image = MetadataImage::empty();
        assert_eq!(level(&image, GROUP_VERSION), 1);
        assert_eq!(finalized(&image), BTreeMap::from([(GROUP_VERSION, 1)]));
        let image = image_with(&[MetadataRecord::FeatureLevel {
            name: GROUP_VERSION.into(),
            level: 0,
        }]);
        assert_eq!(level(&image, GROUP_VERSION), 0);
        assert!(finalized(&image).is_empty());
        assert_eq!(level(&image, "transaction.version"), 0);
    }

    // A new cluster is created at transaction.version 2 (Kafka 4.x formats at 2), while an
    // image without the record (a data dir older than the feature) stays at 0.
    #[test]
    fn a_new_cluster_finalizes_transaction_version_2() {
        assert_eq!(level(&MetadataImage::empty(), TRANSACTION_VERSION), 0);
        let image = image_with(&new_cluster_records());
        assert_eq!(level(&image, TRANSACTION_VERSION), 2);
        assert_eq!(
            finalized(&image),
            BTreeMap::from([(GROUP_VERSION, 1), (TRANSACTION_VERSION, 2)])
        );
    }

    // Kafka's checks, in Kafka's order, with its messages.
    #[test]
    fn update_rules_and_messages() {
        let image = MetadataImage::empty();
        let err = |u: FeatureUpdate| update(&image, 1, &[u]).unwrap_err();
        assert_eq!(
            err(up(GROUP_VERSION, 1, UpgradeType::Unknown)),
            "Invalid update version 1 for feature group.version. The controller does not support the given upgrade type."
        );
        assert_eq!(
            err(up(GROUP_VERSION, -1, UpgradeType::Upgrade)),
            "Invalid update version -1 for feature group.version. A feature version cannot be less than 0."
        );
        assert_eq!(
            err(up(GROUP_VERSION, 2, UpgradeType::Upgrade)),
            "Invalid update version 2 for feature group.version. Local controller 1 only supports versions 0-1"
        );
        assert_eq!(
            err(up("share.version", 1, UpgradeType::Upgrade)),
            "Invalid update version 1 for feature share.version. Local controller 1 does not support this feature."
        );
        assert_eq!(
            err(up(TRANSACTION_VERSION, 3, UpgradeType::Upgrade)),
            "Invalid update version 3 for feature transaction.version. Local controller 1 only supports versions 0-2"
        );
        assert_eq!(
            err(up(GROUP_VERSION, 0, UpgradeType::Upgrade)),
            "Invalid update version 0 for feature group.version. Can't downgrade the version of this feature without setting the upgrade type to either safe or unsafe downgrade."
        );
        assert_eq!(
            err(up("no.such.feature", 0, UpgradeType::SafeDowngrade)),
            "Invalid update version 0 for feature no.such.feature. Feature no.such.feature not found."
        );
        assert_eq!(
            update(
                &image,
                1,
                &[up(GROUP_VERSION, 0, UpgradeType::SafeDowngrade)]
            )
            .unwrap(),
            vec![MetadataRecord::FeatureLevel {
                name: GROUP_VERSION.into(),
                level: 0
            }]
        );
        assert_eq!(
            update(
                &image,
                1,
                &[up("share.version", 0, UpgradeType::SafeDowngrade)]
            )
            .unwrap(),
            vec![]
        );
        let downgraded = image_with(&[MetadataRecord::FeatureLevel {
            name: GROUP_VERSION.into(),
            level: 0,
        }]);
        assert_eq!(
            update(&downgraded, 1, &[up(GROUP_VERSION, 1, UpgradeType::SafeDowngrade)]).unwrap_err(),
            "Invalid update version 1 for feature group.version. Can't downgrade to a newer version."
        );
        assert_eq!(
            update(
                &downgraded,
                1,
                &[up(GROUP_VERSION, 1, UpgradeType::Upgrade)]
            )
            .unwrap()
            .len(),
            1
        );
    }
}
