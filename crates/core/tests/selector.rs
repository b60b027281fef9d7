//! The JMS selector language: parsing, limits, and evaluation against core messages
//! (types, three-valued logic with NULL, LIKE with escapes, precedence, JMS header fields).

use bytes::Bytes;
use ferromq_core::{FieldValue, Message, Selector, SelectorLimits};

fn msg() -> Message {
    let mut m = Message::new("", "q", Bytes::from_static(b"body"));
    let p = &mut m.properties;
    p.persistent = true;
    p.priority = Some(7);
    p.message_id = Some("ID:host-1:1:1:1".into());
    p.timestamp_ms = Some(1_000);
    p.expiration_ms = Some(500);
    p.correlation_id = Some("corr-1".into());
    p.message_type = Some("order".into());
    let h = &mut p.headers;
    h.insert("color", FieldValue::Str("red".into()));
    h.insert("size", FieldValue::I32(10));
    h.insert("weight", FieldValue::F64(2.5));
    h.insert("big", FieldValue::I64(i64::MAX));
    h.insert("small", FieldValue::I8(-3));
    h.insert("flag", FieldValue::Bool(true));
    h.insert("off", FieldValue::Bool(false));
    h.insert("path", FieldValue::Str("a_b%c\\d".into()));
    h.insert("content-type", FieldValue::Str("text/plain".into()));
    h.insert("blob", FieldValue::Bytes(Bytes::from_static(b"x")));
    m
}

fn sel(text: &str) -> Selector {
    Selector::parse(text, &SelectorLimits::default())
        .unwrap_or_else(|e| panic!("'{text}' should parse: {e}"))
}

fn eval(text: &str) -> bool {
    sel(text).matches(&msg(), 0)
}

fn refused(text: &str) -> String {
    match Selector::parse(text, &SelectorLimits::default()) {
        Ok(s) => panic!("'{text}' should be refused, parsed as {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn comparisons_of_each_type() {
    for yes in [
        "color = 'red'",
        "color <> 'blue'",
        "size = 10",
        "size > 9 AND size < 11 AND size >= 10 AND size <= 10",
        "size <> 11",
        "weight = 2.5",
        "weight > 2",
        "size = 10.0",
        "small = -3",
        "flag = TRUE",
        "flag",
        "off = false",
        "big = 9223372036854775807",
        "size = 10L",
        "weight < 25E-1 OR weight = 2.5e0",
        "weight > .5 AND weight < 3.",
    ] {
        assert!(eval(yes), "{yes}");
    }
    for no in [
        "color = 'Red'",
        "size = 11",
        "size > 10",
        "weight < 2.5",
        "flag = FALSE",
        "off",
    ] {
        assert!(!eval(no), "{no}");
    }
}

#[test]
fn jms_header_fields_come_from_message_properties() {
    for yes in [
        "JMSDeliveryMode = 'PERSISTENT'",
        "JMSPriority = 7",
        "JMSPriority BETWEEN 5 AND 9",
        "JMSMessageID = 'ID:host-1:1:1:1'",
        "JMSTimestamp = 1000",
        "JMSCorrelationID = 'corr-1'",
        "JMSType = 'order'",
        "JMSExpiration = 1500",
        "JMSXDeliveryCount = 1",
        "NOT JMSRedelivered",
    ] {
        assert!(eval(yes), "{yes}");
    }
    let redelivered = sel("JMSRedelivered AND JMSXDeliveryCount = 3");
    assert!(redelivered.matches(&msg(), 2));
    assert!(!redelivered.matches(&msg(), 0));

    // Unset fields: NULL, except priority (JMS default 4) and expiration (0).
    let bare = Message::new("", "q", Bytes::new());
    for yes in [
        "JMSType IS NULL",
        "JMSCorrelationID IS NULL",
        "JMSPriority = 4",
        "JMSExpiration = 0",
        "JMSDeliveryMode = 'NON_PERSISTENT'",
    ] {
        assert!(sel(yes).matches(&bare, 0), "{yes}");
    }
}

#[test]
fn null_is_unknown_in_three_valued_logic() {
    // A missing property compares as unknown: neither it nor its negation selects.
    for unknown in [
        "missing = 'x'",
        "missing <> 'x'",
        "NOT (missing = 'x')",
        "missing > 1",
        "missing + 1 = 2",
        "missing BETWEEN 1 AND 2",
        "missing NOT BETWEEN 1 AND 2",
        "missing IN ('a')",
        "missing NOT IN ('a')",
        "missing LIKE '%'",
        "missing NOT LIKE '%'",
        "missing",
        "NOT missing",
        "missing = 'x' AND size = 10",
        "missing = 'x' OR size = 11",
        // A value of another type or an unsupported one compares as unknown too.
        "color = 1 + size",
        "blob = 'x'",
        "color > size",
    ] {
        assert!(!eval(unknown), "{unknown}");
    }
    // AND with FALSE is FALSE, OR with TRUE is TRUE, whatever the unknown side.
    assert!(eval("NOT (missing = 'x' AND size = 11)"));
    assert!(eval("missing = 'x' OR size = 10"));
    assert!(eval("missing IS NULL AND color IS NOT NULL"));
    assert!(!eval("color IS NULL"));
    assert!(eval("NOT (missing = 'x' OR size = 10) OR TRUE"));
}

#[test]
fn like_with_wildcards_and_escapes() {
    for yes in [
        "color LIKE 'r%'",
        "color LIKE '_ed'",
        "color LIKE '%'",
        "color LIKE 'r%d'",
        "color LIKE '%e%'",
        "color NOT LIKE 'b%'",
        "path LIKE 'a!_b!%c\\d' ESCAPE '!'",
        "path LIKE 'a\\_b\\%c\\\\d' ESCAPE '\\'",
        "path LIKE 'a_b%'",
        "path LIKE '%\\d'",
        "\"content-type\" LIKE 'text/%'",
    ] {
        assert!(eval(yes), "{yes}");
    }
    for no in [
        "color LIKE 'r'",
        "color LIKE '__'",
        "color LIKE 'R%'",
        // Escaped wildcards are literal: 'a_b' has no literal '%' after 'a_b'... but
        // 'aXb' would match an unescaped '_'.
        "path LIKE 'a!_c%' ESCAPE '!'",
        "path LIKE 'a_b!%d%' ESCAPE '!'",
    ] {
        assert!(!eval(no), "{no}");
    }
    // Multi-byte characters count as one for '_'.
    let mut m = msg();
    m.properties
        .headers
        .insert("word", FieldValue::Str("grün".into()));
    assert!(sel("word LIKE 'gr_n'").matches(&m, 0));
    assert!(!sel("word LIKE 'gr__n'").matches(&m, 0));
}

#[test]
fn in_and_between() {
    assert!(eval("color IN ('blue', 'red')"));
    assert!(!eval("color IN ('blue', 'green')"));
    assert!(eval("color NOT IN ('blue', 'green')"));
    assert!(eval("size BETWEEN 10 AND 20"));
    assert!(eval("size BETWEEN 5 AND 10"));
    assert!(!eval("size BETWEEN 11 AND 20"));
    assert!(eval("size NOT BETWEEN 11 AND 20"));
    assert!(eval("weight BETWEEN size / 5 AND size - 7"));
}

#[test]
fn precedence_and_arithmetic() {
    // * before +, unary minus, parentheses.
    assert!(eval("size + 2 * 3 = 16"));
    assert!(eval("(size + 2) * 3 = 36"));
    assert!(eval("-size * 2 = -20"));
    assert!(eval("size - -2 = 12"));
    assert!(eval("size / 4 = 2"), "integer division truncates");
    assert!(eval("size / 4.0 = 2.5"));
    assert!(!eval("size / 0 = 0"), "integer division by zero is NULL");
    assert!(!eval("size / 0 <> 0"), "NULL is neither equal nor unequal");
    assert!(
        eval("big * 2 > big"),
        "overflow continues in floating point"
    );
    // NOT binds tighter than AND, AND tighter than OR.
    assert!(eval("size = 11 AND color = 'red' OR flag"));
    assert!(!eval("size = 11 AND (color = 'red' OR flag)"));
    assert!(eval("NOT size = 11 AND flag"));
    assert!(!eval("NOT (size = 10 AND flag)"));
    // Keywords are case-insensitive, identifiers are not.
    assert!(eval("color = 'red' and not size = 11 and SIZE is null"));
    assert!(eval("Color is null"));
}

#[test]
fn malformed_selectors_are_refused_with_a_position() {
    for bad in [
        "color =",
        "= 'red'",
        "color = 'red",
        "color == 'red'",
        "color = 'red' AND",
        "(color = 'red'",
        "color = 'red')",
        "color LIKE 5",
        "color LIKE 'a' ESCAPE 'ab'",
        "color LIKE 'a!' ESCAPE '!'",
        "color LIKE 'a!b' ESCAPE '!'",
        "color IN ()",
        "color IN (1, 2)",
        "5 IN ('a')",
        "'a' LIKE 'a'",
        "size IS 5",
        "size NOT 5",
        "1 + 2",
        "'text'",
        "color = 'a' AND 5",
        "'a' < 'b'",
        "flag > TRUE",
        "JMSPriority = 'high'",
        "JMSType = 3",
        "'a' + 1 = 2",
        "99999999999999999999 = size",
        "1e = size",
        "12abc = size",
        "color = 'red' # x",
        "\"\" = 'x'",
    ] {
        let e = refused(bad);
        assert!(e.contains("invalid selector at offset"), "{bad}: {e}");
    }
    let e = Selector::parse("color = 'red' AND size = ", &SelectorLimits::default()).unwrap_err();
    assert_eq!(e.position, 25, "{e}");
    assert!(e.message.contains("end"), "{e}");
}

#[test]
fn limits_bound_length_and_depth() {
    let limits = SelectorLimits {
        length_max_bytes: 64,
        depth_max: 8,
    };
    let long = format!("color = '{}'", "x".repeat(60));
    assert!(Selector::parse(&long, &limits)
        .unwrap_err()
        .message
        .contains("limit"));
    let nested = format!("{}flag{}", "(".repeat(9), ")".repeat(9));
    assert!(Selector::parse(&nested, &limits)
        .unwrap_err()
        .message
        .contains("limit"));
    let nots = format!("{}flag", "NOT ".repeat(9));
    assert!(Selector::parse(
        &nots,
        &SelectorLimits {
            length_max_bytes: 1000,
            depth_max: 8
        }
    )
    .is_err());
    let chain = format!("size{} = 0", " + 1".repeat(9));
    assert!(Selector::parse(
        &chain,
        &SelectorLimits {
            length_max_bytes: 1000,
            depth_max: 8
        }
    )
    .is_err());
    // Within the limits all of these parse.
    assert!(Selector::parse(&format!("{}flag{}", "(".repeat(7), ")".repeat(7)), &limits).is_ok());
    // Hostile nesting far beyond the default never overflows the stack.
    let deep = format!("{}flag{}", "(".repeat(5000), ")".repeat(5000));
    assert!(Selector::parse(
        &deep,
        &SelectorLimits {
            length_max_bytes: 1 << 20,
            depth_max: 64
        }
    )
    .is_err());
    // A long OR of alternatives is wide, not deep.
    let alts: Vec<String> = (0..200).map(|i| format!("size = {i}")).collect();
    assert!(sel(&alts.join(" OR ")).matches(&msg(), 0));
}

#[test]
fn blank_selectors_mean_none() {
    let l = SelectorLimits::default();
    assert!(Selector::parse_optional(None, &l).unwrap().is_none());
    assert!(Selector::parse_optional(Some("  "), &l).unwrap().is_none());
    assert!(Selector::parse_optional(Some("flag"), &l)
        .unwrap()
        .is_some());
    assert!(Selector::parse("", &l).is_err());
    assert_eq!(sel("flag AND x = 'y'").text(), "flag AND x = 'y'");
}
