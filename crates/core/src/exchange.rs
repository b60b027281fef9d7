//! Exchanges and their binding tables.
//!
//! Each exchange keeps its bindings behind its own `RwLock`: publishing takes a read lock on
//! the one exchange it routes through, never a vhost-wide write lock.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use parking_lot::RwLock;
use smallvec::SmallVec;

use crate::error::CoreError;
use crate::message::{FieldTable, FieldValue, Message};
use crate::queue::Queue;
use crate::topic::TopicTrie;

/// How an exchange routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Binding key equals routing key.
    Direct,
    /// Every binding.
    Fanout,
    /// Dot-separated patterns with `*` and `#`.
    Topic,
    /// Header values, `x-match` all or any.
    Headers,
}

impl ExchangeKind {
    /// Parses RabbitMQ's type names.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        Ok(match s {
            "direct" => Self::Direct,
            "fanout" => Self::Fanout,
            "topic" => Self::Topic,
            "headers" => Self::Headers,
            other => {
                return Err(CoreError::CommandInvalid(format!(
                    "unknown exchange type '{other}'"
                )))
            }
        })
    }

    /// The type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }
}

/// Declared properties of an exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeOptions {
    /// Survives a restart (once a store is attached).
    pub durable: bool,
    /// Deleted when its last binding (as a source) is removed.
    pub auto_delete: bool,
    /// Clients may not publish to it directly.
    pub internal: bool,
    /// Raw arguments; `alternate-exchange` is honoured.
    pub arguments: FieldTable,
}

impl Default for ExchangeOptions {
    fn default() -> Self {
        Self {
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        }
    }
}

/// Where a binding leads.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Target::Queue(a), Target::Queue(b)) => Arc::ptr_eq(a, b),
            (Target::Exchange(a), Target::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Target {
    pub(crate) fn name(&self) -> &ByteString {
        match self {
            Target::Queue(q) => q.name(),
            Target::Exchange(e) => &e.name,
        }
    }
}

#[derive(Debug)]
struct BindingEntry {
    key: ByteString,
    arguments: FieldTable,
    target: Target,
}

/// A binding's target (by address) and key: what `Routes::index` finds bindings by.
type BindKey = (usize, ByteString);

impl Target {
    /// The target's address: stable while a binding holds the `Arc`.
    fn addr(&self) -> usize {
        match self {
            Target::Queue(q) => Arc::as_ptr(q) as *const () as usize,
            Target::Exchange(e) => Arc::as_ptr(e) as *const () as usize,
        }
    }
}

/// # Invariants
/// `index[(target, key)]` holds exactly the positions in `all` of the bindings with that
/// target and key (one per distinct argument table), so that binding and unbinding cost
/// the same whatever the number of bindings.
#[derive(Debug, Default)]
struct Routes {
    all: Vec<BindingEntry>,
    index: HashMap<BindKey, SmallVec<[usize; 1]>>,
    direct: HashMap<ByteString, SmallVec<[Target; 2]>>,
    topic: TopicTrie<Target>,
}

/// A binding as listed by the admin API.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingInfo {
    /// Source exchange.
    pub source: ByteString,
    /// Destination queue or exchange.
    pub destination: ByteString,
    /// Whether the destination is an exchange.
    pub destination_is_exchange: bool,
    /// Binding key.
    pub key: ByteString,
    /// Binding arguments.
    pub arguments: FieldTable,
}

/// An exchange.
#[derive(Debug)]
pub struct Exchange {
    name: ByteString,
    kind: ExchangeKind,
    options: ExchangeOptions,
    alternate: Option<ByteString>,
    routes: RwLock<Routes>,
}

impl Exchange {
    pub(crate) fn new(name: ByteString, kind: ExchangeKind, options: ExchangeOptions) -> Arc<Self> {
        let alternate = options
            .arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_str())
            .map(ByteString::from);
        Arc::new(Self {
            name,
            kind,
            options,
            alternate,
            routes: RwLock::new(Routes::default()),
        })
    }

    /// The exchange's name.
    pub fn name(&self) -> &ByteString {
        &self.name
    }

    /// Its type.
    pub fn kind(&self) -> ExchangeKind {
        self.kind
    }

    /// Declared options.
    pub fn options(&self) -> &ExchangeOptions {
        &self.options
    }

    pub(crate) fn alternate(&self) -> Option<&ByteString> {
        self.alternate.as_ref()
    }

    /// Number of bindings with this exchange as source.
    pub fn binding_count(&self) -> usize {
        self.routes.read().all.len()
    }

    /// Adds a binding; false if it already existed.
    /// `on_add` runs under the binding lock when the binding is new (to journal it in
    /// order with concurrent changes).
    pub(crate) fn bind(
        &self,
        key: ByteString,
        arguments: FieldTable,
        target: Target,
        max: usize,
        on_add: impl FnOnce(),
    ) -> Result<bool, CoreError> {
        let mut guard = self.routes.write();
        let r = &mut *guard;
        let ik = (target.addr(), key.clone());
        if r.index
            .get(&ik)
            .is_some_and(|at| at.iter().any(|&i| r.all[i].arguments == arguments))
        {
            return Ok(false);
        }
        if r.all.len() >= max {
            return Err(CoreError::ResourceLimit(format!(
                "exchange '{}' has too many bindings",
                self.name
            )));
        }
        match self.kind {
            ExchangeKind::Direct => r
                .direct
                .entry(key.clone())
                .or_default()
                .push(target.clone()),
            ExchangeKind::Topic => {
                r.topic.insert(&key, target.clone());
            }
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        on_add();
        r.index.entry(ik).or_default().push(r.all.len());
        r.all.push(BindingEntry {
            key,
            arguments,
            target,
        });
        Ok(true)
    }

    /// Removes a binding; false if there was none. `on_remove` runs under the binding lock
    /// when one was removed.
    pub(crate) fn unbind(
        &self,
        key: &str,
        arguments: &FieldTable,
        target: &Target,
        on_remove: impl FnOnce(),
    ) -> bool {
        let mut guard = self.routes.write();
        let r = &mut *guard;
        let ik: BindKey = (target.addr(), key.into());
        let Some(at) = r.index.get_mut(&ik) else {
            return false;
        };
        let Some(slot) = at.iter().position(|&i| &r.all[i].arguments == arguments) else {
            return false;
        };
        on_remove();
        let pos = at.swap_remove(slot);
        // A topic or direct binding with the same key but other arguments may remain.
        let still = !at.is_empty();
        if !still {
            r.index.remove(&ik);
        }
        let entry = r.all.swap_remove(pos);
        if let Some(moved) = r.all.get(pos) {
            // The last binding took the removed one's place.
            let last = r.all.len();
            if let Some(at) = r.index.get_mut(&(moved.target.addr(), moved.key.clone())) {
                at.iter_mut().filter(|i| **i == last).for_each(|i| *i = pos);
            }
        }
        if !still {
            match self.kind {
                ExchangeKind::Direct => {
                    if let Some(list) = r.direct.get_mut(key) {
                        list.retain(|t| t != target);
                        if list.is_empty() {
                            r.direct.remove(key);
                        }
                    }
                }
                ExchangeKind::Topic => {
                    r.topic.remove(&entry.key, target);
                }
                ExchangeKind::Fanout | ExchangeKind::Headers => {}
            }
        }
        true
    }

    /// Removes every binding to `target`; returns how many there were.
    pub(crate) fn unbind_target(&self, target: &Target) -> usize {
        let doomed: Vec<(ByteString, FieldTable)> = {
            let r = self.routes.read();
            r.all
                .iter()
                .filter(|b| &b.target == target)
                .map(|b| (b.key.clone(), b.arguments.clone()))
                .collect()
        };
        doomed
            .iter()
            .filter(|(k, a)| self.unbind(k, a, target, || {}))
            .count()
    }

    /// Bindings with this exchange as source.
    pub fn bindings(&self) -> Vec<BindingInfo> {
        self.routes
            .read()
            .all
            .iter()
            .map(|b| BindingInfo {
                source: self.name.clone(),
                destination: b.target.name().clone(),
                destination_is_exchange: matches!(b.target, Target::Exchange(_)),
                key: b.key.clone(),
                arguments: b.arguments.clone(),
            })
            .collect()
    }

    /// Adds the destinations of `msg` to `queues` and `exchanges` (not deduplicated).
    pub(crate) fn route(
        &self,
        msg: &Message,
        queues: &mut SmallVec<[Arc<Queue>; 4]>,
        exchanges: &mut SmallVec<[Arc<Exchange>; 2]>,
    ) {
        let r = self.routes.read();
        let mut push = |t: &Target| match t {
            Target::Queue(q) => queues.push(q.clone()),
            Target::Exchange(e) => exchanges.push(e.clone()),
        };
        match self.kind {
            ExchangeKind::Direct => r
                .direct
                .get(&msg.routing_key)
                .into_iter()
                .flatten()
                .for_each(push),
            ExchangeKind::Fanout => r.all.iter().for_each(|b| push(&b.target)),
            ExchangeKind::Topic => r.topic.for_each_match(&msg.routing_key, &mut push),
            ExchangeKind::Headers => r
                .all
                .iter()
                .filter(|b| headers_match(&b.arguments, &msg.properties.headers))
                .for_each(|b| push(&b.target)),
        }
    }
}

/// The headers exchange rule: `x-match` = `all` (default) or `any`; the `-with-x` variants
/// also compare arguments whose names start with `x-`. A binding argument of type void
/// matches on presence alone.
pub fn headers_match(binding: &FieldTable, headers: &FieldTable) -> bool {
    let mode = binding
        .get("x-match")
        .and_then(FieldValue::as_str)
        .unwrap_or("all");
    let (any, with_x) = match mode {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        _ => (false, false),
    };
    let mut considered = binding
        .iter()
        .filter(|(k, _)| *k != "x-match" && (with_x || !k.starts_with("x-")));
    let hit = |(k, v): (&ByteString, &FieldValue)| match (v, headers.get(k)) {
        (_, None) => false,
        (FieldValue::Void, Some(_)) => true,
        (want, Some(got)) => {
            want == got || matches!((want.as_i64(), got.as_i64()), (Some(a), Some(b)) if a == b)
        }
    };
    if any {
        considered.any(hit)
    } else {
        considered.all(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_all_and_any() {
        let mut b = FieldTable::new();
        b.insert("format", FieldValue::Str("pdf".into()));
        b.insert("type", FieldValue::Str("report".into()));
        let mut h = FieldTable::new();
        h.insert("format", FieldValue::Str("pdf".into()));
        assert!(!headers_match(&b, &h));
        b.insert("x-match", FieldValue::Str("any".into()));
        assert!(headers_match(&b, &h));
        h.insert("format", FieldValue::Str("zip".into()));
        assert!(!headers_match(&b, &h));
        let mut n = FieldTable::new();
        n.insert("n", FieldValue::I32(5));
        let mut hn = FieldTable::new();
        hn.insert("n", FieldValue::I64(5));
        assert!(
            headers_match(&n, &hn),
            "integers compare by value across widths"
        );
    }
}
