//! Topic matching: a trie over dot-separated words with `*` (exactly one word) and `#`
//! (zero or more words).
//!
//! Matching walks one path per literal word plus the `*` and `#` branches, so its cost
//! grows with the depth of the routing key and the number of wildcard patterns along the
//! way, not with the number of bindings.
//!
//! # Invariants
//! - A node is kept only while it or a descendant holds a value; `remove` prunes empty
//!   branches so that churn of subscriptions does not leak nodes.

use std::collections::HashMap;

/// A set of `(pattern, value)` bindings searchable by routing key.
#[derive(Debug)]
pub struct TopicTrie<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    words: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            words: HashMap::new(),
            star: None,
            hash: None,
            values: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T: PartialEq> TopicTrie<T> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` under `pattern`; returns false if that exact pair was already present.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let mut node = &mut self.root;
        for word in pattern.split('.') {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                w => node.words.entry(w.into()).or_default(),
            };
        }
        if node.values.contains(&value) {
            return false;
        }
        node.values.push(value);
        self.len += 1;
        true
    }

    /// Removes the pair; returns whether it was present.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        let words: Vec<&str> = pattern.split('.').collect();
        let removed = remove_at(&mut self.root, &words, value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `found` for every value whose pattern matches `key`. A value bound under
    /// several matching patterns is reported once per pattern; callers deduplicate.
    pub fn for_each_match(&self, key: &str, found: &mut impl FnMut(&T)) {
        let words: smallvec::SmallVec<[&str; 8]> = key.split('.').collect();
        walk(&self.root, &words, found);
    }
}

fn remove_at<T: PartialEq>(node: &mut Node<T>, words: &[&str], value: &T) -> bool {
    let Some((first, rest)) = words.split_first() else {
        let Some(pos) = node.values.iter().position(|v| v == value) else {
            return false;
        };
        node.values.swap_remove(pos);
        return true;
    };
    let removed;
    match *first {
        "*" | "#" => {
            let slot = if *first == "*" {
                &mut node.star
            } else {
                &mut node.hash
            };
            let Some(child) = slot.as_deref_mut() else {
                return false;
            };
            removed = remove_at(child, rest, value);
            if child.is_empty() {
                *slot = None;
            }
        }
        w => {
            let Some(child) = node.words.get_mut(w) else {
                return false;
            };
            removed = remove_at(child, rest, value);
            if child.is_empty() {
                node.words.remove(w);
            }
        }
    }
    removed
}

fn walk<T>(node: &Node<T>, words: &[&str], found: &mut impl FnMut(&T)) {
    if let Some(hash) = &node.hash {
        // `#` swallows zero or more words: try every suffix.
        for skip in 0..=words.len() {
            walk(hash, &words[skip..], found);
        }
    }
    let Some((first, rest)) = words.split_first() else {
        node.values.iter().for_each(found);
        return;
    };
    if let Some(child) = node.words.get(*first) {
        walk(child, rest, found);
    }
    if let Some(star) = &node.star {
        walk(star, rest, found);
    }
}

/// Whether a single `pattern` matches `key` (the reference the trie is tested against).
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&"*", rest)) => !k.is_empty() && go(rest, &k[1..]),
            Some((w, rest)) => k.first() == Some(w) && go(rest, &k[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matches(trie: &TopicTrie<u32>, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        trie.for_each_match(key, &mut |v| out.push(*v));
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn rabbitmq_examples() {
        let mut t = TopicTrie::new();
        t.insert("*.orange.*", 1);
        t.insert("*.*.rabbit", 2);
        t.insert("lazy.#", 3);
        t.insert("#", 4);
        assert_eq!(matches(&t, "quick.orange.rabbit"), vec![1, 2, 4]);
        assert_eq!(matches(&t, "lazy.orange.elephant"), vec![1, 3, 4]);
        assert_eq!(matches(&t, "quick.brown.fox"), vec![4]);
        assert_eq!(matches(&t, "lazy"), vec![3, 4]);
        assert_eq!(matches(&t, "lazy.pink.rabbit"), vec![2, 3, 4]);
        assert_eq!(matches(&t, "orange"), vec![4]);
    }

    #[test]
    fn remove_prunes() {
        let mut t = TopicTrie::new();
        assert!(t.insert("a.*.c", 1));
        assert!(!t.insert("a.*.c", 1));
        assert!(t.insert("a.#", 2));
        assert!(t.remove("a.*.c", &1));
        assert!(!t.remove("a.*.c", &1));
        assert!(t.remove("a.#", &2));
        assert!(t.root.is_empty());
        assert_eq!(t.len(), 0);
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string())
        ]
    }
    fn pattern_word() -> impl Strategy<Value = String> {
        prop_oneof![word(), Just("*".to_string()), Just("#".to_string())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn trie_agrees_with_reference(
            patterns in proptest::collection::vec(proptest::collection::vec(pattern_word(), 1..5), 1..8),
            key in proptest::collection::vec(word(), 1..6),
        ) {
            let key = key.join(".");
            let mut t = TopicTrie::new();
            let patterns: Vec<String> = patterns.iter().map(|p| p.join(".")).collect();
            for (i, p) in patterns.iter().enumerate() {
                t.insert(p, i as u32);
            }
            let want: Vec<u32> = patterns.iter().enumerate()
                .filter(|(_, p)| pattern_matches(p, &key)).map(|(i, _)| i as u32).collect();
            prop_assert_eq!(matches(&t, &key), want);
        }
    }
}
