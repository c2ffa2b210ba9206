//! Connection state machine (being written).
