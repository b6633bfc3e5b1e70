//! The converge decision: from what the store serves and the edge's manifest, whether to do
//! nothing, apply a chain of deltas or fetch the full snapshot, or refuse (a regressed or diverged
//! edge). A pure function; the client carries the plan out.

use crate::edge::{DeltaEntry, Manifest};

use super::error::SyncError;

/// What the store serves, as far as the plan is concerned.
#[derive(Clone, Copy, Debug)]
pub(super) struct Served<'a> {
    /// The content version.
    pub(super) version: u64,
    /// The content checksum.
    pub(super) checksum: u64,
    /// The lineage the content belongs to, when known (`None`: an empty start, or a cache file
    /// without its metadata).
    pub(super) lineage: Option<&'a str>,
}

/// What to do to bring the store to the manifest's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plan<'m> {
    /// The store serves the manifest's version already.
    Unchanged,
    /// Apply these deltas in order; should one fail, fetch the full snapshot instead.
    Deltas(&'m [DeltaEntry]),
    /// Fetch the full snapshot.
    Snapshot(Why),
}

/// Why a plan fetches the full snapshot rather than deltas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
    /// The edge publishes another lineage than the served content's: its deltas are not trusted.
    OtherLineage,
    /// No chain of deltas leads from the served content to the manifest's version.
    NoChain,
    /// A chain exists but is larger than the snapshot: catching up through it would download more.
    ChainLargerThanSnapshot,
    /// The lineage's chain starts at or before the served version but breaks after it.
    Gap {
        /// The served version.
        after: u64,
    },
}

impl Why {
    /// The note a round reports for fetching the snapshot: only a gap in the chain is a fault of
    /// the edge worth reporting.
    pub(super) fn note(self) -> Option<String> {
        match self {
            Why::Gap { after } => Some(format!(
                "the edge's delta chain has a gap after version {after}; fetched the full \
                 snapshot instead"
            )),
            Why::OtherLineage | Why::NoChain | Why::ChainLargerThanSnapshot => None,
        }
    }
}

/// Decides how to bring content `served` to `manifest`'s version.
///
/// Within one lineage versions only go forward: an older version is a regression and other
/// content under the served version is a divergence, both refused (the served content stays).
/// Deltas are trusted only within the served lineage, or from content of unknown lineage that the
/// chain names by checksum.
///
/// # Errors
/// [`SyncError::Regressed`] or [`SyncError::Diverged`].
pub(super) fn plan<'m>(served: Served<'_>, manifest: &'m Manifest) -> Result<Plan<'m>, SyncError> {
    let Served {
        version,
        checksum,
        lineage,
    } = served;
    let same_lineage = lineage == Some(manifest.lineage.as_str());
    let holds_it = manifest.version == version && manifest.snapshot.checksum == checksum;
    if holds_it && (same_lineage || lineage.is_none()) {
        return Ok(Plan::Unchanged);
    }
    if same_lineage {
        if manifest.version < version {
            return Err(SyncError::Regressed {
                edge: manifest.version,
                current: version,
            });
        }
        if manifest.version == version {
            return Err(SyncError::Diverged { version });
        }
    }
    if !same_lineage && lineage.is_some() {
        return Ok(Plan::Snapshot(Why::OtherLineage));
    }
    let Some(chain) = manifest.chain_from(version, checksum) else {
        let gap = same_lineage && manifest.deltas.first().is_some_and(|d| d.from <= version);
        return Ok(Plan::Snapshot(if gap {
            Why::Gap { after: version }
        } else {
            Why::NoChain
        }));
    };
    let chain_bytes = chain.iter().fold(0u64, |n, d| n.saturating_add(d.bytes));
    if chain_bytes > manifest.snapshot.bytes {
        return Ok(Plan::Snapshot(Why::ChainLargerThanSnapshot));
    }
    Ok(Plan::Deltas(chain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::SnapshotEntry;

    /// The checksum of version `v` in the test lineages (another content: `0xd00 + v`).
    fn sum(v: u64) -> u64 {
        0xc00 + v
    }

    fn delta(from: u64, to: u64, bytes: u64) -> DeltaEntry {
        DeltaEntry {
            from,
            to,
            from_checksum: sum(from),
            to_checksum: sum(to),
            checksum: 0,
            bytes,
            path: format!("deltas/{from}-{to}"),
        }
    }

    /// A manifest of lineage `lineage` at `version` (a 1000-byte snapshot) with `deltas`.
    fn manifest(lineage: &str, version: u64, deltas: Vec<DeltaEntry>) -> Manifest {
        Manifest {
            lineage: lineage.into(),
            version,
            created_at: 0,
            snapshot: SnapshotEntry {
                version,
                checksum: sum(version),
                created_at: 0,
                bytes: 1000,
                path: format!("snapshots/{version}"),
            },
            deltas,
            subscriptions: None,
        }
    }

    fn served(version: u64, checksum: u64, lineage: Option<&str>) -> Served<'_> {
        Served {
            version,
            checksum,
            lineage,
        }
    }

    /// What a plan comes to, comparable across cases: the deltas as (from, to) pairs.
    #[derive(Debug, PartialEq, Eq)]
    enum Expect {
        Unchanged,
        Deltas(Vec<(u64, u64)>),
        Snapshot(Why),
        Regressed { edge: u64, current: u64 },
        Diverged { version: u64 },
    }

    fn outcome(result: Result<Plan<'_>, SyncError>) -> Expect {
        match result {
            Ok(Plan::Unchanged) => Expect::Unchanged,
            Ok(Plan::Deltas(chain)) => {
                Expect::Deltas(chain.iter().map(|d| (d.from, d.to)).collect())
            }
            Ok(Plan::Snapshot(why)) => Expect::Snapshot(why),
            Err(SyncError::Regressed { edge, current }) => Expect::Regressed { edge, current },
            Err(SyncError::Diverged { version }) => Expect::Diverged { version },
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn converge_plans() {
        let chain_1_to_4 = || vec![delta(1, 2, 10), delta(2, 3, 10), delta(3, 4, 10)];
        let cases: Vec<(&str, Served<'_>, Manifest, Expect)> = vec![
            (
                "serving the manifest's version",
                served(4, sum(4), Some("a")),
                manifest("a", 4, chain_1_to_4()),
                Expect::Unchanged,
            ),
            (
                "the manifest's content from a cache of unknown lineage",
                served(4, sum(4), None),
                manifest("a", 4, vec![]),
                Expect::Unchanged,
            ),
            (
                "an older version of the same lineage",
                served(5, sum(5), Some("a")),
                manifest("a", 4, chain_1_to_4()),
                Expect::Regressed {
                    edge: 4,
                    current: 5,
                },
            ),
            (
                "other content under the served version",
                served(4, 0xd04, Some("a")),
                manifest("a", 4, chain_1_to_4()),
                Expect::Diverged { version: 4 },
            ),
            (
                "a chain from the served version",
                served(2, sum(2), Some("a")),
                manifest("a", 4, chain_1_to_4()),
                Expect::Deltas(vec![(2, 3), (3, 4)]),
            ),
            (
                "a chain from content of unknown lineage, named by checksum",
                served(1, sum(1), None),
                manifest("a", 4, chain_1_to_4()),
                Expect::Deltas(vec![(1, 2), (2, 3), (3, 4)]),
            ),
            (
                "a chain exactly as large as the snapshot",
                served(1, sum(1), Some("a")),
                manifest("a", 3, vec![delta(1, 2, 500), delta(2, 3, 500)]),
                Expect::Deltas(vec![(1, 2), (2, 3)]),
            ),
            (
                "a chain larger than the snapshot",
                served(1, sum(1), Some("a")),
                manifest("a", 3, vec![delta(1, 2, 500), delta(2, 3, 501)]),
                Expect::Snapshot(Why::ChainLargerThanSnapshot),
            ),
            (
                "a newer version of another lineage, even with a matching chain",
                served(1, sum(1), Some("a")),
                manifest("b", 4, chain_1_to_4()),
                Expect::Snapshot(Why::OtherLineage),
            ),
            (
                "an older version of another lineage",
                served(9, sum(9), Some("a")),
                manifest("b", 4, chain_1_to_4()),
                Expect::Snapshot(Why::OtherLineage),
            ),
            (
                "the same version and content of another lineage",
                served(4, sum(4), Some("a")),
                manifest("b", 4, vec![]),
                Expect::Snapshot(Why::OtherLineage),
            ),
            (
                "a gap in the lineage's chain after the served version",
                served(2, sum(2), Some("a")),
                manifest("a", 4, vec![delta(1, 2, 10), delta(3, 4, 10)]),
                Expect::Snapshot(Why::Gap { after: 2 }),
            ),
            (
                "a chain that starts after the served version",
                served(1, sum(1), Some("a")),
                manifest("a", 4, vec![delta(2, 3, 10), delta(3, 4, 10)]),
                Expect::Snapshot(Why::NoChain),
            ),
            (
                "no deltas at all",
                served(1, sum(1), Some("a")),
                manifest("a", 4, vec![]),
                Expect::Snapshot(Why::NoChain),
            ),
            (
                "a chain from other content under the served version",
                served(2, 0xd02, Some("a")),
                manifest("a", 4, chain_1_to_4()),
                Expect::Snapshot(Why::Gap { after: 2 }),
            ),
            (
                "the empty start-up content",
                served(0, 0xe, None),
                manifest("a", 4, chain_1_to_4()),
                Expect::Snapshot(Why::NoChain),
            ),
            (
                "a chain that does not end at the manifest's snapshot",
                served(1, sum(1), None),
                manifest("a", 5, chain_1_to_4()),
                Expect::Snapshot(Why::NoChain),
            ),
        ];
        for (name, served, manifest, expected) in cases {
            assert_eq!(outcome(plan(served, &manifest)), expected, "{name}");
        }
    }

    #[test]
    fn only_a_gap_is_reported() {
        assert_eq!(
            Why::Gap { after: 7 }.note().as_deref(),
            Some(
                "the edge's delta chain has a gap after version 7; fetched the full snapshot \
                 instead"
            )
        );
        for why in [
            Why::OtherLineage,
            Why::NoChain,
            Why::ChainLargerThanSnapshot,
        ] {
            assert_eq!(why.note(), None, "{why:?}");
        }
    }
}
