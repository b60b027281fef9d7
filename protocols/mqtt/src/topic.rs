//! Topic names, topic filters and shared subscriptions (MQTT section 4.7 and
//! MQTT 5 section 4.8.2).
//!
//! * A **topic name** (PUBLISH, Will Topic, Response Topic) is at least one
//!   character and has no wildcard. Empty levels (`a//b`, `/a`) are allowed.
//! * A **topic filter** (SUBSCRIBE, UNSUBSCRIBE) may use `+`, which must be
//!   a whole level, and `#`, which must be a whole level and the last one.
//! * A **shared subscription** filter is `$share/{ShareName}/{filter}`: the
//!   share name is at least one character without `/`, `+` or `#`, and the
//!   filter after it follows the rules above. A filter whose first level is
//!   `$share` is held to these rules in every protocol version: MQTT 3.1.1
//!   does not define shared subscriptions, but Mosquitto, EMQX and HiveMQ
//!   give them the same meaning for 3.1.1 clients, and a plain subscription
//!   to a literal `$share/...` topic would match nothing useful.
//!
//! U+0000 never reaches these checks: the string decoder rejects it.

/// Why a topic name or filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Zero length (without a Topic Alias, for a PUBLISH topic name).
    #[error("is empty")]
    Empty,
    /// A wildcard (`+` or `#`) in a topic name.
    #[error("contains a wildcard")]
    WildcardInName,
    /// A `+` or `#` that is not a whole level, or a `#` that is not last.
    #[error("has a misplaced wildcard")]
    MisplacedWildcard,
    /// A `$share/` filter without a valid share name and filter after it.
    #[error("is not a valid shared subscription")]
    InvalidSharedSubscription,
    /// Longer than the configured limit.
    #[error("is longer than {max_bytes} bytes")]
    TooLong {
        /// The configured `topic_max_bytes`.
        max_bytes: usize,
    },
    /// More levels than the configured limit.
    #[error("has more than {max} levels")]
    TooManyLevels {
        /// The configured `topic_levels_max`.
        max: usize,
    },
}

impl TopicError {
    /// Whether the topic breaks a configured limit rather than a rule of the
    /// protocol (which decides between "Topic Name/Filter invalid" and
    /// Protocol Error).
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            TopicError::TooLong { .. } | TopicError::TooManyLevels { .. }
        )
    }
}

/// The first level that marks a shared subscription.
const SHARE_PREFIX: &str = "$share";

/// Checks the protocol's rules for a topic name.
pub fn check_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks the protocol's rules for a topic filter, shared subscriptions
/// included.
pub fn check_topic_filter(filter: &str) -> Result<(), TopicError> {
    if is_shared(filter) {
        return shared_subscription(filter)
            .map(|_| ())
            .ok_or(TopicError::InvalidSharedSubscription);
    }
    check_plain_filter(filter)
}

/// Whether the filter's first level is `$share`, which makes it a shared
/// subscription (valid or not).
pub fn is_shared(filter: &str) -> bool {
    filter
        .strip_prefix(SHARE_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Splits a valid shared subscription `$share/{group}/{filter}` into its
/// share name and filter. `None` if `filter` is not a shared subscription
/// or breaks the syntax.
pub fn shared_subscription(filter: &str) -> Option<SharedSubscription<'_>> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?.strip_prefix('/')?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) {
        return None;
    }
    check_plain_filter(inner).ok()?;
    Some(SharedSubscription {
        share_name: group,
        filter: inner,
    })
}

/// The parts of a shared subscription filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSubscription<'a> {
    /// The share name (group): subscribers with the same name share messages.
    pub share_name: &'a str,
    /// The topic filter the group subscribes to.
    pub filter: &'a str,
}

fn check_plain_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if last => {}
            _ if level.contains(['+', '#']) || level == "#" => {
                return Err(TopicError::MisplacedWildcard)
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a topic against the configured length and depth limits.
pub(crate) fn check_limits(
    topic: &str,
    max_bytes: usize,
    levels_max: usize,
) -> Result<(), TopicError> {
    if topic.len() > max_bytes {
        return Err(TopicError::TooLong { max_bytes });
    }
    let levels = topic.bytes().filter(|&b| b == b'/').count() + 1;
    if levels > levels_max {
        return Err(TopicError::TooManyLevels { max: levels_max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "/",
            "a/b",
            "/a",
            "a//b",
            "a/",
            "$SYS/x",
            "sport/tennis/player1",
            "ü/✓",
            " ",
        ] {
            assert_eq!(check_topic_name(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_topic_name(""), Err(TopicError::Empty));
        for bad in ["+", "#", "a/+", "a/#", "a+b", "a#"] {
            assert_eq!(
                check_topic_name(bad),
                Err(TopicError::WildcardInName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "/",
            "a/#",
            "+/+",
            "/+",
            "+/",
            "a/+/c",
            "sport/tennis/+",
            "a//#",
            "$SYS/#",
            "+/#",
        ] {
            assert_eq!(check_topic_filter(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_topic_filter(""), Err(TopicError::Empty));
        for bad in [
            "a#",
            "a/#/b",
            "#/",
            "##",
            "a/b#",
            "a+",
            "+a/b",
            "a/++",
            "sport/tennis#",
            "#/#",
        ] {
            assert_eq!(
                check_topic_filter(bad),
                Err(TopicError::MisplacedWildcard),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn shared() {
        assert_eq!(
            shared_subscription("$share/g1/a/+/#"),
            Some(SharedSubscription {
                share_name: "g1",
                filter: "a/+/#"
            })
        );
        assert_eq!(check_topic_filter("$share/g/#"), Ok(()));
        assert!(is_shared("$share"));
        assert!(is_shared("$share/"));
        assert!(!is_shared("$shared/g/a"));
        assert!(!is_shared("a/$share/g/a"));
        assert_eq!(check_topic_filter("$shared/g/a"), Ok(()));
        for bad in [
            "$share",
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/+/a",
            "$share/g#/a",
            "$share/g/a#",
            "$share/#",
        ] {
            assert_eq!(
                check_topic_filter(bad),
                Err(TopicError::InvalidSharedSubscription),
                "{bad:?}"
            );
            assert_eq!(shared_subscription(bad), None);
        }
        assert_eq!(shared_subscription("a/b"), None);
    }

    #[test]
    fn limits() {
        assert_eq!(check_limits("abc", 3, 1), Ok(()));
        assert_eq!(
            check_limits("abcd", 3, 1),
            Err(TopicError::TooLong { max_bytes: 3 })
        );
        assert_eq!(check_limits("a/b", 3, 2), Ok(()));
        assert_eq!(
            check_limits("a/b/", 9, 2),
            Err(TopicError::TooManyLevels { max: 2 })
        );
        assert!(TopicError::TooLong { max_bytes: 1 }.is_limit());
        assert!(!TopicError::Empty.is_limit());
    }
}
