//! MQTT's rules for UTF-8 strings beyond well-formedness.
//!
//! The decoder enforces the two MUSTs: strings are well-formed UTF-8 (no
//! surrogates, no overlong forms) and contain no U+0000. The specification
//! also says strings *should not* contain the C0 and C1 control characters
//! (U+0001..=U+001F, U+007F..=U+009F) or Unicode non-characters, and lets a
//! receiver close the connection if they do. The decoder accepts them:
//! devices in the field put tabs and newlines in user properties and client
//! identifiers, and refusing a whole connection for a control character in a
//! payload-describing string is not worth the breakage. A session that wants
//! to be stricter for a particular field (say, topic names it will route)
//! can ask [`contains_discouraged`].

/// Whether `text` contains a code point MQTT discourages: a control
/// character other than U+0000 (which never gets past the decoder), or a
/// Unicode non-character (U+FDD0..=U+FDEF, and the last two code points of
/// every plane, like U+FFFE and U+FFFF).
pub fn contains_discouraged(text: &str) -> bool {
    text.chars().any(is_discouraged)
}

/// Whether one code point is discouraged; see [`contains_discouraged`].
pub fn is_discouraged(c: char) -> bool {
    let n = u32::from(c);
    matches!(n, 0x01..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF) || n & 0xFFFE == 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discouraged_code_points() {
        for c in [
            '\u{1}',
            '\t',
            '\u{1f}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{fdd0}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{1fffe}',
            '\u{10ffff}',
        ] {
            assert!(is_discouraged(c), "{c:?}");
        }
        for c in [
            'a',
            ' ',
            '~',
            '\u{a0}',
            'é',
            '\u{feff}',
            '\u{fdcf}',
            '\u{fff0}',
            '✓',
            '\u{1f600}',
        ] {
            assert!(!is_discouraged(c), "{c:?}");
        }
        assert!(contains_discouraged("a\u{7}b"));
        assert!(!contains_discouraged("sensors/temp"));
    }
}
