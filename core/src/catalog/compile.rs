//! Compiling a validated catalog into a snapshot: each customer's answers are evaluated at every
//! instant they can change, and the resulting profiles handed to the snapshot builder.

use super::{Catalog, Scratch};
use crate::snapshot::build::{Builder, FeatureDef};
use crate::snapshot::{BuildOptions, FormatError, Snapshot};

impl Snapshot {
    /// Compiles a validated catalog into a snapshot. Deterministic: the same catalog and options give
    /// the same bytes.
    ///
    /// # Errors
    /// [`FormatError::TooLarge`] when the catalog exceeds the format's limits.
    pub fn build(catalog: &Catalog, options: BuildOptions) -> Result<Snapshot, FormatError> {
        let mut b = Builder::new(feature_defs(catalog));
        b.reserve(catalog.customers().len());
        let mut scratch = Scratch::default();
        for c in catalog.customers() {
            let times = Catalog::boundaries(c);
            let p = if times.is_empty() {
                // Most customers: answers never change with time, one epoch, no allocation.
                catalog.evaluate_into(c, i64::MIN, &mut scratch);
                b.profile([(i64::MIN, scratch.cells.as_slice())])
            } else {
                let mut epochs = vec![(i64::MIN, catalog.evaluate(c, i64::MIN))];
                for t in times {
                    epochs.push((t, catalog.evaluate(c, t)));
                }
                b.profile(epochs.iter().map(|(s, cells)| (*s, cells.as_slice())))
            };
            b.customer(c.id.as_bytes(), p);
        }
        Snapshot::from_bytes(b.finish(options.version, options.created_at)?)
    }
}

/// The catalog's features as snapshots store them.
pub(crate) fn feature_defs(catalog: &Catalog) -> Vec<FeatureDef> {
    catalog
        .features()
        .iter()
        .map(|f| FeatureDef {
            key: f.key.clone(),
            kind: f.kind,
            per_unit: f.per_unit,
            default: f.default.to_raw(),
        })
        .collect()
}
