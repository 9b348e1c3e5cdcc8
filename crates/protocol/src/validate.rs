//! Pre-decode validation of request bodies against Kafka message schemas.
