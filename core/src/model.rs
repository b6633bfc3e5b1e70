//! The values evaluation deals in: feature types, limits, reasons and decisions.

use std::fmt;

/// The largest finite limit: `9223372036854775807` (`i64::MAX`), so every language can hold it.
pub const MAX_LIMIT: u64 = i64::MAX as u64;

/// The raw encoding of `unlimited` inside tables (never a valid finite limit).
pub(crate) const RAW_UNLIMITED: u64 = u64::MAX;

/// Whether a feature is an on/off flag or a numeric limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeatureType {
    /// An on/off feature ("SSO").
    Flag,
    /// A numeric allowance ("up to 50 projects"), possibly unlimited.
    Limit,
}

impl FeatureType {
    /// The name used in catalogs and CLI output: `"flag"` or `"limit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureType::Flag => "flag",
            FeatureType::Limit => "limit",
        }
    }
}

/// A limit: a whole number in `0..=MAX_LIMIT`, or unlimited.
///
/// `Unlimited` compares greater than every finite limit, so `max` and ordering do the right thing.
///
/// # Examples
/// ```
/// use entitle_core::Limit;
/// assert!(Limit::Unlimited > Limit::Finite(u64::MAX));
/// assert!(Limit::Finite(5).allows(4, 1));
/// assert!(!Limit::Finite(5).allows(5, 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limit {
    /// A finite limit.
    Finite(u64),
    /// No limit at all.
    Unlimited,
}

impl Limit {
    /// Whether `usage + requested` fits within the limit (an overflowing sum never fits a finite limit).
    #[inline]
    pub fn allows(self, usage: u64, requested: u64) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::Finite(limit) => usage.checked_add(requested).is_some_and(|sum| sum <= limit),
        }
    }

    /// The limit as a number where one must be given: `None` for unlimited.
    pub fn finite(self) -> Option<u64> {
        match self {
            Limit::Finite(n) => Some(n),
            Limit::Unlimited => None,
        }
    }

    #[inline]
    pub(crate) fn from_raw(raw: u64) -> Limit {
        if raw == RAW_UNLIMITED {
            Limit::Unlimited
        } else {
            Limit::Finite(raw)
        }
    }

    #[inline]
    pub(crate) fn to_raw(self) -> u64 {
        match self {
            Limit::Finite(n) => n,
            Limit::Unlimited => RAW_UNLIMITED,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Finite(n) => write!(f, "{n}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A feature value: a flag's boolean or a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// The value of a flag feature.
    Flag(bool),
    /// The value of a limit feature.
    Limit(Limit),
}

impl Value {
    /// The raw table encoding: flags as 0/1, limits as the number or `u64::MAX` for unlimited.
    #[inline]
    pub(crate) fn to_raw(self) -> u64 {
        match self {
            Value::Flag(b) => u64::from(b),
            Value::Limit(l) => l.to_raw(),
        }
    }

    #[inline]
    pub(crate) fn from_raw(kind: FeatureType, raw: u64) -> Value {
        match kind {
            FeatureType::Flag => Value::Flag(raw != 0),
            FeatureType::Limit => Value::Limit(Limit::from_raw(raw)),
        }
    }

    /// The type of feature this value belongs to.
    pub fn feature_type(self) -> FeatureType {
        match self {
            Value::Flag(_) => FeatureType::Flag,
            Value::Limit(_) => FeatureType::Limit,
        }
    }
}

/// Why a decision came out as it did (SPEC section 2).
///
/// The numeric codes are stable: they are stored in snapshots and cross the C ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// The feature's default applied (no granting subscription beat it).
    Default = 0,
    /// A granting subscription's products gave the value.
    Subscription = 1,
    /// A customer override replaced the value.
    Override = 2,
    /// The customer is not in the snapshot; the feature's default applied.
    CustomerNotFound = 3,
    /// The feature is not in the snapshot.
    FeatureNotFound = 4,
}

impl Reason {
    /// The reason's name as the CLI and the conformance suite spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Default => "default",
            Reason::Subscription => "subscription",
            Reason::Override => "override",
            Reason::CustomerNotFound => "customer_not_found",
            Reason::FeatureNotFound => "feature_not_found",
        }
    }

    /// The reason with the given stable code, if any.
    pub fn from_code(code: u8) -> Option<Reason> {
        Some(match code {
            0 => Reason::Default,
            1 => Reason::Subscription,
            2 => Reason::Override,
            3 => Reason::CustomerNotFound,
            4 => Reason::FeatureNotFound,
            _ => return None,
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One evaluated cell: a raw value and why. What tables store, one per feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Cell {
    pub(crate) raw: u64,
    pub(crate) reason: Reason,
}

/// The answer to "may customer C use feature F at time T, and up to what limit?".
///
/// # Examples
/// ```
/// use entitle_core::{Catalog, Limit, Reason};
/// let catalog = Catalog::from_json(br#"{"features":[{"key":"projects","type":"limit","default":3}]}"#)?;
/// let d = catalog.check("cus_unknown", "projects", 0);
/// assert_eq!(d.limit(), Some(Limit::Finite(3)));
/// assert_eq!(d.reason, Reason::CustomerNotFound);
/// assert!(d.allows(2, 1));
/// # Ok::<(), entitle_core::CatalogError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The value, or `None` when the feature is not in the snapshot.
    pub value: Option<Value>,
    /// Why the value is what it is.
    pub reason: Reason,
    /// The content version of the snapshot that answered (0 for a bare catalog).
    pub version: u64,
}

impl Decision {
    #[inline]
    pub(crate) fn new(kind: FeatureType, cell: Cell, version: u64) -> Decision {
        Decision {
            value: Some(Value::from_raw(kind, cell.raw)),
            reason: cell.reason,
            version,
        }
    }

    #[inline]
    pub(crate) fn feature_not_found(version: u64) -> Decision {
        Decision {
            value: None,
            reason: Reason::FeatureNotFound,
            version,
        }
    }

    /// The feature's type, or `None` when the feature is not found.
    pub fn feature_type(&self) -> Option<FeatureType> {
        self.value.map(Value::feature_type)
    }

    /// SPEC 2.6: a flag's value; for a limit, unlimited or greater than 0. False for unknown features.
    #[inline]
    pub fn enabled(&self) -> bool {
        match self.value {
            Some(Value::Flag(b)) => b,
            Some(Value::Limit(Limit::Unlimited)) => true,
            Some(Value::Limit(Limit::Finite(n))) => n > 0,
            None => false,
        }
    }

    /// The limit of a limit feature; `None` for flags and unknown features.
    #[inline]
    pub fn limit(&self) -> Option<Limit> {
        match self.value {
            Some(Value::Limit(l)) => Some(l),
            _ => None,
        }
    }

    /// SPEC 2.7: a flag allows when enabled; a limit when unlimited or `usage + requested <= limit`.
    #[inline]
    pub fn allows(&self, usage: u64, requested: u64) -> bool {
        match self.value {
            Some(Value::Flag(b)) => b,
            Some(Value::Limit(l)) => l.allows(usage, requested),
            None => false,
        }
    }
}
