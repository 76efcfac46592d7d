use super::*;

#[test]
fn names_are_checked() {
    assert!(RecordId::new("").is_err());
    assert!(RecordId::new("a\nb").is_err());
    assert!(RecordId::new("x".repeat(257)).is_err());
    assert!(RecordId::new("x".repeat(256)).is_ok());
    assert!(matches!(
        check_field_name("_deleted"),
        Err(InvalidInput::ReservedField { .. })
    ));
}

#[test]
fn a_clock_before_1970_or_past_the_year_10889_gives_a_clamped_time() {
    use std::time::{Duration, UNIX_EPOCH};
    let before = UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 30);
    assert_eq!(unix_ms(before), 0);
    assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_nanos(1)), 0);
    assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
    let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
    assert_eq!(unix_ms(far), MAX_TIME_MS);
    assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(MAX_TIME_MS)), MAX_TIME_MS);
}

#[test]
fn op_ids_at_the_clamped_ends_are_distinct_v7_ids_of_that_time() {
    for ms in [0, 1, MAX_TIME_MS, u64::MAX] {
        let context = std::sync::Mutex::new(uuid::ContextV7::new());
        let ids: std::collections::HashSet<OpId> = (0..1000).map(|_| OpId::v7(&context, ms)).collect();
        assert_eq!(ids.len(), 1000, "ids at {ms} ms repeat");
        for id in &ids {
            assert_eq!(id.0.get_version_num(), 7, "{id}");
            let (secs, nanos) = id.0.get_timestamp().expect("a v7 id has a time").to_unix();
            let at = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert_eq!(at, ms.clamp(1, MAX_TIME_MS), "the time of an id made at {ms} ms");
        }
    }
}

#[test]
fn names_in_nfd_and_nfc_are_one_name_and_peers_names_are_kept_as_sent() {
    let composed = RecordId::new("caf\u{e9}").unwrap();
    let decomposed = RecordId::new("cafe\u{301}").unwrap();
    assert_eq!(composed, decomposed);
    assert_eq!(decomposed.as_str(), "caf\u{e9}");
    assert_eq!(Collection::new("e\u{301}").unwrap().as_str(), "\u{e9}");
    let foreign = RecordId::exact("cafe\u{301}").unwrap();
    assert_eq!(foreign.as_str(), "cafe\u{301}");
    assert!(!foreign.is_nfc() && composed.is_nfc());
    let package = Package::from_json(r#"{"version": 1, "collections": {"cafe\u0301": {"fields": {}}}}"#).unwrap();
    assert!(package.collection("caf\u{e9}").is_ok());
    let twice = r#"{"version": 1, "collections": {"\u00e9": {"fields": {}}, "e\u0301": {"fields": {}}}}"#;
    assert!(
        Package::from_json(twice)
            .unwrap_err()
            .to_string()
            .contains("normal form")
    );
}

#[test]
fn op_encoding_round_trips_and_rejects_truncation() {
    let op = Op {
        id: OpId::new(),
        actor: ActorId::random(),
        collection: Collection::new("contacts").unwrap(),
        record: RecordId::new("c1").unwrap(),
        time_ms: 42,
        change: vec![1, 2, 3],
    };
    let bytes = op.encode();
    assert_eq!(Op::decode(&bytes).unwrap(), op);
    for cut in 0..bytes.len() - 3 {
        assert!(Op::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_package_version_is_read_as_a_whole_number_in_any_spelling_json_schema_allows() {
    let version =
        |v: &str| Package::from_json(&format!(r#"{{"version": {v}, "collections": {{}}}}"#)).map(|p| p.version);
    assert_eq!(version("5").unwrap(), 5);
    assert_eq!(version("5.0").unwrap(), 5);
    assert_eq!(version("5e3").unwrap(), 5000);
    assert_eq!(version("9007199254740992.0").unwrap(), 1 << 53);
    // Read exactly, not to the nearest float within an error of one unit.
    assert_eq!(version("2015551269954823.0").unwrap(), 2_015_551_269_954_823);
    assert_eq!(version("18446744073709551615").unwrap(), u64::MAX);
    for (bad, says) in [
        ("-1", "negative"),
        ("1.5", "not a whole number"),
        ("1e19", "write it as an integer"),
        ("18446744073709551616", "past 2^64 - 1"),
        ("\"5\"", "whole number"),
    ] {
        let error = version(bad).unwrap_err().to_string();
        assert!(error.contains(says), "{bad}: {error}");
    }
}
