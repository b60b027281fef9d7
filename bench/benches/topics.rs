//! Topic matching with 100,000 bindings: the core's topic trie (what `amq.topic` and every
//! topic exchange route with, and what MQTT and STOMP topics are translated into), MQTT's
//! per-filter matcher (used to scan a session's subscriptions and the retained store),
//! and the cost of adding bindings.
//!
//! The bindings are a deterministic mix over keys `region.service.entity.event` (20 x 50 x
//! 100 x 10 words): 70 % exact keys, 20 % with one `*` and 10 % ending in `#` (mostly
//! `region.service.#`, 0.5 % `region.#`, 0.1 % `#.event` at the root, the costly shape:
//! `#` tries every suffix of the key).
//! Published keys are drawn from the same space, so some hit exact bindings and most hit
//! only wildcards.
//!
//! ```text
//! cargo bench -p ferromq-bench --bench topics -- --quick
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferromq_core::topic::TopicTrie;
use ferromq_core::{Broker, BrokerConfig, FieldTable, QueueOptions, SystemClock};
use ferromq_mqtt::mapping::{binding_key, filter_matches, routing_key};

const BINDINGS: usize = 100_000;
/// Routing keys published, cycled through.
const KEYS: usize = 1024;
/// Queues the bindings point at.
const QUEUES: u32 = 1_000;

const REGIONS: u64 = 20;
const SERVICES: u64 = 50;
const ENTITIES: u64 = 100;
const EVENTS: u64 = 10;

/// A small deterministic generator (SplitMix64), so every run binds the same patterns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn words(rng: &mut Rng) -> [String; 4] {
    [
        format!("r{}", rng.below(REGIONS)),
        format!("svc{}", rng.below(SERVICES)),
        format!("e{}", rng.below(ENTITIES)),
        format!("ev{}", rng.below(EVENTS)),
    ]
}

/// Binding patterns in the core's syntax (`.`, `*`, `#`).
fn patterns() -> Vec<String> {
    let mut rng = Rng(1);
    (0..BINDINGS)
        .map(|_| {
            let [r, s, e, v] = words(&mut rng);
            match rng.below(1000) {
                0..700 => format!("{r}.{s}.{e}.{v}"),
                700..800 => format!("{r}.{s}.*.{v}"),
                800..900 => format!("*.{s}.{e}.{v}"),
                900..994 => format!("{r}.{s}.#"),
                994..999 => format!("{r}.#"),
                _ => format!("#.{v}"),
            }
        })
        .collect()
}

fn keys() -> Vec<String> {
    let mut rng = Rng(2);
    (0..KEYS).map(|_| words(&mut rng).join(".")).collect()
}

/// The same pattern as an MQTT filter (`/`, `+`, `#`).
fn mqtt(pattern: &str) -> String {
    pattern.replace('.', "/").replace('*', "+")
}

fn trie(patterns: &[String]) -> TopicTrie<u32> {
    let mut t = TopicTrie::new();
    for (i, p) in patterns.iter().enumerate() {
        t.insert(p, i as u32 % QUEUES);
    }
    t
}

fn core_trie(c: &mut Criterion) {
    let patterns = patterns();
    let keys = keys();
    let t = trie(&patterns);

    let mut g = c.benchmark_group("topic/core trie");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("match one key (100k bindings)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let mut n = 0u32;
            t.for_each_match(black_box(&keys[i]), &mut |v| n = n.wrapping_add(*v));
            n
        })
    });
    g.throughput(Throughput::Elements(BINDINGS as u64));
    g.bench_function("insert 100k bindings", |b| {
        b.iter_with_large_drop(|| trie(black_box(&patterns)))
    });
    g.finish();

    let mut hits = 0usize;
    for k in &keys {
        t.for_each_match(k, &mut |_| hits += 1);
    }
    println!(
        "topic/core trie: {:.1} matching bindings per key on average",
        hits as f64 / KEYS as f64
    );
}

/// MQTT publishes route through the core trie after translating the topic; SUBSCRIBE
/// translates the filter into a binding key.
fn mqtt_topics(c: &mut Criterion) {
    let filters: Vec<String> = patterns().iter().map(|p| mqtt(p)).collect();
    let topics: Vec<String> = keys().iter().map(|k| mqtt(k)).collect();
    let build = |filters: &[String]| {
        let mut t = TopicTrie::new();
        for (i, f) in filters.iter().enumerate() {
            t.insert(&binding_key(f), i as u32 % QUEUES);
        }
        t
    };
    let t = build(&filters);

    let mut g = c.benchmark_group("topic/mqtt");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("route one topic: routing_key + trie (100k filters)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let key = routing_key(black_box(&topics[i]));
            let mut n = 0u32;
            t.for_each_match(&key, &mut |v| n = n.wrapping_add(*v));
            n
        })
    });
    g.throughput(Throughput::Elements(BINDINGS as u64));
    g.bench_function("subscribe 100k filters: binding_key + trie insert", |b| {
        b.iter_with_large_drop(|| build(black_box(&filters)))
    });
    // The linear matcher, per filter: what a scan of many subscriptions or retained
    // topics costs, for comparison with the trie.
    g.bench_function("filter_matches scan of 100k filters", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let topic = black_box(&topics[i]);
            filters.iter().filter(|f| filter_matches(f, topic)).count()
        })
    });
    g.finish();
}

/// Binding through the vhost, which is what AMQP `queue.bind`, MQTT SUBSCRIBE and STOMP
/// SUBSCRIBE do: one more binding (and its removal) on `amq.topic` holding 100,000.
fn vhost_bind(c: &mut Criterion) {
    let patterns = patterns();
    let broker = Broker::new(BrokerConfig::default(), Arc::new(SystemClock));
    let vhost = broker.vhost("/").expect("default vhost");
    for q in 0..QUEUES {
        vhost
            .declare_queue(&format!("q{q}"), QueueOptions::default(), false, 0)
            .expect("declare");
    }
    let started = std::time::Instant::now();
    for (i, p) in patterns.iter().enumerate() {
        let q = format!("q{}", i as u32 % QUEUES);
        vhost
            .bind_queue(&q, "amq.topic", p, FieldTable::new(), 0)
            .expect("bind");
    }
    println!(
        "topic/vhost: binding 100k keys to amq.topic one by one took {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("topic/vhost amq.topic");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bind + unbind one key (100k bindings)", |b| {
        b.iter(|| {
            vhost
                .bind_queue("q0", "amq.topic", "new.binding.key.x", FieldTable::new(), 0)
                .expect("bind");
            vhost
                .unbind_queue(
                    "q0",
                    "amq.topic",
                    "new.binding.key.x",
                    &FieldTable::new(),
                    0,
                )
                .expect("unbind");
        })
    });
    g.finish();
}

criterion_group!(benches, core_trie, mqtt_topics, vhost_bind);
criterion_main!(benches);
