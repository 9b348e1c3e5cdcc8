//! DescribeTransactions and ListTransactions (v0-2: state, producer id, duration and, from
//! v2, transactional id pattern filters), as Kafka's coordinator answers them for the
//! transactional ids of this partition. ListTransactions goes to every broker and, on each,
//! every coordinator shard: the shell concatenates the shards' states and unknown filters.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::super::state::TxnState;
use super::{code, TxnCoordinator};

impl TxnCoordinator {
    /// `handleDescribeTransactions` for each id.
    pub(super) fn describe_transactions(
        &self,
        r: &DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        use describe_transactions_response::{TopicData, TransactionState};
        let states = r
            .transactional_ids
            .iter()
            .map(|txn_id| {
                let entry = TransactionState::default().with_transactional_id(txn_id.clone());
                if txn_id.0.is_empty() {
                    return entry.with_error_code(code(ResponseError::InvalidRequest));
                }
                match self.lookup(&txn_id.0) {
                    Err(error) => entry.with_error_code(error),
                    Ok(None) => entry.with_error_code(code(ResponseError::TransactionalIdNotFound)),
                    Ok(Some(meta)) if meta.state == TxnState::Dead => {
                        entry.with_error_code(code(ResponseError::TransactionalIdNotFound))
                    }
                    Ok(Some(meta)) => {
                        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                        for (topic, p) in &meta.partitions {
                            topics.entry(topic).or_default().push(*p);
                        }
                        entry
                            .with_producer_id(meta.producer_id.into())
                            .with_producer_epoch(meta.producer_epoch)
                            .with_transaction_state(StrBytes::from_static_str(meta.state.name()))
                            .with_transaction_timeout_ms(meta.timeout_ms)
                            .with_transaction_start_time_ms(meta.start_ms)
                            .with_topics(
                                topics
                                    .into_iter()
                                    .map(|(topic, partitions)| {
                                        TopicData::default()
                                            .with_topic(TopicName(StrBytes::from_string(
                                                topic.to_owned(),
                                            )))
                                            .with_partitions(partitions)
                                    })
                                    .collect(),
                            )
                    }
                }
            })
            .collect();
        DescribeTransactionsResponse::default().with_transaction_states(states)
    }

    /// `listTransactionStates`. The id pattern is matched whole (Java's `matches`) with the
    /// `regex` crate's syntax, which refuses Java's look-around and back-references.
    pub(super) fn list_transactions(
        &self,
        r: &ListTransactionsRequest,
        now_ms: i64,
    ) -> ListTransactionsResponse {
        let mut resp = ListTransactionsResponse::default();
        if !self.loaded {
            return resp.with_error_code(code(ResponseError::CoordinatorLoadInProgress));
        }
        let mut states = Vec::new();
        for name in &r.state_filters {
            match TxnState::from_name(name) {
                Some(state) => states.push(state),
                None => resp.unknown_state_filters.push(name.clone()),
            }
        }
        let pattern = match r
            .transactional_id_pattern
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            None => None,
            Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => Some(re),
                Err(_) => {
                    return ListTransactionsResponse::default()
                        .with_error_code(code(ResponseError::InvalidRegularExpression))
                }
            },
        };
        for meta in self.txns.values() {
            let include = meta.state != TxnState::Dead
                && (r.producer_id_filters.is_empty()
                    || r.producer_id_filters
                        .iter()
                        .any(|p| p.0 == meta.producer_id))
                && (r.state_filters.is_empty() || states.contains(&meta.state))
                && !(r.duration_filter >= 0 && now_ms - meta.start_ms <= r.duration_filter)
                && pattern
                    .as_ref()
                    .is_none_or(|re| re.is_match(&meta.transactional_id));
            if include {
                resp.transaction_states.push(
                    list_transactions_response::TransactionState::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_string(
                            meta.transactional_id.clone(),
                        )))
                        .with_producer_id(meta.producer_id.into())
                        .with_transaction_state(StrBytes::from_static_str(meta.state.name())),
                );
            }
        }
        resp
    }
}
