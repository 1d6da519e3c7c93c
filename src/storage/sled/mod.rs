//! The sled backend: the embedded default, in the data directory.
