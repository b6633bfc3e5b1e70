//! The reference evaluation of SPEC section 2 over a catalog: straightforward and slow, the answers
//! every snapshot must reproduce.

use super::{Catalog, Customer};
use crate::model::{Cell, Decision, Reason, MAX_LIMIT, RAW_UNLIMITED};

impl Catalog {
    /// Evaluates feature `feature` for customer `customer` at unix time `at` (SPEC section 2).
    ///
    /// This is the reference evaluation: straightforward and slow. Production lookups go through a
    /// [`Snapshot`](crate::Snapshot), which must answer identically.
    pub fn check(&self, customer: &str, feature: &str, at: i64) -> Decision {
        let Some(f) = self.feature_index(feature) else {
            return Decision::feature_not_found(0);
        };
        let kind = self.features[f].kind;
        let cell = match self.customer(customer) {
            None => Cell {
                raw: self.features[f].default.to_raw(),
                reason: Reason::CustomerNotFound,
            },
            Some(c) => {
                let mut scratch = Scratch::default();
                self.evaluate_into(c, at, &mut scratch);
                scratch.cells[f]
            }
        };
        Decision::new(kind, cell, 0)
    }

    /// Every feature's cell for one customer at time `at`, in feature order.
    pub(crate) fn evaluate(&self, customer: &Customer, at: i64) -> Vec<Cell> {
        let mut scratch = Scratch::default();
        self.evaluate_into(customer, at, &mut scratch);
        scratch.cells
    }

    /// [`Catalog::evaluate`] into reusable buffers (`scratch.cells` holds the result).
    pub(crate) fn evaluate_into(&self, customer: &Customer, at: i64, scratch: &mut Scratch) {
        let contribution = &mut scratch.contribution;
        contribution.clear();
        contribution.resize(self.features.len(), None);
        for sub in customer.subscriptions.iter().filter(|s| s.grants_at(at)) {
            for item in &sub.items {
                let Some(&p) = self.product_index.get(&item.product) else {
                    continue;
                };
                for &(f, raw) in &self.grants[p] {
                    let feature = &self.features[f];
                    let c = if feature.per_unit {
                        mul_saturating(raw, item.quantity)
                    } else {
                        raw
                    };
                    contribution[f] = Some(match contribution[f] {
                        None => c,
                        Some(prev) if feature.per_unit => add_saturating(prev, c),
                        // Flags are 0/1 and unlimited is u64::MAX: OR and max are both `max`.
                        Some(prev) => prev.max(c),
                    });
                }
            }
        }
        let cells = &mut scratch.cells;
        cells.clear();
        cells.extend(
            self.features
                .iter()
                .zip(contribution.iter())
                .map(|(feature, c)| {
                    let default = feature.default.to_raw();
                    match *c {
                        Some(c) if c >= default => Cell {
                            raw: c,
                            reason: Reason::Subscription,
                        },
                        _ => Cell {
                            raw: default,
                            reason: Reason::Default,
                        },
                    }
                }),
        );
        for o in customer.overrides.iter().filter(|o| o.active_at(at)) {
            if let Some(f) = self.feature_index(&o.feature) {
                cells[f] = Cell {
                    raw: o.value.to_raw(),
                    reason: Reason::Override,
                };
            }
        }
    }

    /// The instants at which some answer for `customer` may change: every `cancel_at` of a
    /// subscription that could grant, and every override `expires_at`. Sorted, unique.
    pub(crate) fn boundaries(customer: &Customer) -> Vec<i64> {
        let mut times: Vec<i64> = customer
            .subscriptions
            .iter()
            .filter(|s| s.grants_at(i64::MIN))
            .filter_map(|s| s.cancel_at)
            .chain(customer.overrides.iter().filter_map(|o| o.expires_at))
            .filter(|&t| t != i64::MIN)
            .collect();
        times.sort_unstable();
        times.dedup();
        times
    }
}

/// Reusable buffers for [`Catalog::evaluate_into`].
#[derive(Default)]
pub(crate) struct Scratch {
    contribution: Vec<Option<u64>>,
    pub(crate) cells: Vec<Cell>,
}

/// `raw × quantity` for a per-unit limit: unlimited × q is unlimited for q > 0 and 0 for q = 0;
/// finite products saturate at [`MAX_LIMIT`].
pub(crate) fn mul_saturating(raw: u64, quantity: u64) -> u64 {
    if raw == RAW_UNLIMITED {
        if quantity > 0 {
            RAW_UNLIMITED
        } else {
            0
        }
    } else {
        raw.saturating_mul(quantity).min(MAX_LIMIT)
    }
}

/// Sum of two per-unit contributions, saturating at [`MAX_LIMIT`]; unlimited absorbs.
pub(crate) fn add_saturating(a: u64, b: u64) -> u64 {
    if a == RAW_UNLIMITED || b == RAW_UNLIMITED {
        RAW_UNLIMITED
    } else {
        a.saturating_add(b).min(MAX_LIMIT)
    }
}
