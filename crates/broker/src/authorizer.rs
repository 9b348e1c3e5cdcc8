//! Who may do what: the `Authorizer` every handler asks, and the one place the
//! authorized-operations fields of Metadata, DescribeCluster, DescribeGroups and
//! ConsumerGroupDescribe are computed from it.
//!
//! Runnel has no ACLs yet, so the broker runs [`AllowAll`], which is what a Kafka broker
//! without `authorizer.class.name` does: every principal may do every operation. The trait is
//! the seam where ACLs (and their records in the metadata log) plug in.

use crate::context::Principal;

/// Kafka's `ResourceType`s that requests name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// Kafka's `AclOperation`, with its wire codes (bit positions in authorized-operations fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

impl ResourceType {
    /// The operations a resource of this type supports (Kafka's
    /// `AclEntry.supportedOperations`).
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
                CreateTokens,
                DescribeTokens,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
        }
    }
}

/// Decides whether a principal may do an operation on a resource.
///
/// # Correctness
///
/// `authorize` is a pure function of its arguments and the authorizer's current rules: it must
/// not block (handlers call it on async workers) and must answer the same for the same rules.
pub trait Authorizer: Send + Sync {
    fn authorize(
        &self,
        principal: &Principal,
        operation: AclOperation,
        resource: ResourceType,
        name: &str,
    ) -> bool;

    /// The authorized-operations bitfield Kafka reports for a resource: one bit per supported
    /// operation the principal may do.
    fn authorized_operations(
        &self,
        principal: &Principal,
        resource: ResourceType,
        name: &str,
    ) -> i32 {
        resource
            .supported_operations()
            .iter()
            .filter(|op| self.authorize(principal, **op, resource, name))
            .fold(0, |bits, op| bits | (1 << *op as u8))
    }
}

/// Every principal may do everything: a Kafka broker without an authorizer.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Principal, _: AclOperation, _: ResourceType, _: &str) -> bool {
        true
    }
}

/// Kafka's "authorized operations not requested" sentinel (`Integer.MIN_VALUE`).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the allow-all bitfields are Kafka's, as a Kafka 4.1 broker without an authorizer
    // reports them (topic 3576, group 3400, cluster 32672), and a deny rule clears its bit.
    #[test]
    fn authorized_operations_match_kafka() {
        let anonymous = Principal::anonymous();
        let ops = |r| AllowAll.authorized_operations(&anonymous, r, "x");
        assert_eq!(ops(ResourceType::Topic), 3576);
        assert_eq!(ops(ResourceType::Group), 3400);
        assert_eq!(ops(ResourceType::Cluster), 32672);
        struct NoDelete;
        impl Authorizer for NoDelete {
            fn authorize(&self, _: &Principal, op: AclOperation, _: ResourceType, _: &str) -> bool {
                op != AclOperation::Delete
            }
        }
        assert_eq!(
            NoDelete.authorized_operations(&anonymous, ResourceType::Group, "g"),
            3400 & !(1 << 6)
        );
    }
}
