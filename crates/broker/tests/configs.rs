//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs through the real handlers: Kafka's
//! answers for good requests and its error codes and messages for bad ones.

mod common;

use std::sync::Arc;

use common::call_handler;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_broker::config::BrokerConfig;
use runnel_broker::state::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let mut config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    // As `--data-dir` gives it: a static broker config.
    config
        .raw
        .insert("log.dirs".into(), dir.display().to_string());
    Broker::open(config, ("localhost".into(), 9092)).expect("open broker")
}

async fn describe(broker: &Arc<Broker>, resources: &[(i8, &str)]) -> DescribeConfigsResponse {
    let request = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(
            resources
                .iter()
                .map(|(t, n)| {
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(*t)
                        .with_resource_name(StrBytes::from_string((*n).to_owned()))
                        .with_configuration_keys(None)
                })
                .collect(),
        );
    match call_handler(
        broker,
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(request),
    )
    .await
    {
        ResponseKind::DescribeConfigs(r) => r,
        _ => panic!("wrong response"),
    }
}

/// (name, op, value) per config of one resource.
type Ops<'a> = &'a [(&'a str, i8, Option<&'a str>)];

async fn incremental(
    broker: &Arc<Broker>,
    resources: &[(i8, &str, Ops<'_>)],
) -> Vec<(i16, Option<String>)> {
    let request = IncrementalAlterConfigsRequest::default().with_resources(
        resources
            .iter()
            .map(|(t, n, ops)| {
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(*t)
                    .with_resource_name(StrBytes::from_string((*n).to_owned()))
                    .with_configs(
                        ops.iter()
                            .map(|(name, op, value)| {
                                incremental_alter_configs_request::AlterableConfig::default()
                                    .with_name(StrBytes::from_string((*name).to_owned()))
                                    .with_config_operation(*op)
                                    .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    match call_handler(
        broker,
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(request),
    )
    .await
    {
        ResponseKind::IncrementalAlterConfigs(r) => r
            .responses
            .into_iter()
            .map(|r| (r.error_code, r.error_message.map(|m| m.to_string())))
            .collect(),
        _ => panic!("wrong response"),
    }
}

// Proves DescribeConfigs answers as Kafka: a default retention.ms with no synonyms, documented
// and typed; the broker with read-only and sensitive flags; the logger; and Kafka's errors for
// an unknown topic, another broker id, an empty logger name and an unknown resource type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_answers_as_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    broker
        .create_topic("t", 1, 1, Default::default(), false)
        .unwrap();
    let response = describe(
        &broker,
        &[(TOPIC, "t"), (BROKER, "1"), (BROKER_LOGGER, "1")],
    )
    .await;
    let [topic, this, logger] = &response.results[..] else {
        panic!("three results")
    };
    let get = |r: &describe_configs_response::DescribeConfigsResult, name: &str| {
        r.configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    let retention = get(topic, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("604800000"));
    assert_eq!((retention.config_source, retention.config_type), (5, 5));
    assert!(retention.synonyms.is_empty());
    assert!(retention.documentation.is_some_and(|d| !d.is_empty()));
    assert_eq!(get(topic, "segment.bytes").synonyms.len(), 1);
    let dirs = get(this, "log.dirs");
    assert!(dirs.read_only);
    assert_eq!(dirs.config_source, 4);
    let password = get(this, "ssl.truststore.password");
    assert!(password.is_sensitive && password.value.is_none());
    assert_eq!(logger.configs[0].name.as_str(), "root");

    let errors = describe(
        &broker,
        &[(TOPIC, "missing"), (BROKER, "2"), (BROKER_LOGGER, "")],
    )
    .await;
    let codes: Vec<(i16, Option<&str>)> = errors
        .results
        .iter()
        .map(|r| (r.error_code, r.error_message.as_deref()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (3, Some("")),
            (
                42,
                Some("Unexpected broker id, expected 1 or empty string, but received 2")
            ),
            (42, Some("Broker id must not be empty")),
        ]
    );
    let unknown = describe(&broker, &[(TOPIC, "t"), (3, "x")]).await;
    assert!(unknown
        .results
        .iter()
        .all(|r| r.error_code == 42 && r.configs.is_empty()));
}

// Proves IncrementalAlterConfigs checks as Kafka's broker and controller do, answering each
// resource on its own: duplicates, null values, bad values, read-only broker configs, another
// broker's id, log levels; and that a good change is described afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_alter_configs_checks_as_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    broker
        .create_topic("t", 1, 1, Default::default(), false)
        .unwrap();
    let answers = incremental(
        &broker,
        &[
            (TOPIC, "t", &[("retention.ms", 0, Some("1000"))]),
            (TOPIC, "missing", &[("retention.ms", 0, Some("1000"))]),
            (TOPIC, "t2", &[("retention.ms", 0, None)]),
            (BROKER, "1", &[("log.dirs", 0, Some("/x"))]),
            (BROKER, "7", &[("log.cleaner.threads", 0, Some("2"))]),
            (BROKER, "", &[("log.cleaner.threads", 0, Some("x"))]),
            (BROKER_LOGGER, "1", &[("root", 0, Some("LOUD"))]),
            (BROKER_LOGGER, "1", &[("root", 1, None)]),
        ],
    )
    .await;
    let expected: Vec<(i16, Option<&str>)> = vec![
        (0, None),
        (3, Some("The topic 'missing' does not exist.")),
        (42, Some("Null value not supported for : retention.ms")),
        (42, Some("Cannot update these configs dynamically: [log.dirs]")),
        (42, Some("Unexpected broker id, expected 1, but received 7")),
        (42, Some("Invalid value x for configuration log.cleaner.threads: Not a number of type INT")),
        (40, Some("Cannot set the log level of root to LOUD as it is not a supported log level. Valid log levels are DEBUG, ERROR, FATAL, INFO, TRACE, WARN")),
        (42, Some("Each resource must appear at most once.")),
    ];
    let got: Vec<(i16, Option<&str>)> = answers.iter().map(|(c, m)| (*c, m.as_deref())).collect();
    // The two BROKER_LOGGER resources share a name: both answer "at most once".
    assert_eq!(got[..6], expected[..6]);
    assert_eq!(got[6], expected[7]);
    assert_eq!(got[7], expected[7]);
    let logger = incremental(
        &broker,
        &[(BROKER_LOGGER, "1", &[("root", 0, Some("LOUD"))])],
    )
    .await;
    assert_eq!(logger[0].0, expected[6].0);
    assert_eq!(logger[0].1.as_deref(), expected[6].1);

    let response = describe(&broker, &[(TOPIC, "t")]).await;
    let retention = response.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("1000"));
    assert_eq!(retention.config_source, 1);
}
