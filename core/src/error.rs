//! The engine's error: one variant per kind of failure a caller can act on, each keeping its cause.
//!
//! [`Error::kind`] classifies a failure into a stable [`ErrorKind`]; the C ABI's result codes and
//! the language packages' exception classes follow from it (see `docs/ffi.md`), never from which
//! call failed.

use std::fmt;
use std::path::PathBuf;

use crate::catalog::CatalogError;
use crate::delta::ApplyError;
use crate::events::WaitError;
use crate::handle::TooManyFeatureKeys;
use crate::snapshot::FormatError;

/// Any failure of the engine's fallible operations.
///
/// # Examples
/// ```
/// use entitle_core::{Engine, Error, ErrorKind};
/// let err = Engine::from_bytes(b"not a snapshot".to_vec()).err().expect("refused");
/// assert!(matches!(err, Error::InvalidSnapshot(_)));
/// assert_eq!(err.kind(), ErrorKind::BadMagic);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The catalog is invalid; the [`CatalogError`] names the path of the offending value
    /// (for example `customers[3].overrides.seats`).
    InvalidCatalog(CatalogError),
    /// Bytes are not a valid snapshot (wrong magic, unsupported format version, truncated,
    /// checksum mismatch, inconsistent), or content exceeds what the snapshot format can address.
    InvalidSnapshot(FormatError),
    /// Bytes are not a valid delta.
    InvalidDelta(FormatError),
    /// A delta does not apply to the current content: it was made for another base snapshot, or
    /// its features differ from the base's. The content is unchanged.
    WrongBase(ApplyError),
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A configuration value is invalid (for example an edge URL that is not `http://` or
    /// `https://`, or a token that is not printable ASCII).
    InvalidConfig {
        /// The setting, as named in the configuration (for example `"url"` or `"token"`).
        setting: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// A background thread could not be started (the system refused it, for example at its
    /// thread limit).
    ThreadStart {
        /// The thread's name.
        thread: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// The process already holds [`MAX_FEATURE_KEYS`](crate::MAX_FEATURE_KEYS) distinct feature
    /// keys resolved into handles.
    TooManyFeatureKeys(TooManyFeatureKeys),
    /// A wait ran out before what it waited for happened.
    Timeout,
    /// The engine is closed and has nothing more to give.
    Closed,
}

/// The kind of an [`Error`]: what a caller can act on, stable across versions (new kinds may be
/// added). The C ABI's result code is a function of the kind alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The catalog is invalid ([`Error::InvalidCatalog`]).
    InvalidCatalog,
    /// The bytes are not an entitle snapshot or delta (or not the one expected): wrong magic.
    BadMagic,
    /// A snapshot or delta of a format version this library does not read.
    UnsupportedVersion,
    /// Snapshot or delta bytes are truncated, fail their checksum, or are inconsistent.
    Corrupt,
    /// The content exceeds what the snapshot format can address.
    TooLarge,
    /// A delta was made for another base snapshot than the current content.
    WrongBase,
    /// A delta's features do not match the current content's features.
    FeatureMismatch,
    /// A file could not be read or written ([`Error::Io`]).
    Io,
    /// A configuration value is invalid ([`Error::InvalidConfig`]).
    InvalidConfig,
    /// A background thread could not be started ([`Error::ThreadStart`]).
    ThreadStart,
    /// Too many distinct feature keys resolved into handles ([`Error::TooManyFeatureKeys`]).
    TooManyFeatureKeys,
    /// A wait ran out ([`Error::Timeout`]).
    Timeout,
    /// The engine is closed ([`Error::Closed`]).
    Closed,
}

impl ErrorKind {
    /// Every kind this version knows, for exhaustive tables and tests.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidCatalog,
        ErrorKind::BadMagic,
        ErrorKind::UnsupportedVersion,
        ErrorKind::Corrupt,
        ErrorKind::TooLarge,
        ErrorKind::WrongBase,
        ErrorKind::FeatureMismatch,
        ErrorKind::Io,
        ErrorKind::InvalidConfig,
        ErrorKind::ThreadStart,
        ErrorKind::TooManyFeatureKeys,
        ErrorKind::Timeout,
        ErrorKind::Closed,
    ];

    /// The kind's name in snake case, e.g. `"wrong_base"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidCatalog => "invalid_catalog",
            ErrorKind::BadMagic => "bad_magic",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::WrongBase => "wrong_base",
            ErrorKind::FeatureMismatch => "feature_mismatch",
            ErrorKind::Io => "io",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::ThreadStart => "thread_start",
            ErrorKind::TooManyFeatureKeys => "too_many_feature_keys",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FormatError {
    /// The kind of this format error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FormatError::BadMagic { .. } => ErrorKind::BadMagic,
            FormatError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            FormatError::Truncated { .. }
            | FormatError::ChecksumMismatch { .. }
            | FormatError::Invalid(_) => ErrorKind::Corrupt,
            FormatError::TooLarge => ErrorKind::TooLarge,
        }
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidCatalog(_) => ErrorKind::InvalidCatalog,
            Error::InvalidSnapshot(f) | Error::InvalidDelta(f) => f.kind(),
            Error::WrongBase(ApplyError::WrongBase { .. }) => ErrorKind::WrongBase,
            Error::WrongBase(ApplyError::FeatureMismatch) => ErrorKind::FeatureMismatch,
            Error::Io { .. } => ErrorKind::Io,
            Error::InvalidConfig { .. } => ErrorKind::InvalidConfig,
            Error::ThreadStart { .. } => ErrorKind::ThreadStart,
            Error::TooManyFeatureKeys(_) => ErrorKind::TooManyFeatureKeys,
            Error::Timeout => ErrorKind::Timeout,
            Error::Closed => ErrorKind::Closed,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidCatalog(e) => write!(f, "invalid catalog: {e}"),
            Error::InvalidSnapshot(e) | Error::InvalidDelta(e) => e.fmt(f),
            Error::WrongBase(e) => e.fmt(f),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::InvalidConfig { setting, message } => write!(f, "invalid {setting}: {message}"),
            Error::ThreadStart { thread, source } => {
                write!(f, "cannot start the {thread} thread: {source}")
            }
            Error::TooManyFeatureKeys(e) => e.fmt(f),
            Error::Timeout => WaitError::Timeout.fmt(f),
            Error::Closed => WaitError::Closed.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidCatalog(e) => Some(e),
            Error::InvalidSnapshot(e) | Error::InvalidDelta(e) => Some(e),
            Error::WrongBase(e) => Some(e),
            Error::Io { source, .. } | Error::ThreadStart { source, .. } => Some(source),
            Error::TooManyFeatureKeys(e) => Some(e),
            Error::InvalidConfig { .. } | Error::Timeout | Error::Closed => None,
        }
    }
}

impl From<CatalogError> for Error {
    fn from(e: CatalogError) -> Error {
        Error::InvalidCatalog(e)
    }
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Error {
        Error::WrongBase(e)
    }
}

impl From<TooManyFeatureKeys> for Error {
    fn from(e: TooManyFeatureKeys) -> Error {
        Error::TooManyFeatureKeys(e)
    }
}

impl From<WaitError> for Error {
    fn from(e: WaitError) -> Error {
        match e {
            WaitError::Timeout => Error::Timeout,
            WaitError::Closed => Error::Closed,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn every_variant_has_its_kind_and_keeps_its_source() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let catalog = crate::Catalog::from_json(b"{").unwrap_err();
        let cases: Vec<(Error, ErrorKind, bool)> = vec![
            (Error::from(catalog), ErrorKind::InvalidCatalog, true),
            (
                Error::InvalidSnapshot(FormatError::BadMagic {
                    expected: "snapshot",
                }),
                ErrorKind::BadMagic,
                true,
            ),
            (
                Error::InvalidDelta(FormatError::UnsupportedVersion {
                    found: 9,
                    supported: 1,
                }),
                ErrorKind::UnsupportedVersion,
                true,
            ),
            (
                Error::InvalidDelta(FormatError::Truncated { what: "body" }),
                ErrorKind::Corrupt,
                true,
            ),
            (
                Error::InvalidSnapshot(FormatError::ChecksumMismatch {
                    stored: 1,
                    computed: 2,
                }),
                ErrorKind::Corrupt,
                true,
            ),
            (
                Error::InvalidSnapshot(FormatError::Invalid("x".into())),
                ErrorKind::Corrupt,
                true,
            ),
            (
                Error::InvalidSnapshot(FormatError::TooLarge),
                ErrorKind::TooLarge,
                true,
            ),
            (
                Error::from(ApplyError::WrongBase {
                    expected: (1, 2),
                    found: (3, 4),
                }),
                ErrorKind::WrongBase,
                true,
            ),
            (
                Error::from(ApplyError::FeatureMismatch),
                ErrorKind::FeatureMismatch,
                true,
            ),
            (Error::io("/nowhere", io()), ErrorKind::Io, true),
            (
                Error::InvalidConfig {
                    setting: "url",
                    message: "must start with http:// or https://".into(),
                },
                ErrorKind::InvalidConfig,
                false,
            ),
            (
                Error::ThreadStart {
                    thread: "entitle-sync",
                    source: io(),
                },
                ErrorKind::ThreadStart,
                true,
            ),
            (
                Error::from(TooManyFeatureKeys),
                ErrorKind::TooManyFeatureKeys,
                true,
            ),
            (Error::from(WaitError::Timeout), ErrorKind::Timeout, false),
            (Error::from(WaitError::Closed), ErrorKind::Closed, false),
        ];
        let mut seen = std::collections::HashSet::new();
        for (e, kind, has_source) in &cases {
            assert_eq!(e.kind(), *kind, "{e:?}");
            assert_eq!(e.source().is_some(), *has_source, "{e:?}");
            assert!(!e.to_string().is_empty());
            seen.insert(*kind);
        }
        assert_eq!(seen.len(), ErrorKind::ALL.len(), "every kind is covered");
        let names: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len(), "names are distinct");
    }

    #[test]
    fn texts_name_what_failed() {
        assert_eq!(
            Error::io("/etc/x", std::io::Error::other("boom")).to_string(),
            "/etc/x: boom"
        );
        let e = Error::InvalidConfig {
            setting: "url",
            message: "the edge URL must start with http:// or https://".into(),
        };
        assert_eq!(
            e.to_string(),
            "invalid url: the edge URL must start with http:// or https://"
        );
    }
}
