//! Why a sync round failed: [`SyncError`].

use std::fmt;
use std::sync::Arc;

/// The error beneath a [`SyncError`]: the HTTP client's, or the decoder's for a manifest or artifact.
type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a sync round failed. The engine keeps serving its last good content.
///
/// The message of each variant is complete on its own (it includes the text of its `source`, which
/// [`std::error::Error::source`] also returns, for callers that inspect the cause).
#[derive(Clone, Debug)]
pub enum SyncError {
    /// The request did not complete: connection refused or reset, timeout, body cut short.
    Transport {
        /// The URL requested.
        url: String,
        /// What happened.
        message: String,
        /// The HTTP client's error, when there is one (a refused redirect has none).
        source: Option<Source>,
    },
    /// The server answered with an unexpected HTTP status.
    Http {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The manifest is not valid.
    Manifest {
        /// The manifest's URL.
        url: String,
        /// What is wrong.
        message: String,
        /// The manifest decoder's error.
        source: Option<Source>,
    },
    /// A snapshot or delta is corrupt, or not what the manifest says.
    Artifact {
        /// The artifact's URL.
        url: String,
        /// What is wrong.
        message: String,
        /// The decoder's error, for bytes that do not decode or apply (a size or identity
        /// mismatch has none).
        source: Option<Source>,
    },
    /// The edge announces an older version of the same lineage than the one being served.
    Regressed {
        /// The edge's version.
        edge: u64,
        /// The version being served.
        current: u64,
    },
    /// The edge's content for the version being served is different content.
    Diverged {
        /// The version.
        version: u64,
    },
}

/// `text` with the credentials of every URL in it left out (`http://user:secret@edge/x` becomes
/// `http://edge/x`): error messages end up in logs, status pages and events, and an edge URL may
/// carry a user and password.
fn without_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or white space; credentials end at its
        // last `@`.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        let host = authority
            .rfind('@')
            .map_or(authority, |i| &authority[i + 1..]);
        out.push_str(host);
        rest = &tail[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message may quote the URL too (the HTTP client's errors do).
        let url_message = |url: &str, message: &str| {
            let text = format!("{url}: {message}");
            without_credentials(&text).into_owned()
        };
        match self {
            SyncError::Transport { url, message, .. }
            | SyncError::Manifest { url, message, .. }
            | SyncError::Artifact { url, message, .. } => f.write_str(&url_message(url, message)),
            SyncError::Http { url, status } => {
                write!(f, "{}: HTTP {status}", without_credentials(url))
            }
            SyncError::Regressed { edge, current } => write!(
                f,
                "the edge went back to version {edge} (serving {current}); keeping {current}"
            ),
            SyncError::Diverged { version } => write!(
                f,
                "the edge's version {version} differs from the version {version} being served; keeping it"
            ),
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyncError::Transport { source, .. }
            | SyncError::Manifest { source, .. }
            | SyncError::Artifact { source, .. } => source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            SyncError::Http { .. } | SyncError::Regressed { .. } | SyncError::Diverged { .. } => {
                None
            }
        }
    }
}

impl SyncError {
    /// An artifact error caused by `source` (its text is the message).
    pub(super) fn artifact(
        url: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> SyncError {
        SyncError::Artifact {
            url: url.to_owned(),
            message: source.to_string(),
            source: Some(Arc::new(source)),
        }
    }

    /// An artifact that is not what the manifest says (its size, checksum or versions).
    pub(super) fn mismatch(url: &str, message: String) -> SyncError {
        SyncError::Artifact {
            url: url.to_owned(),
            message,
            source: None,
        }
    }

    /// The error with `context` (what the round had worked around before) added to its message.
    pub(super) fn with_context(self, context: &str) -> SyncError {
        match self {
            SyncError::Transport {
                url,
                message,
                source,
            } => SyncError::Transport {
                url,
                message: format!("{message} (after: {context})"),
                source,
            },
            SyncError::Artifact {
                url,
                message,
                source,
            } => SyncError::Artifact {
                url,
                message: format!("{message} (after: {context})"),
                source,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_leave_credentials_out() {
        let cases = [
            ("http://edge/x/manifest.json", "http://edge/x/manifest.json"),
            ("http://user:secret@edge:8080/x", "http://edge:8080/x"),
            ("https://a@b@edge?q=1", "https://edge?q=1"),
            ("https://token@edge", "https://edge"),
            (
                "see http://u:p@one/a and https://v:q@two#f, not me@example",
                "see http://one/a and https://two#f, not me@example",
            ),
            ("no url here", "no url here"),
        ];
        for (text, want) in cases {
            assert_eq!(without_credentials(text), want, "{text}");
        }
        let e = SyncError::Transport {
            url: "http://user:secret@127.0.0.1:9/manifest.json".into(),
            message: "http://user:secret@127.0.0.1:9/manifest.json: connection refused".into(),
            source: None,
        };
        let text = e.to_string();
        assert!(!text.contains("secret") && !text.contains("user"), "{text}");
        assert!(text.contains("http://127.0.0.1:9/manifest.json"), "{text}");
        let e = SyncError::Http {
            url: "https://user:secret@edge/manifest.json".into(),
            status: 500,
        };
        assert_eq!(e.to_string(), "https://edge/manifest.json: HTTP 500");
    }
}
