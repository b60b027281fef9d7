//! JMS selector evaluation: each selector is compiled once, as a consumer's is, then
//! evaluated against a message with a handful of properties, as the queue's dispatch does
//! for every candidate message. Parsing is measured too, since every OpenWire or STOMP
//! subscription with a selector pays it once.
//!
//! ```text
//! cargo bench -p ferromq-bench --bench selector -- --quick
//! ```

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferromq_core::{FieldValue, Message, Selector, SelectorLimits};

/// (name, selector text, whether it selects [`message`]).
const SELECTORS: [(&str, &str, bool); 6] = [
    ("and", "color = 'red' AND weight > 10", true),
    ("or-in", "JMSPriority > 4 OR region IN ('eu', 'us')", true),
    ("like", "sku LIKE 'AB-%-7_'", true),
    ("not-selected", "color = 'blue' AND weight > 10", false),
    (
        "between-null",
        "weight BETWEEN 5 AND 20 AND coupon IS NULL",
        true,
    ),
    (
        "long",
        "(color = 'red' OR color = 'green') AND weight * 2 > 20 AND region <> 'apac' \
         AND JMSType = 'order' AND sku NOT LIKE '%-X%'",
        true,
    ),
];

/// A message as a JMS producer leaves it: a type, a priority, five properties.
fn message() -> Message {
    let mut m = Message::new("", "orders", Bytes::from_static(&[0; 256]));
    let p = &mut m.properties;
    p.priority = Some(4);
    p.message_type = Some("order".into());
    p.headers.insert("color", FieldValue::Str("red".into()));
    p.headers.insert("weight", FieldValue::I32(12));
    p.headers.insert("region", FieldValue::Str("eu".into()));
    p.headers
        .insert("sku", FieldValue::Str("AB-1234-77".into()));
    p.headers.insert("customer", FieldValue::I64(991_234));
    m
}

fn selectors(c: &mut Criterion) {
    let limits = SelectorLimits::default();
    let msg = message();

    let mut g = c.benchmark_group("selector/evaluate");
    g.throughput(Throughput::Elements(1));
    for (name, text, selected) in SELECTORS {
        let s = Selector::parse(text, &limits).expect("valid selector");
        assert_eq!(s.matches(&msg, 0), selected, "{text}");
        g.bench_with_input(BenchmarkId::from_parameter(name), &s, |b, s| {
            b.iter(|| s.matches(black_box(&msg), 0))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("selector/parse");
    g.throughput(Throughput::Elements(1));
    for (name, text, _) in SELECTORS {
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter_with_large_drop(|| Selector::parse(black_box(text), &limits))
        });
    }
    g.finish();
}

criterion_group!(benches, selectors);
criterion_main!(benches);
