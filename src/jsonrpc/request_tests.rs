//! Tests of `request`, kept apart so that the module itself stays short.
use super::*;
use crate::jsonrpc::codes;

const LIMITS: Limits = Limits {
    max_batch_len: 100,
    version_1: false,
};

fn dec(s: &str) -> Result<Incoming, DecodeError> {
    decode(&Bytes::copy_from_slice(s.as_bytes()), LIMITS)
}

fn single(s: &str) -> Item {
    match dec(s) {
        Ok(Incoming::Single(item)) => item,
        other => panic!("expected single, got {other:?}"),
    }
}

fn call(s: &str) -> Call {
    match single(s) {
        Item::Call(c) => c,
        other => panic!("expected call, got {other:?}"),
    }
}

fn invalid(item: &Item) -> (&[u8], i64) {
    match item {
        Item::Invalid { id, error } => (&id.as_bytes()[..], error.code),
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn id_of(c: &Call) -> Option<&[u8]> {
    c.id.as_ref().map(|i| &i.as_bytes()[..])
}

// JSON-RPC 2.0 specification §7, examples in order.

#[test]
fn spec_positional_params() {
    let c = call(r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#);
    assert_eq!(&*c.method, "subtract");
    assert_eq!(&c.params.as_ref().unwrap()[..], b"[42, 23]");
    assert_eq!(id_of(&c), Some(&b"1"[..]));
}

#[test]
fn spec_named_params() {
    let c = call(
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#,
    );
    assert_eq!(
        &c.params.as_ref().unwrap()[..],
        br#"{"subtrahend": 23, "minuend": 42}"#
    );
    assert_eq!(id_of(&c), Some(&b"3"[..]));
}

#[test]
fn spec_notifications() {
    let c = call(r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#);
    assert!(c.id.is_none());
    let c = call(r#"{"jsonrpc": "2.0", "method": "foobar"}"#);
    assert!(c.id.is_none());
    assert!(c.params.is_none());
}

#[test]
fn spec_invalid_json() {
    let e = dec(r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#).unwrap_err();
    assert_eq!(e.to_error_object().code, codes::PARSE_ERROR);
}

#[test]
fn spec_invalid_request_object() {
    let item = single(r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#);
    assert_eq!(invalid(&item), (&b"null"[..], codes::INVALID_REQUEST));
}

#[test]
fn spec_batch_invalid_json() {
    let e = dec(r#"[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]"#)
    .unwrap_err();
    assert_eq!(e.to_error_object().code, codes::PARSE_ERROR);
}

#[test]
fn spec_empty_array() {
    let e = dec("[]").unwrap_err();
    assert!(matches!(e, DecodeError::EmptyBatch));
    assert_eq!(e.to_error_object().code, codes::INVALID_REQUEST);
}

#[test]
fn spec_invalid_batch_not_empty() {
    let Ok(Incoming::Batch(items)) = dec("[1]") else {
        panic!()
    };
    assert_eq!(items.len(), 1);
    assert_eq!(invalid(&items[0]), (&b"null"[..], codes::INVALID_REQUEST));
}

#[test]
fn spec_invalid_batch() {
    let Ok(Incoming::Batch(items)) = dec("[1,2,3]") else {
        panic!()
    };
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(invalid(item).1, codes::INVALID_REQUEST);
    }
}

#[test]
fn spec_mixed_batch() {
    let Ok(Incoming::Batch(items)) = dec(r#"[
    {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
    {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
    {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
    {"foo": "boo"},
    {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
    {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
]"#)
    else {
        panic!()
    };
    assert_eq!(items.len(), 6);
    let Item::Call(c) = &items[0] else { panic!() };
    assert_eq!(id_of(c), Some(&br#""1""#[..]));
    let Item::Call(c) = &items[1] else { panic!() };
    assert!(c.id.is_none());
    assert_eq!(invalid(&items[3]), (&b"null"[..], codes::INVALID_REQUEST));
    let Item::Call(c) = &items[5] else { panic!() };
    assert_eq!(&*c.method, "get_data");
    assert!(c.params.is_none());
}

#[test]
fn spec_all_notifications_batch() {
    let Ok(Incoming::Batch(items)) = dec(
        r#"[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
            {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]"#,
    ) else {
        panic!()
    };
    assert!(items
        .iter()
        .all(|i| matches!(i, Item::Call(Call { id: None, .. }))));
}

// Ids of every kind come back byte-for-byte.

#[test]
fn ids_are_kept_byte_for_byte() {
    for id in [
        "0",
        "-1",
        "18446744073709551617123",
        "1.5e3",
        "1.0",
        r#""""#,
        r#""abc""#,
        r#""\u00e9\n""#,
        "null",
    ] {
        let c = call(&format!(r#"{{"jsonrpc":"2.0","method":"m","id":{id}}}"#));
        assert_eq!(id_of(&c), Some(id.as_bytes()), "id {id}");
    }
}

#[test]
fn null_id_is_not_a_notification() {
    let c = call(r#"{"jsonrpc":"2.0","method":"m","id":null}"#);
    assert_eq!(id_of(&c), Some(&b"null"[..]));
}

#[test]
fn object_array_and_bool_ids_are_invalid() {
    for id in ["{}", "[1]", "true", "false"] {
        let item = single(&format!(r#"{{"jsonrpc":"2.0","method":"m","id":{id}}}"#));
        assert_eq!(
            invalid(&item),
            (&b"null"[..], codes::INVALID_REQUEST),
            "{id}"
        );
    }
}

#[test]
fn invalid_items_keep_a_readable_id() {
    let item = single(r#"{"jsonrpc":"1.0","method":"m","id":7}"#);
    assert_eq!(invalid(&item), (&b"7"[..], codes::INVALID_REQUEST));
    let item = single(r#"{"method":"m","id":"x"}"#);
    assert_eq!(invalid(&item), (&br#""x""#[..], codes::INVALID_REQUEST));
    let item = single(r#"{"jsonrpc":"2.0","id":8}"#);
    assert_eq!(invalid(&item), (&b"8"[..], codes::INVALID_REQUEST));
    let item = single(r#"{"jsonrpc":"2.0","method":"m","params":5,"id":9}"#);
    assert_eq!(invalid(&item), (&b"9"[..], codes::INVALID_REQUEST));
}

#[test]
fn jsonrpc_must_be_the_string_2_0() {
    for v in ["2", "2.0", r#""2""#, "null"] {
        let item = single(&format!(r#"{{"jsonrpc":{v},"method":"m","id":1}}"#));
        assert_eq!(invalid(&item).1, codes::INVALID_REQUEST, "{v}");
    }
}

#[test]
fn method_escapes_are_decoded_and_raw_text_kept() {
    let c = call(r#"{"jsonrpc":"2.0","method":"eth_\u0063hainId","id":1}"#);
    assert_eq!(&*c.method, "eth_chainId");
    assert_eq!(&c.method_json[..], br#""eth_\u0063hainId""#);
}

#[test]
fn scalars_at_top_level_are_invalid_requests() {
    for body in ["1", r#""x""#, "null", "true"] {
        let e = dec(body).unwrap_err();
        assert_eq!(e.to_error_object().code, codes::INVALID_REQUEST, "{body}");
    }
}

#[test]
fn empty_and_whitespace_bodies_are_parse_errors() {
    for body in ["", "   ", "\n"] {
        let e = dec(body).unwrap_err();
        assert_eq!(e.to_error_object().code, codes::PARSE_ERROR, "{body:?}");
    }
}

#[test]
fn invalid_utf8_is_a_parse_error() {
    let body = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\xfe\",\"id\":1}");
    let e = decode(&body, LIMITS).unwrap_err();
    assert_eq!(e.to_error_object().code, codes::PARSE_ERROR);
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    let deep = format!(
        r#"{{"jsonrpc":"2.0","method":"m","params":{}{},"id":1}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let Err(e) = dec(&deep) else {
        panic!("deep nesting accepted")
    };
    assert_eq!(e.to_error_object().code, codes::INVALID_REQUEST);
    // Brackets inside strings do not count.
    let in_string = format!(
        r#"{{"jsonrpc":"2.0","method":"m","params":["{}\"{}"],"id":1}}"#,
        "[".repeat(1000),
        "{".repeat(1000)
    );
    assert!(matches!(
        dec(&in_string),
        Ok(Incoming::Single(Item::Call(_)))
    ));
}

#[test]
fn moderate_nesting_is_accepted() {
    // The object itself is one level: 127 more fit.
    let params = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
    let c = call(&format!(
        r#"{{"jsonrpc":"2.0","method":"m","params":{params},"id":1}}"#
    ));
    assert_eq!(c.params.unwrap().len(), params.len());
}

#[test]
fn batch_length_limit() {
    let item = r#"{"jsonrpc":"2.0","method":"m","id":1}"#;
    let at_limit = format!("[{}]", vec![item; 100].join(","));
    assert!(matches!(dec(&at_limit), Ok(Incoming::Batch(v)) if v.len() == 100));
    let over = format!("[{}]", vec![item; 101].join(","));
    let e = dec(&over).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::BatchTooLong { len: 101, max: 100 }
    ));
    assert_eq!(e.to_error_object().code, codes::INVALID_REQUEST);
}

#[test]
fn duplicate_ids_in_a_batch_are_each_kept() {
    let Ok(Incoming::Batch(items)) =
        dec(r#"[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b","id":1}]"#)
    else {
        panic!()
    };
    let methods: Vec<_> = items
        .iter()
        .map(|i| match i {
            Item::Call(c) => (c.method.to_string(), id_of(c).map(<[u8]>::to_vec)),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        methods,
        vec![
            ("a".to_string(), Some(b"1".to_vec())),
            ("b".to_string(), Some(b"1".to_vec()))
        ]
    );
}

#[test]
fn duplicate_fields_are_invalid() {
    let item = single(r#"{"jsonrpc":"2.0","method":"a","method":"b","id":1}"#);
    assert_eq!(invalid(&item).1, codes::INVALID_REQUEST);
}

#[test]
fn unknown_fields_are_ignored_and_null_params_kept() {
    let c = call(r#"{"jsonrpc":"2.0","method":"a","params":null,"extra":{"x":1},"id":1}"#);
    assert_eq!(&c.params.as_ref().unwrap()[..], b"null");
}

#[test]
fn slices_point_into_the_body() {
    let body = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"m","params":[1],"id":42}"#);
    let Ok(Incoming::Single(Item::Call(c))) = decode(&body, LIMITS) else {
        panic!()
    };
    let params = c.params.unwrap();
    let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
    assert!(range.contains(&(params.as_ptr() as usize)));
}

mod properties {
    use super::*;
    use crate::jsonrpc::encode_response;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&Bytes::from(body), LIMITS);
        }

        #[test]
        fn any_json_value_as_body_decodes_without_panicking(v in json_value()) {
            let _ = decode(&Bytes::from(v.to_string()), LIMITS);
        }

        #[test]
        fn string_and_number_ids_round_trip_byte_for_byte(
            s in ".*",
            n in any::<i128>(),
            frac in any::<u32>(),
            pick in 0..4u8,
        ) {
            let id = match pick {
                0 => serde_json::to_string(&s).unwrap(),
                1 => n.to_string(),
                2 => format!("{n}.{frac}e-3"),
                _ => "null".to_string(),
            };
            let body = Bytes::from(format!(r#"{{"jsonrpc":"2.0","method":"m","params":[],"id":{id}}}"#));
            let Ok(Incoming::Single(Item::Call(c))) = decode(&body, LIMITS) else {
                return Err(TestCaseError::fail(format!("not a call: {id}")));
            };
            let got = c.id.unwrap();
            prop_assert_eq!(&got.as_bytes()[..], id.as_bytes());
            let out: Vec<u8> = encode_response(&got, &crate::jsonrpc::Payload::Result(Bytes::from_static(b"1")))
                .iter()
                .flat_map(|b| b.to_vec())
                .collect();
            let expected = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":1}}"#);
            prop_assert_eq!(out, expected.into_bytes());
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("jsonrpc".to_string()),
                        Just("method".to_string()),
                        Just("id".to_string()),
                        Just("params".to_string()),
                        ".{0,4}".prop_map(String::from)
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
