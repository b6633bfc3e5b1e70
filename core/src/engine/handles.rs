//! Feature handles and batched lookups on the engine: each resolves against the current view
//! (see [`crate::handle`]).

use crate::handle::{CustomerIds, FeatureHandle, TooManyFeatureKeys};
use crate::model::Decision;

use super::Engine;

impl Engine {
    /// Resolves `key` into a handle for later lookups (see [`FeatureHandle`]). A key that is not in
    /// the current snapshot still gives a handle: it answers `FeatureNotFound` until a snapshot has
    /// the feature.
    ///
    /// # Errors
    /// [`TooManyFeatureKeys`] once the process holds [`MAX_FEATURE_KEYS`](crate::MAX_FEATURE_KEYS) distinct keys.
    pub fn feature(&self, key: impl AsRef<[u8]>) -> Result<FeatureHandle, TooManyFeatureKeys> {
        self.store().load().feature(key)
    }

    /// Decides the handle's feature for `customer` now: the same answer as [`Engine::check`] with
    /// its key, without hashing the key.
    #[inline]
    pub fn check_feature(&self, customer: impl AsRef<[u8]>, feature: FeatureHandle) -> Decision {
        self.store().load().check_feature(customer, feature)
    }

    /// Decides the handle's feature for `customer` at unix time `at`.
    #[inline]
    pub fn check_feature_at(
        &self,
        customer: impl AsRef<[u8]>,
        feature: FeatureHandle,
        at: i64,
    ) -> Decision {
        self.store().load().check_feature_at(customer, feature, at)
    }

    /// Decides one feature for many customers now, overlapping their memory loads; one decision
    /// per customer, in order, all from the same content version.
    pub fn check_customers(
        &self,
        feature: FeatureHandle,
        customers: &(impl CustomerIds + ?Sized),
    ) -> Vec<Decision> {
        let mut decisions = Vec::with_capacity(customers.count());
        self.check_customers_at(feature, customers, None, |_, d| decisions.push(d));
        decisions
    }

    /// Decides one feature for many customers at `at` (`None`: now), calling `out(i, decision)` in
    /// order; allocates nothing. All answers come from the same content version.
    #[inline]
    pub fn check_customers_at(
        &self,
        feature: FeatureHandle,
        customers: &(impl CustomerIds + ?Sized),
        at: Option<i64>,
        out: impl FnMut(usize, Decision),
    ) {
        self.store()
            .load()
            .check_customers_at(feature, customers, at, out);
    }

    /// Decides many features for one customer now: one decision per handle, in order.
    pub fn check_features(
        &self,
        customer: impl AsRef<[u8]>,
        features: &[FeatureHandle],
    ) -> Vec<Decision> {
        let mut decisions = Vec::with_capacity(features.len());
        self.check_features_at(customer, features, None, |_, d| decisions.push(d));
        decisions
    }

    /// Decides many features for one customer at `at` (`None`: now), calling `out(i, decision)` in
    /// order; allocates nothing. All answers come from the same content version.
    #[inline]
    pub fn check_features_at(
        &self,
        customer: impl AsRef<[u8]>,
        features: &[FeatureHandle],
        at: Option<i64>,
        out: impl FnMut(usize, Decision),
    ) {
        self.store()
            .load()
            .check_features_at(customer, features, at, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Reason;

    use crate::catalog::test_snapshot as snapshot;

    #[test]
    fn handles_follow_their_key_across_swaps_and_never_answer_for_another_feature() {
        let a = r#"{"features":[{"key":"a","type":"flag","default":true},{"key":"b","type":"limit","default":5}]}"#;
        let swapped = r#"{"features":[{"key":"b","type":"limit","default":6},{"key":"a","type":"flag","default":false}]}"#;
        let only_b = r#"{"features":[{"key":"b","type":"limit","default":7}]}"#;
        let engine = Engine::from_snapshot(snapshot(a, 1));
        let (ha, hb) = (engine.feature("a").unwrap(), engine.feature("b").unwrap());
        let later = engine.feature("c").unwrap();
        assert_eq!(
            engine.check_feature("x", later).reason,
            Reason::FeatureNotFound
        );
        assert!(engine.check_feature("x", ha).enabled());
        engine.replace(snapshot(swapped, 2));
        assert!(!engine.check_feature("x", ha).enabled());
        assert_eq!(
            engine.check_feature("x", hb).limit(),
            Some(crate::Limit::Finite(6))
        );
        engine.replace(snapshot(only_b, 3));
        let d = engine.check_feature("x", ha);
        assert_eq!(
            (d.reason, d.value, d.version),
            (Reason::FeatureNotFound, None, 3)
        );
        assert_eq!(
            engine.check_feature("x", hb).limit(),
            Some(crate::Limit::Finite(7))
        );
        // A key that appears later is found then.
        engine.replace(snapshot(
            r#"{"features":[{"key":"c","type":"flag","default":true}]}"#,
            4,
        ));
        assert!(engine.check_feature("x", later).enabled());
        assert_eq!(ha.key(), Some(&b"a"[..]));
    }

    #[test]
    fn parts_that_came_from_no_handle_answer_feature_not_found() {
        let engine = Engine::from_snapshot(snapshot(
            r#"{"features":[{"key":"a","type":"flag","default":true}]}"#,
            1,
        ));
        let real = engine.feature("a").unwrap();
        let (table, _, _) = real.to_parts();
        for (t, i, k) in [
            (0, 0, 0),
            (table, 5, 0),
            (table, u32::MAX, 1),
            (1, 0, u32::MAX),
        ] {
            let d = engine.check_feature("x", FeatureHandle::from_parts(t, i, k));
            assert_eq!(d.reason, Reason::FeatureNotFound, "{t} {i} {k}");
        }
        assert_eq!(FeatureHandle::from_parts(0, 0, 0).key(), None);
        assert!(engine
            .check_feature("x", FeatureHandle::from_parts(real.to_parts().0, 0, 0))
            .enabled());
    }
}
