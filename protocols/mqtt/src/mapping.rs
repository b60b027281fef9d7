//! MQTT topic names and filters <-> `amq.topic` routing and binding keys. Pure functions.
//!
//! Levels are separated by `/` in MQTT and by `.` in the core, and `+` is the core's `*`.
//! So that the translation is reversible, the characters that would change meaning inside
//! a level are percent-escaped on the way in and unescaped on the way out:
//!
//! | in an MQTT level | in a core word |
//! |---|---|
//! | `.` | `%2E` |
//! | `*` | `%2A` |
//! | `%` | `%25` |
//!
//! Going out, a core word may hold characters MQTT cannot carry literally in a topic name
//! (`/` from a STOMP or AMQP key, `+` and `#`): they are escaped as `%2F`, `%2B`, `%23`,
//! and the three escapes above are undone. `a/b.c/d` -> `a.b%2Ec.d` -> `a/b.c/d`.

/// Appends the core form of one MQTT level (escaped).
fn push_level_in(level: &str, out: &mut String) {
    for c in level.chars() {
        match c {
            '.' => out.push_str("%2E"),
            '*' => out.push_str("%2A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

/// The routing key for an MQTT topic name.
pub fn routing_key(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len() + 2);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_level_in(level, &mut out);
    }
    out
}

/// The binding key for an MQTT topic filter (not a `$share/` one: strip that first).
pub fn binding_key(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len() + 2);
    for (i, level) in filter.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        match level {
            "+" => out.push('*'),
            "#" => out.push('#'),
            l => push_level_in(l, &mut out),
        }
    }
    out
}

/// The MQTT topic name for a routing key, written into `out` (cleared first).
pub fn topic_name(key: &str, out: &mut String) {
    out.clear();
    let bytes = key.as_bytes();
    let mut i = 0;
    let mut start = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let replace: Option<(&str, usize)> = match b {
            b'.' => Some(("/", 1)),
            b'/' => Some(("%2F", 1)),
            b'+' => Some(("%2B", 1)),
            b'#' => Some(("%23", 1)),
            b'%' if i + 3 <= bytes.len() => match &bytes[i..i + 3] {
                b"%2E" => Some((".", 3)),
                b"%2A" => Some(("*", 3)),
                b"%25" => Some(("%", 3)),
                _ => None,
            },
            _ => None,
        };
        if let Some((s, n)) = replace {
            out.push_str(&key[start..i]);
            out.push_str(s);
            i += n;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&key[start..]);
}

/// The MQTT topic filter for a binding key made by [`binding_key`].
pub fn topic_filter(key: &str) -> String {
    let mut out = String::new();
    let mut level = String::new();
    for (i, word) in key.split('.').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match word {
            "*" => out.push('+'),
            "#" => out.push('#'),
            w => {
                topic_name(w, &mut level);
                out.push_str(&level);
            }
        }
    }
    out
}

/// Whether an MQTT topic filter matches a topic name, with MQTT's rule that a wildcard
/// in the first level does not match a topic starting with `$`.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match f {
            "#" => return true,
            "+" => {
                if t.next().is_none() {
                    return false;
                }
            }
            f => {
                if t.next() != Some(f) {
                    return false;
                }
            }
        }
    }
    t.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(key: &str) -> String {
        let mut s = String::new();
        topic_name(key, &mut s);
        s
    }

    #[test]
    fn round_trips() {
        for t in [
            "a/b/c", "a.b/c", "", "/", "a//b", "%", "50%/x*y", "a%2Eb", "$SYS/x",
        ] {
            assert_eq!(name(&routing_key(t)), t, "{t}");
        }
        for f in ["a/+/c", "#", "a.b/#", "+", "a/*", "x%y/+/#"] {
            assert_eq!(topic_filter(&binding_key(f)), f, "{f}");
        }
    }

    #[test]
    fn translation() {
        assert_eq!(routing_key("a/b/c"), "a.b.c");
        assert_eq!(routing_key("a.b/c"), "a%2Eb.c");
        assert_eq!(binding_key("a/+/#"), "a.*.#");
        assert_eq!(binding_key("a/*"), "a.%2A");
        assert_eq!(name("x.y/z+#"), "x/y%2Fz%2B%23");
        assert_eq!(name("a%2"), "a%2");
    }

    #[test]
    fn matching() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
        assert!(filter_matches("+/+", "/x"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }
}
