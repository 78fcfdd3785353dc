//! Identifier newtypes: non-empty, immutable and cheap to clone.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

/// An id was empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("creating {kind} failed because the id is an empty string")]
pub struct InvalidId {
    /// Which kind of id was rejected, for example `UserId`.
    pub kind: &'static str,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        ///
        /// Never empty. Cloning is a reference-count increment.
        #[derive(Clone, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "Arc<str>")]
        pub struct $name(Arc<str>);

        /// Compares the text, after a pointer check: clones of one id are equal at once.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        /// Hashes the text, as `==` compares it.
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }

        impl $name {
            /// Creates an id.
            ///
            /// # Panics
            ///
            /// Panics if `id` is empty; use [`Self::try_new`] for untrusted input.
            #[track_caller]
            pub fn new(id: impl AsRef<str>) -> Self {
                match Self::try_new(id) {
                    Ok(id) => id,
                    Err(error) => panic!("{error}"),
                }
            }

            /// Creates an id, or fails if `id` is empty.
            pub fn try_new(id: impl AsRef<str>) -> Result<Self, InvalidId> {
                let id = id.as_ref();
                if id.is_empty() {
                    return Err(InvalidId { kind: stringify!($name) });
                }
                Ok(Self(Arc::from(id)))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::try_new(value)
            }
        }

        impl From<$name> for Arc<str> {
            fn from(id: $name) -> Arc<str> {
                id.0
            }
        }

        impl From<&$name> for $name {
            fn from(id: &$name) -> $name {
                id.clone()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

id_type!(
    /// The id of a user, chosen by the app.
    UserId
);
id_type!(
    /// The id of a conversation, chosen by the app.
    ConversationId
);
id_type!(
    /// The id of a message, assigned by the engine.
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ids_are_rejected_everywhere() {
        assert_eq!(UserId::try_new("").unwrap_err().kind, "UserId");
        assert!(serde_json::from_str::<ConversationId>("\"\"").is_err());
        let id: MessageId = serde_json::from_str("\"m1\"").unwrap();
        assert_eq!(id.as_str(), "m1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"m1\"");
    }

    #[test]
    #[should_panic(expected = "creating UserId failed because the id is an empty string")]
    fn new_panics_on_empty() {
        let _ = UserId::new("");
    }
}
