//! Cluster state: the metadata log and image.
