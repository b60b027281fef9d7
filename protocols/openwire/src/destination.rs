//! OpenWire destination names and how they map onto the core.
//!
//! - `queue://q` is the queue `q` (declared on first use), fed by the default exchange.
//! - `topic://a.b` publishes to `amq.topic` with key `a.b`; subscribing binds a
//!   subscription queue with the pattern, ActiveMQ's `>` becoming `#` (`*` is the same).
//! - A composite name `a,b` is several destinations; an element may carry its own
//!   `queue://`/`topic://` prefix (ActiveMQ's mixed composites).
//! - `Consumer.<name>.VirtualTopic.<x>` as a queue is a queue bound to `amq.topic` with
//!   key `VirtualTopic.<x>`: every consumer group gets every message once.
//! - `ActiveMQ.Advisory.*` topics exist for clients that subscribe to them by default; the
//!   broker publishes nothing there.

use bytestring::ByteString;

use crate::command::Destination;

/// Prefix of ActiveMQ's advisory topics.
pub const ADVISORY_PREFIX: &str = "ActiveMQ.Advisory.";

/// The dead-letter queue for poison messages.
pub const DLQ: &str = "ActiveMQ.DLQ";

/// Splits a composite destination into its elements (a plain one is one element).
pub fn elements(d: &Destination) -> Vec<Destination> {
    let name = d.name();
    if !name.contains(',') {
        return vec![d.clone()];
    }
    name.split(',')
        .filter(|s| !s.is_empty())
        .map(|part| {
            let part = part.trim();
            if let Some(q) = part.strip_prefix("queue://") {
                Destination::Queue(q.into())
            } else if let Some(t) = part.strip_prefix("topic://") {
                Destination::Topic(t.into())
            } else {
                match d {
                    Destination::Queue(_) => Destination::Queue(part.into()),
                    Destination::Topic(_) => Destination::Topic(part.into()),
                    Destination::TempQueue(_) => Destination::TempQueue(part.into()),
                    Destination::TempTopic(_) => Destination::TempTopic(part.into()),
                }
            }
        })
        .collect()
}

/// True for an advisory topic.
pub fn is_advisory(d: &Destination) -> bool {
    d.is_topic() && d.name().starts_with(ADVISORY_PREFIX)
}

/// For `Consumer.<name>.VirtualTopic.<x>`, the topic `VirtualTopic.<x>` it consumes.
pub fn virtual_topic_of(queue: &str) -> Option<&str> {
    let rest = queue.strip_prefix("Consumer.")?;
    let at = rest.find(".VirtualTopic.")?;
    if at == 0 {
        return None;
    }
    Some(&rest[at + 1..])
}

/// True if a name has ActiveMQ wildcards (`*`, `>`) as words.
pub fn has_wildcards(name: &str) -> bool {
    name.split('.').any(|w| w == "*" || w == ">")
}

/// Turns a subscription pattern into an `amq.topic` binding key (`>` -> `#`).
pub fn binding_key(pattern: &str) -> String {
    if !pattern.split('.').any(|w| w == ">") {
        return pattern.to_string();
    }
    pattern
        .split('.')
        .map(|w| if w == ">" { "#" } else { w })
        .collect::<Vec<_>>()
        .join(".")
}

/// The URL form a destination takes in a core message's `reply_to` (`queue://x`...).
pub fn to_url(d: &Destination) -> String {
    let (scheme, name) = match d {
        Destination::Queue(n) => ("queue://", n),
        Destination::Topic(n) => ("topic://", n),
        Destination::TempQueue(n) => ("temp-queue://", n),
        Destination::TempTopic(n) => ("temp-topic://", n),
    };
    let mut s = String::with_capacity(scheme.len() + name.len());
    s.push_str(scheme);
    s.push_str(name);
    s
}

/// A destination from a core `reply_to` written by any protocol: OpenWire's URL forms,
/// STOMP's `/queue/`, `/topic/`, `/temp-queue/`, `/reply-queue/`, or a bare AMQP queue
/// name.
pub fn from_reply_to(s: &str) -> Destination {
    type Make = fn(ByteString) -> Destination;
    let pairs: [(&str, Make); 8] = [
        ("queue://", Destination::Queue),
        ("topic://", Destination::Topic),
        ("temp-queue://", Destination::TempQueue),
        ("temp-topic://", Destination::TempTopic),
        ("/queue/", Destination::Queue),
        ("/topic/", Destination::Topic),
        ("/reply-queue/", Destination::Queue),
        ("/amq/queue/", Destination::Queue),
    ];
    for (prefix, make) in pairs {
        if let Some(rest) = s.strip_prefix(prefix) {
            return make(rest.into());
        }
    }
    Destination::Queue(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composites_wildcards_virtual_topics() {
        let d = Destination::Queue("a,b,topic://c".into());
        assert_eq!(
            elements(&d),
            vec![
                Destination::Queue("a".into()),
                Destination::Queue("b".into()),
                Destination::Topic("c".into())
            ]
        );
        assert_eq!(binding_key("a.>"), "a.#");
        assert_eq!(binding_key("a.*.b"), "a.*.b");
        assert!(has_wildcards("a.*"));
        assert!(!has_wildcards("a*b"));
        assert_eq!(
            virtual_topic_of("Consumer.A.VirtualTopic.Orders"),
            Some("VirtualTopic.Orders")
        );
        assert_eq!(
            virtual_topic_of("Consumer.A.B.VirtualTopic.X.Y"),
            Some("VirtualTopic.X.Y")
        );
        assert_eq!(virtual_topic_of("Consumer..VirtualTopic.X"), None);
        assert_eq!(virtual_topic_of("Orders"), None);
    }

    #[test]
    fn reply_to_forms() {
        for d in [
            Destination::Queue("q".into()),
            Destination::Topic("t".into()),
            Destination::TempQueue("ID:x:1:1".into()),
            Destination::TempTopic("ID:x:1:2".into()),
        ] {
            assert_eq!(from_reply_to(&to_url(&d)), d);
        }
        assert_eq!(from_reply_to("/queue/x"), Destination::Queue("x".into()));
        assert_eq!(
            from_reply_to("/reply-queue/amq.gen-1"),
            Destination::Queue("amq.gen-1".into())
        );
        assert_eq!(from_reply_to("plain"), Destination::Queue("plain".into()));
    }
}
