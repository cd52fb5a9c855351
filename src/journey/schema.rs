//! The JSON Schema of the journey language, for editors (`wayprobe schema`).
//!
//! The schema is a hand-written file under version control,
//! `schema/journey.schema.json` (draft-07, the draft the YAML language server
//! supports best), embedded here. Validation itself walks the spanned tree
//! (see [`super::validate`]) and has no serde types a generator could read,
//! so the file is the one source of the schema, and tests keep the two in
//! agreement: the keys each mapping accepts are the validator's key lists
//! (below), and every fixture, example journey and README example that
//! `check` accepts validates against the schema while every fixture `check`
//! rejects for an unknown key or a wrong type is rejected by it
//! (`tests/it/schema.rs`). The schema judges shapes; `check` stays the
//! judge of values (templates, durations, regexes, references).

/// The schema, as JSON text (draft-07), as `wayprobe schema` prints it.
pub const JOURNEY_SCHEMA: &str = include_str!("../../schema/journey.schema.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::validate as v;

    fn schema() -> serde_json::Value {
        serde_json::from_str(super::JOURNEY_SCHEMA).expect("the schema is JSON")
    }

    fn keys(schema: &serde_json::Value, pointer: &str) -> BTreeSet<String> {
        schema
            .pointer(pointer)
            .and_then(|p| p.as_object())
            .unwrap_or_else(|| panic!("no properties at {pointer}"))
            .keys()
            .cloned()
            .collect()
    }

    /// Each mapping of the schema accepts exactly the keys its validator does.
    #[test]
    fn the_schema_accepts_the_keys_validation_accepts() {
        let s = schema();
        let d = "/definitions";
        let pairs: &[(String, &[&str])] = &[
            (format!("{d}/journey/properties"), v::JOURNEY_KEYS),
            (format!("{d}/step/properties"), v::STEP_KEYS),
            (format!("{d}/http/properties"), v::HTTP_KEYS),
            (format!("{d}/httpExpect/properties"), v::EXPECT_KEYS),
            (format!("{d}/textPredicates/properties"), v::TEXT_PREDICATES),
            (
                format!("{d}/textOnlyPredicates/properties"),
                v::TEXT_ONLY_PREDICATES,
            ),
            (format!("{d}/jsonPredicates/properties"), v::JSON_PREDICATES),
            (
                format!("{d}/cookieAssertion/anyOf/1/properties"),
                v::COOKIE_KEYS,
            ),
            (format!("{d}/capture/properties"), v::CAPTURE_KEYS),
            (format!("{d}/slo/properties"), v::SLO_KEYS),
            (
                format!("{d}/fragmentUse/properties"),
                super::super::fragment::USE_KEYS,
            ),
            (
                format!("{d}/fragmentsFile/properties/fragments/additionalProperties/properties"),
                super::super::fragment::FRAGMENT_KEYS,
            ),
            (
                format!(
                    "{d}/fragmentsFile/properties/fragments/additionalProperties/properties/params/anyOf/1/additionalProperties/anyOf/1/properties"
                ),
                super::super::fragment::PARAM_KEYS,
            ),
            (
                format!("{d}/slo/properties/alerting/properties"),
                v::ALERTING_KEYS,
            ),
            (
                format!("{d}/browserAction/properties/expect/properties"),
                super::super::browser::EXPECT_KEYS,
            ),
        ];
        for (pointer, accepted) in pairs {
            let in_schema = keys(&s, pointer);
            let in_validator: BTreeSet<String> = accepted.iter().map(|k| k.to_string()).collect();
            let missing: Vec<_> = in_validator.difference(&in_schema).collect();
            let extra: Vec<_> = in_schema.difference(&in_validator).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{pointer}: the schema lacks {missing:?} and has {extra:?} beyond validation"
            );
        }
        // Actions: each is a key of an action item, next to its `timeout`.
        let mut actions: BTreeSet<String> = super::super::browser::ACTIONS
            .iter()
            .map(|k| k.to_string())
            .collect();
        actions.insert("timeout".into());
        assert_eq!(keys(&s, &format!("{d}/browserAction/properties")), actions);
        // Capture sources: exactly one of them.
        let one_of: BTreeSet<String> = s
            .pointer(&format!("{d}/capture/oneOf"))
            .and_then(|o| o.as_array())
            .expect("capture sources")
            .iter()
            .map(|r| r["required"][0].as_str().expect("a key").to_string())
            .collect();
        let sources: BTreeSet<String> = v::CAPTURE_SOURCES.iter().map(|k| k.to_string()).collect();
        assert_eq!(one_of, sources);
    }
}
