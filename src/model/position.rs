//! Positions: where an op stands in the server's log of a space ([`Seq`]) and
//! in a replica's own log ([`LogPos`]). Two types, so one is never passed or
//! compared where the other is meant.

use serde::{Deserialize, Serialize};

/// Defines a position type: a `u64` newtype that keeps its JSON and stored
/// form, compares with counts (`pos > 0`), moves by counts (`pos + 1`), and
/// never mixes with the other kind of position.
macro_rules! position {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Before the first.
            pub const ZERO: $name = $name(0);

            pub fn get(self) -> u64 {
                self.0
            }

            /// The stored form (redb values, log entries).
            pub fn to_le_bytes(self) -> [u8; 8] {
                self.0.to_le_bytes()
            }

            pub fn from_le_bytes(bytes: [u8; 8]) -> $name {
                $name(u64::from_le_bytes(bytes))
            }

            /// How many positions from `earlier` (exclusive) to here; 0 when `earlier` is not earlier.
            pub fn since(self, earlier: $name) -> u64 {
                self.0.saturating_sub(earlier.0)
            }
        }

        impl std::ops::Add<u64> for $name {
            type Output = $name;
            fn add(self, n: u64) -> $name {
                $name(self.0 + n)
            }
        }

        impl std::ops::Sub<u64> for $name {
            type Output = $name;
            fn sub(self, n: u64) -> $name {
                $name(self.0 - n)
            }
        }

        impl PartialEq<u64> for $name {
            fn eq(&self, n: &u64) -> bool {
                self.0 == *n
            }
        }

        impl PartialEq<$name> for u64 {
            fn eq(&self, pos: &$name) -> bool {
                *self == pos.0
            }
        }

        impl PartialOrd<u64> for $name {
            fn partial_cmp(&self, n: &u64) -> Option<std::cmp::Ordering> {
                Some(self.0.cmp(n))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

position!(
    /// A server position of an accepted op in a space's log (1, 2, 3, … gap-free;
    /// 0 before the first), handed out by the server.
    Seq
);

position!(
    /// A position in a replica's own change log (1, 2, 3, …; 0 before the
    /// first), handed out by the replica. Local and pulled ops both have one;
    /// only pulled ops have a [`Seq`].
    LogPos
);
