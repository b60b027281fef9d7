//! STOMP destination names, as RabbitMQ and ActiveMQ define them, and how they map onto
//! exchanges, routing keys and queues. Pure functions; the adapter applies them.

/// A parsed destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/queue/q`: a shared queue, declared on first use, fed by the default exchange.
    Queue(&'a str),
    /// `/topic/key`: `amq.topic` with routing key `key`.
    Topic(&'a str),
    /// `/exchange/x/key` (or `/exchange/x`): exchange `x` with routing key `key`.
    Exchange(&'a str, &'a str),
    /// `/amq/queue/q`: an existing queue, never declared.
    AmqQueue(&'a str),
    /// `/temp-queue/x`: this connection's private reply queue named `x`.
    TempQueue(&'a str),
    /// `/reply-queue/q`: a reply queue of another connection (what `reply-to` is rewritten to).
    ReplyQueue(&'a str),
}

/// Why a destination was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadDestination(pub String);

impl<'a> Destination<'a> {
    /// Parses a destination header value.
    pub fn parse(s: &'a str) -> Result<Self, BadDestination> {
        let (kind, rest) = if let Some(r) = s.strip_prefix("/queue/") {
            (0, r)
        } else if let Some(r) = s.strip_prefix("/topic/") {
            (1, r)
        } else if let Some(r) = s.strip_prefix("/exchange/") {
            (2, r)
        } else if let Some(r) = s.strip_prefix("/amq/queue/") {
            (3, r)
        } else if let Some(r) = s.strip_prefix("/temp-queue/") {
            (4, r)
        } else if let Some(r) = s.strip_prefix("/reply-queue/") {
            (5, r)
        } else {
            return Err(BadDestination(format!(
                "'{s}' is not a valid destination: use /queue/, /topic/, /exchange/, /amq/queue/, /temp-queue/ or /reply-queue/"
            )));
        };
        if rest.is_empty() && kind != 1 {
            return Err(BadDestination(format!("'{s}' names no queue or exchange")));
        }
        Ok(match kind {
            0 => Destination::Queue(rest),
            1 => Destination::Topic(rest),
            2 => match rest.split_once('/') {
                Some((x, key)) => Destination::Exchange(x, key),
                None => Destination::Exchange(rest, ""),
            },
            3 => Destination::AmqQueue(rest),
            4 => Destination::TempQueue(rest),
            _ => Destination::ReplyQueue(rest),
        })
    }
}

/// Turns a subscription pattern into an `amq.topic` binding key: ActiveMQ's `>` (the rest
/// of the name) becomes `#`; `*` and `#` keep their meaning.
pub fn binding_key(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|w| if w == ">" { "#" } else { w })
        .collect::<Vec<_>>()
        .join(".")
}

/// The destination header a message carries when delivered, from where it was published:
/// the default exchange gives `/queue/key`, `amq.topic` gives `/topic/key`, any other
/// exchange `/exchange/x/key`.
pub fn destination_of(exchange: &str, routing_key: &str, out: &mut String) {
    out.clear();
    match exchange {
        "" => {
            out.push_str("/queue/");
            out.push_str(routing_key);
        }
        "amq.topic" => {
            out.push_str("/topic/");
            out.push_str(routing_key);
        }
        x => {
            out.push_str("/exchange/");
            out.push_str(x);
            out.push('/');
            out.push_str(routing_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            Destination::parse("/queue/a.b"),
            Ok(Destination::Queue("a.b"))
        );
        assert_eq!(
            Destination::parse("/topic/x.*"),
            Ok(Destination::Topic("x.*"))
        );
        assert_eq!(
            Destination::parse("/exchange/amq.fanout"),
            Ok(Destination::Exchange("amq.fanout", ""))
        );
        assert_eq!(
            Destination::parse("/exchange/ex/a/b"),
            Ok(Destination::Exchange("ex", "a/b"))
        );
        assert_eq!(
            Destination::parse("/amq/queue/q"),
            Ok(Destination::AmqQueue("q"))
        );
        assert_eq!(
            Destination::parse("/temp-queue/r"),
            Ok(Destination::TempQueue("r"))
        );
        assert_eq!(
            Destination::parse("/reply-queue/amq.gen-1"),
            Ok(Destination::ReplyQueue("amq.gen-1"))
        );
        assert!(Destination::parse("/queue/").is_err());
        assert!(Destination::parse("queue/x").is_err());
        assert!(Destination::parse("").is_err());
    }

    #[test]
    fn activemq_wildcards() {
        assert_eq!(binding_key("a.>"), "a.#");
        assert_eq!(binding_key("a.*.c"), "a.*.c");
        assert_eq!(binding_key("a.b>"), "a.b>");
    }

    #[test]
    fn delivered_destination() {
        let mut s = String::new();
        destination_of("", "q", &mut s);
        assert_eq!(s, "/queue/q");
        destination_of("amq.topic", "a.b", &mut s);
        assert_eq!(s, "/topic/a.b");
        destination_of("logs", "k", &mut s);
        assert_eq!(s, "/exchange/logs/k");
    }
}
