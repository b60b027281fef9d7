//! JMS message selectors: the SQL-92 subset of JMS 1.1 §3.8, compiled once per consumer and
//! evaluated against core messages by the queue's dispatch.
//!
//! Used by OpenWire consumers and by STOMP's `selector` SUBSCRIBE header, so the language and
//! its semantics are the same on both.
//!
//! # Language
//! - Literals: strings `'it''s'`, exact numbers `57`, `-957`, `12L`, approximate numbers
//!   `7E3`, `-57.9E2`, `7.`, `.5`, booleans `TRUE` / `FALSE`. Keywords are case-insensitive.
//! - Identifiers: Java identifiers (ActiveMQ's `.` inside names allowed), or `"quoted"` for
//!   names such as STOMP's `content-type`. Case-sensitive. The JMS header fields
//!   `JMSDeliveryMode` (`'PERSISTENT'` / `'NON_PERSISTENT'`), `JMSPriority` (4 when unset),
//!   `JMSMessageID`, `JMSTimestamp`, `JMSCorrelationID`, `JMSType`, `JMSExpiration` (0 when
//!   none), `JMSRedelivered` and `JMSXDeliveryCount` come from the message's properties;
//!   every other name is looked up in the message's header table (JMS properties, STOMP
//!   and AMQP headers). A missing name is NULL.
//! - Operators by precedence: unary `+ -`; `* /`; `+ -`; `= <> < > <= >=`, `[NOT] BETWEEN
//!   .. AND ..`, `[NOT] IN ('a', ..)`, `[NOT] LIKE 'p%_' [ESCAPE 'c']`, `IS [NOT] NULL`;
//!   `NOT`; `AND`; `OR`.
//!
//! # Semantics
//! Three-valued logic: a comparison with NULL, with a value of another type, or an ordering
//! of strings or booleans, is *unknown*; `NOT unknown` is unknown; `AND` is false if either
//! side is false, `OR` true if either is true. A message is selected only when the whole
//! selector is TRUE. Exact and approximate numbers compare by value; integer arithmetic
//! that overflows continues in floating point; integer division by zero is NULL.
//!
//! Evaluation borrows everything from the message and the compiled tree: it never
//! allocates.
//!
//! # Limits
//! The text is at most [`SelectorLimits::length_max_bytes`] long and the tree at most
//! [`SelectorLimits::depth_max`] deep (nesting of parentheses, `NOT` and unary signs
//! included), so neither parsing nor evaluation nor dropping recurses without bound.

use std::fmt;

use crate::message::{FieldValue, Message};

/// Bounds on a selector's text and tree.
#[derive(Clone, Copy, Debug)]
pub struct SelectorLimits {
    /// Longest selector text accepted.
    pub length_max_bytes: usize,
    /// Deepest expression tree accepted.
    pub depth_max: usize,
}

impl Default for SelectorLimits {
    fn default() -> Self {
        Self {
            length_max_bytes: crate::limits::SELECTOR_LENGTH_MAX_BYTES_DEFAULT,
            depth_max: crate::limits::SELECTOR_DEPTH_MAX_DEFAULT,
        }
    }
}

/// Why a selector was refused, with the byte offset in its text where parsing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    /// Byte offset into the selector text.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid selector at offset {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for SelectorError {}

/// A compiled selector.
#[derive(Clone, Debug)]
pub struct Selector {
    text: Box<str>,
    root: Expr,
}

impl Selector {
    /// Compiles `text`. Blank text is an error here; see [`Selector::parse_optional`].
    pub fn parse(text: &str, limits: &SelectorLimits) -> Result<Selector, SelectorError> {
        if text.len() > limits.length_max_bytes {
            return Err(SelectorError {
                position: limits.length_max_bytes,
                message: format!(
                    "selector is {} bytes long, more than the limit of {}",
                    text.len(),
                    limits.length_max_bytes
                ),
            });
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            nesting: 0,
            depth_max: limits.depth_max.max(1),
            end: text.len(),
        };
        let root = p.or_expr()?;
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(p.error_at(t.at, format!("unexpected {}", t.tok)));
        }
        if matches!(root.kind(), Kind::Num | Kind::Str) {
            return Err(SelectorError {
                position: 0,
                message: "a selector must be a boolean expression".into(),
            });
        }
        Ok(Selector {
            text: text.into(),
            root,
        })
    }

    /// Compiles `text`, or `None` when it is absent or blank (JMS: no selector).
    pub fn parse_optional(
        text: Option<&str>,
        limits: &SelectorLimits,
    ) -> Result<Option<Selector>, SelectorError> {
        match text {
            Some(t) if !t.trim().is_empty() => Self::parse(t, limits).map(Some),
            _ => Ok(None),
        }
    }

    /// The text it was compiled from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when `msg` is selected. `delivery_count` is the number of earlier deliveries
    /// (the queue's count), which gives `JMSRedelivered` and `JMSXDeliveryCount`.
    pub fn matches(&self, msg: &Message, delivery_count: u32) -> bool {
        let cx = Cx {
            msg,
            delivery_count,
        };
        matches!(self.root.eval(&cx), Value::Bool(true))
    }
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(Box<str>),
    Str(Box<str>),
    Int(i64),
    Float(f64),
    Kw(Kw),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    Between,
    Like,
    In,
    Is,
    Null,
    True,
    False,
    Escape,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "identifier '{s}'"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Int(v) => write!(f, "number {v}"),
            Tok::Float(v) => write!(f, "number {v}"),
            Tok::Kw(k) => write!(f, "keyword {}", format!("{k:?}").to_uppercase()),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
            Tok::Op(o) => write!(f, "'{o}'"),
        }
    }
}

struct Spanned {
    tok: Tok,
    at: usize,
}

fn keyword(word: &str) -> Option<Kw> {
    const KWS: [(&str, Kw); 11] = [
        ("AND", Kw::And),
        ("OR", Kw::Or),
        ("NOT", Kw::Not),
        ("BETWEEN", Kw::Between),
        ("LIKE", Kw::Like),
        ("IN", Kw::In),
        ("IS", Kw::Is),
        ("NULL", Kw::Null),
        ("TRUE", Kw::True),
        ("FALSE", Kw::False),
        ("ESCAPE", Kw::Escape),
    ];
    KWS.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, kw)| *kw)
}

fn lex(text: &str) -> Result<Vec<Spanned>, SelectorError> {
    let bytes = text.as_bytes();
    let err = |at: usize, message: String| SelectorError {
        position: at,
        message,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = text[i..].chars().next().expect("i is on a char boundary");
        let at = i;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' | '+' | '-' | '*' | '/' => {
                i += 1;
                Tok::Op(match c {
                    '=' => "=",
                    '+' => "+",
                    '-' => "-",
                    '*' => "*",
                    _ => "/",
                })
            }
            '<' | '>' => {
                let two = bytes.get(i + 1).copied();
                let op = match (c, two) {
                    ('<', Some(b'>')) => "<>",
                    ('<', Some(b'=')) => "<=",
                    ('>', Some(b'=')) => ">=",
                    ('<', _) => "<",
                    _ => ">",
                };
                i += op.len();
                Tok::Op(op)
            }
            '\'' | '"' => {
                let (s, next) = quoted(text, i, c)
                    .ok_or_else(|| err(at, format!("unterminated {c}quoted{c} text")))?;
                i = next;
                if c == '\'' {
                    Tok::Str(s.into())
                } else if s.is_empty() {
                    return Err(err(at, "empty quoted identifier".into()));
                } else {
                    Tok::Ident(s.into())
                }
            }
            '0'..='9' | '.' => {
                let (tok, next) = number(text, i).map_err(|m| err(at, m))?;
                i = next;
                tok
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let end = text[i..]
                    .char_indices()
                    .find(|&(_, ch)| !(ch.is_alphanumeric() || ch == '_' || ch == '$' || ch == '.'))
                    .map_or(text.len(), |(k, _)| i + k);
                let word = &text[i..end];
                i = end;
                match keyword(word) {
                    Some(kw) => Tok::Kw(kw),
                    None => Tok::Ident(word.into()),
                }
            }
            other => return Err(err(at, format!("unexpected character {other:?}"))),
        };
        out.push(Spanned { tok, at });
    }
    Ok(out)
}

/// A `q`-quoted run starting at `start` with `qq` as the escaped quote; the text and the
/// offset after the closing quote.
fn quoted(text: &str, start: usize, q: char) -> Option<(String, usize)> {
    let mut s = String::new();
    let mut rest = text[start + 1..].char_indices().peekable();
    while let Some((k, ch)) = rest.next() {
        if ch == q {
            if rest.peek().is_some_and(|&(_, n)| n == q) {
                rest.next();
                s.push(q);
                continue;
            }
            return Some((s, start + 1 + k + 1));
        }
        s.push(ch);
    }
    None
}

fn number(text: &str, start: usize) -> Result<(Tok, usize), String> {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    let int_end = i;
    let mut approx = false;
    if i < b.len() && b[i] == b'.' {
        approx = true;
        i = digits(i + 1);
    }
    if i == start + 1 && b[start] == b'.' {
        return Err("'.' is not a number".into());
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let k = digits(j);
        if k == j {
            return Err("exponent without digits".into());
        }
        approx = true;
        i = k;
    }
    let lit = &text[start..i];
    let (tok, mut end) = if approx {
        let v: f64 = lit.parse().map_err(|_| format!("bad number '{lit}'"))?;
        (Tok::Float(v), i)
    } else {
        let v: i64 = text[start..int_end]
            .parse()
            .map_err(|_| format!("number '{lit}' is out of range"))?;
        let mut end = i;
        if end < b.len() && (b[end] == b'l' || b[end] == b'L') {
            end += 1;
        }
        (Tok::Int(v), end)
    };
    if approx && end < b.len() && matches!(b[end], b'f' | b'F' | b'd' | b'D') {
        end += 1;
    }
    if text[end..]
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.')
    {
        return Err(format!("bad number '{}'", &text[start..=end]));
    }
    Ok((tok, end))
}

// ---------------------------------------------------------------------------------------
// Tree

#[derive(Clone, Debug)]
enum Field {
    DeliveryMode,
    Priority,
    MessageId,
    Timestamp,
    CorrelationId,
    Type,
    Expiration,
    Redelivered,
    DeliveryCount,
    Property(Box<str>),
}

impl Field {
    fn named(name: &str) -> Field {
        match name {
            "JMSDeliveryMode" => Field::DeliveryMode,
            "JMSPriority" => Field::Priority,
            "JMSMessageID" => Field::MessageId,
            "JMSTimestamp" => Field::Timestamp,
            "JMSCorrelationID" => Field::CorrelationId,
            "JMSType" => Field::Type,
            "JMSExpiration" => Field::Expiration,
            "JMSRedelivered" => Field::Redelivered,
            "JMSXDeliveryCount" => Field::DeliveryCount,
            other => Field::Property(other.into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Debug, PartialEq)]
enum LikeTok {
    Char(char),
    One,
    Any,
}

#[derive(Clone, Debug)]
enum Expr {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Field(Field),
    Neg(Box<Expr>),
    Arith(Arith, Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    Between {
        negated: bool,
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    In {
        negated: bool,
        field: Field,
        list: Box<[Box<str>]>,
    },
    Like {
        negated: bool,
        field: Field,
        pattern: Box<[LikeTok]>,
    },
    IsNull {
        negated: bool,
        field: Field,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// What an expression can yield, as far as the parser can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Num,
    Str,
    /// An identifier: any type at run time.
    Any,
}

impl Expr {
    fn kind(&self) -> Kind {
        match self {
            Expr::Int(_) | Expr::Float(_) | Expr::Neg(_) | Expr::Arith(..) => Kind::Num,
            Expr::Str(_) => Kind::Str,
            Expr::Field(f) => match f {
                Field::Priority | Field::Timestamp | Field::Expiration | Field::DeliveryCount => {
                    Kind::Num
                }
                Field::DeliveryMode | Field::MessageId | Field::CorrelationId | Field::Type => {
                    Kind::Str
                }
                Field::Redelivered => Kind::Bool,
                Field::Property(_) => Kind::Any,
            },
            _ => Kind::Bool,
        }
    }

    /// Height of the tree, for the depth limit.
    fn height(&self) -> usize {
        1 + match self {
            Expr::Neg(e) | Expr::Not(e) => e.height(),
            Expr::Arith(_, a, b) | Expr::Cmp(_, a, b) => a.height().max(b.height()),
            Expr::Between {
                value, low, high, ..
            } => value.height().max(low.height()).max(high.height()),
            Expr::And(v) | Expr::Or(v) => v.iter().map(Expr::height).max().unwrap_or(0),
            _ => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser {
    tokens: Vec<Spanned>,
    pos: usize,
    /// Open parentheses, `NOT`s and signs being parsed: bounds the parser's recursion.
    nesting: usize,
    depth_max: usize,
    end: usize,
}

impl Parser {
    fn error_at(&self, position: usize, message: String) -> SelectorError {
        SelectorError { position, message }
    }

    fn here(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.at)
    }

    fn error(&self, message: impl Into<String>) -> SelectorError {
        self.error_at(self.here(), message.into())
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: Kw) -> bool {
        self.eat(&Tok::Kw(kw))
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), SelectorError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn unexpected(&self, wanted: &str) -> SelectorError {
        match self.peek() {
            Some(t) => self.error(format!("expected {wanted}, found {t}")),
            None => self.error(format!("expected {wanted}, found the end")),
        }
    }

    fn nest(&mut self) -> Result<(), SelectorError> {
        self.nesting += 1;
        if self.nesting > self.depth_max {
            return Err(self.error(format!(
                "selector nests deeper than the limit of {}",
                self.depth_max
            )));
        }
        Ok(())
    }

    fn node(&self, e: Expr, at: usize) -> Result<Expr, SelectorError> {
        if e.height() > self.depth_max {
            return Err(self.error_at(
                at,
                format!(
                    "selector is deeper than the limit of {} levels",
                    self.depth_max
                ),
            ));
        }
        Ok(e)
    }

    fn logical(&self, e: &Expr, at: usize, op: &str) -> Result<(), SelectorError> {
        match e.kind() {
            Kind::Bool | Kind::Any => Ok(()),
            _ => Err(self.error_at(at, format!("{op} needs boolean operands"))),
        }
    }

    fn or_expr(&mut self) -> Result<Expr, SelectorError> {
        let at = self.here();
        let first = self.and_expr()?;
        if self.peek() != Some(&Tok::Kw(Kw::Or)) {
            return Ok(first);
        }
        self.logical(&first, at, "OR")?;
        let mut terms = vec![first];
        while self.eat_kw(Kw::Or) {
            let at = self.here();
            let e = self.and_expr()?;
            self.logical(&e, at, "OR")?;
            terms.push(e);
        }
        self.node(Expr::Or(terms), at)
    }

    fn and_expr(&mut self) -> Result<Expr, SelectorError> {
        let at = self.here();
        let first = self.not_expr()?;
        if self.peek() != Some(&Tok::Kw(Kw::And)) {
            return Ok(first);
        }
        self.logical(&first, at, "AND")?;
        let mut terms = vec![first];
        while self.eat_kw(Kw::And) {
            let at = self.here();
            let e = self.not_expr()?;
            self.logical(&e, at, "AND")?;
            terms.push(e);
        }
        self.node(Expr::And(terms), at)
    }

    fn not_expr(&mut self) -> Result<Expr, SelectorError> {
        let at = self.here();
        if self.eat_kw(Kw::Not) {
            self.nest()?;
            let e = self.not_expr()?;
            self.nesting -= 1;
            self.logical(&e, at, "NOT")?;
            return self.node(Expr::Not(Box::new(e)), at);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SelectorError> {
        let at = self.here();
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Op(o)) => match *o {
                "=" => Some(Cmp::Eq),
                "<>" => Some(Cmp::Ne),
                "<" => Some(Cmp::Lt),
                ">" => Some(Cmp::Gt),
                "<=" => Some(Cmp::Le),
                ">=" => Some(Cmp::Ge),
                _ => None,
            },
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let rat = self.here();
            let right = self.additive()?;
            self.check_comparable(op, &left, &right, rat)?;
            return self.node(Expr::Cmp(op, Box::new(left), Box::new(right)), at);
        }
        if self.eat_kw(Kw::Is) {
            let negated = self.eat_kw(Kw::Not);
            if !self.eat_kw(Kw::Null) {
                return Err(self.unexpected("NULL"));
            }
            let field = self.field_of(left, at, "IS NULL")?;
            return Ok(Expr::IsNull { negated, field });
        }
        let negated = self.eat_kw(Kw::Not);
        if self.eat_kw(Kw::Between) {
            self.numeric(&left, at, "BETWEEN")?;
            let lat = self.here();
            let low = self.additive()?;
            self.numeric(&low, lat, "BETWEEN")?;
            if !self.eat_kw(Kw::And) {
                return Err(self.unexpected("AND"));
            }
            let hat = self.here();
            let high = self.additive()?;
            self.numeric(&high, hat, "BETWEEN")?;
            return self.node(
                Expr::Between {
                    negated,
                    value: Box::new(left),
                    low: Box::new(low),
                    high: Box::new(high),
                },
                at,
            );
        }
        if self.eat_kw(Kw::In) {
            let field = self.field_of(left, at, "IN")?;
            self.expect(&Tok::LParen, "'('")?;
            let mut list = Vec::new();
            loop {
                match self.peek() {
                    Some(Tok::Str(s)) => {
                        list.push(s.clone());
                        self.pos += 1;
                    }
                    _ => return Err(self.unexpected("a string literal")),
                }
                if self.eat(&Tok::RParen) {
                    break;
                }
                self.expect(&Tok::Comma, "',' or ')'")?;
            }
            return Ok(Expr::In {
                negated,
                field,
                list: list.into(),
            });
        }
        if self.eat_kw(Kw::Like) {
            let field = self.field_of(left, at, "LIKE")?;
            let pat_at = self.here();
            let pattern = match self.peek() {
                Some(Tok::Str(s)) => s.clone(),
                _ => return Err(self.unexpected("a string pattern")),
            };
            self.pos += 1;
            let mut escape = None;
            if self.eat_kw(Kw::Escape) {
                let mut chars = match self.peek() {
                    Some(Tok::Str(s)) => s.chars(),
                    _ => return Err(self.unexpected("a one-character escape string")),
                };
                match (chars.next(), chars.next()) {
                    (Some(c), None) => escape = Some(c),
                    _ => return Err(self.error("ESCAPE takes exactly one character")),
                }
                self.pos += 1;
            }
            let pattern = like_pattern(&pattern, escape).map_err(|m| self.error_at(pat_at, m))?;
            return Ok(Expr::Like {
                negated,
                field,
                pattern,
            });
        }
        if negated {
            return Err(self.unexpected("BETWEEN, IN or LIKE after NOT"));
        }
        Ok(left)
    }

    fn field_of(&self, e: Expr, at: usize, op: &str) -> Result<Field, SelectorError> {
        match e {
            Expr::Field(f) => Ok(f),
            _ => Err(self.error_at(at, format!("{op} applies to an identifier"))),
        }
    }

    fn numeric(&self, e: &Expr, at: usize, op: &str) -> Result<(), SelectorError> {
        match e.kind() {
            Kind::Num | Kind::Any => Ok(()),
            _ => Err(self.error_at(at, format!("{op} needs numeric operands"))),
        }
    }

    fn check_comparable(
        &self,
        op: Cmp,
        a: &Expr,
        b: &Expr,
        at: usize,
    ) -> Result<(), SelectorError> {
        let (ka, kb) = (a.kind(), b.kind());
        let ordering = !matches!(op, Cmp::Eq | Cmp::Ne);
        for k in [ka, kb] {
            if ordering && matches!(k, Kind::Str | Kind::Bool) {
                return Err(
                    self.error_at(at, "strings and booleans compare only with = and <>".into())
                );
            }
        }
        if ka != Kind::Any && kb != Kind::Any && ka != kb {
            return Err(self.error_at(
                at,
                format!("cannot compare {ka:?} with {kb:?}").to_lowercase(),
            ));
        }
        Ok(())
    }

    fn additive(&mut self) -> Result<Expr, SelectorError> {
        let at = self.here();
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("+")) => Arith::Add,
                Some(Tok::Op("-")) => Arith::Sub,
                _ => return Ok(left),
            };
            self.pos += 1;
            let rat = self.here();
            let right = self.multiplicative()?;
            self.numeric(&left, at, "arithmetic")?;
            self.numeric(&right, rat, "arithmetic")?;
            left = self.node(Expr::Arith(op, Box::new(left), Box::new(right)), at)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, SelectorError> {
        let at = self.here();
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => Arith::Mul,
                Some(Tok::Op("/")) => Arith::Div,
                _ => return Ok(left),
            };
            self.pos += 1;
            let rat = self.here();
            let right = self.unary()?;
            self.numeric(&left, at, "arithmetic")?;
            self.numeric(&right, rat, "arithmetic")?;
            left = self.node(Expr::Arith(op, Box::new(left), Box::new(right)), at)?;
        }
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        let at = self.here();
        let sign = match self.peek() {
            Some(Tok::Op("-")) => Some(true),
            Some(Tok::Op("+")) => Some(false),
            _ => None,
        };
        let Some(negative) = sign else {
            return self.primary();
        };
        self.pos += 1;
        self.nest()?;
        let e = self.unary()?;
        self.nesting -= 1;
        self.numeric(&e, at, "a sign")?;
        Ok(match (negative, e) {
            (false, e) => e,
            (true, Expr::Int(v)) => Expr::Int(-v),
            (true, Expr::Float(v)) => Expr::Float(-v),
            (true, e) => self.node(Expr::Neg(Box::new(e)), at)?,
        })
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.unexpected("an expression"));
        };
        let e = match tok {
            Tok::LParen => {
                self.pos += 1;
                self.nest()?;
                let e = self.or_expr()?;
                self.nesting -= 1;
                self.expect(&Tok::RParen, "')'")?;
                return Ok(e);
            }
            Tok::Int(v) => Expr::Int(v),
            Tok::Float(v) => Expr::Float(v),
            Tok::Str(s) => Expr::Str(s),
            Tok::Kw(Kw::True) => Expr::Bool(true),
            Tok::Kw(Kw::False) => Expr::Bool(false),
            Tok::Ident(name) => Expr::Field(Field::named(&name)),
            _ => return Err(self.unexpected("an expression")),
        };
        self.pos += 1;
        Ok(e)
    }
}

fn like_pattern(p: &str, escape: Option<char>) -> Result<Box<[LikeTok]>, String> {
    let mut out = Vec::with_capacity(p.len());
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(n) if n == '%' || n == '_' || Some(n) == escape => out.push(LikeTok::Char(n)),
                Some(n) => {
                    return Err(format!(
                        "escape character may precede only '%', '_' or itself, not {n:?}"
                    ))
                }
                None => return Err("pattern ends with the escape character".into()),
            }
            continue;
        }
        out.push(match c {
            '%' => LikeTok::Any,
            '_' => LikeTok::One,
            c => LikeTok::Char(c),
        });
    }
    out.dedup_by(|a, b| *a == LikeTok::Any && *b == LikeTok::Any);
    Ok(out.into())
}

/// Wildcard matching with one backtrack point (the last `%`): linear in practice and
/// O(pattern × text) at worst, without allocating.
fn like_matches(p: &[LikeTok], s: &str) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            let next = s[si..].chars().next();
            match (&p[pi], next) {
                (LikeTok::Any, _) => {
                    pi += 1;
                    star = Some((pi, si));
                    continue;
                }
                (LikeTok::One, Some(c)) => {
                    pi += 1;
                    si += c.len_utf8();
                    continue;
                }
                (LikeTok::Char(want), Some(c)) if *want == c => {
                    pi += 1;
                    si += c.len_utf8();
                    continue;
                }
                _ => {}
            }
        } else if si == s.len() {
            return true;
        }
        let Some((sp, ss)) = star else {
            return false;
        };
        let Some(c) = s[ss..].chars().next() else {
            return false;
        };
        star = Some((sp, ss + c.len_utf8()));
        pi = sp;
        si = ss + c.len_utf8();
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation

struct Cx<'a> {
    msg: &'a Message,
    delivery_count: u32,
}

/// A run-time value; `Null` is also the unknown truth value.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Field {
    fn get<'a>(&'a self, cx: &Cx<'a>) -> Value<'a> {
        let p = &cx.msg.properties;
        let opt_str = |s: &'a Option<bytestring::ByteString>| match s {
            Some(s) => Value::Str(s),
            None => Value::Null,
        };
        match self {
            Field::DeliveryMode => Value::Str(if p.persistent {
                "PERSISTENT"
            } else {
                "NON_PERSISTENT"
            }),
            Field::Priority => Value::Int(p.priority.map_or(4, i64::from)),
            Field::MessageId => opt_str(&p.message_id),
            Field::Timestamp => p.timestamp_ms.map_or(Value::Null, |t| Value::Int(t as i64)),
            Field::CorrelationId => opt_str(&p.correlation_id),
            Field::Type => opt_str(&p.message_type),
            Field::Expiration => match (p.expiration_ms, p.timestamp_ms) {
                (Some(ttl), Some(ts)) => Value::Int(ts.saturating_add(ttl) as i64),
                _ => Value::Int(0),
            },
            Field::Redelivered => Value::Bool(cx.delivery_count > 0),
            Field::DeliveryCount => Value::Int(i64::from(cx.delivery_count) + 1),
            Field::Property(name) => match p.headers.get(name) {
                Some(v) => field_value(v),
                None => Value::Null,
            },
        }
    }
}

fn field_value(v: &FieldValue) -> Value<'_> {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::F32(f) => Value::Float(f64::from(*f)),
        FieldValue::F64(f) => Value::Float(*f),
        FieldValue::Str(s) => Value::Str(s),
        FieldValue::Timestamp(t) => Value::Int(*t as i64),
        FieldValue::U64(u) => match i64::try_from(*u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(*u as f64),
        },
        other => other.as_i64().map_or(Value::Null, Value::Int),
    }
}

fn as_f64(v: Value<'_>) -> Option<f64> {
    match v {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) => Some(f),
        _ => None,
    }
}

fn truth(b: Option<bool>) -> Value<'static> {
    b.map_or(Value::Null, Value::Bool)
}

fn compare(op: Cmp, a: Value<'_>, b: Value<'_>) -> Option<bool> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(&y)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            // NaN is unordered: every comparison but <> is false, as in Java.
            match as_f64(a)?.partial_cmp(&as_f64(b)?) {
                Some(o) => Some(o),
                None => return Some(op == Cmp::Ne),
            }
        }
        (Value::Str(x), Value::Str(y)) => return equality(op, x == y),
        (Value::Bool(x), Value::Bool(y)) => return equality(op, x == y),
        _ => None,
    };
    let ord = ord?;
    Some(match op {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Ne => ord != Ordering::Equal,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Le => ord != Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
    })
}

fn equality(op: Cmp, equal: bool) -> Option<bool> {
    match op {
        Cmp::Eq => Some(equal),
        Cmp::Ne => Some(!equal),
        _ => None,
    }
}

fn arith<'a>(op: Arith, a: Value<'a>, b: Value<'a>) -> Value<'a> {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let exact = match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            Arith::Div if y == 0 => return Value::Null,
            Arith::Div => x.checked_div(y),
        };
        if let Some(v) = exact {
            return Value::Int(v);
        }
    }
    let (Some(x), Some(y)) = (as_f64(a), as_f64(b)) else {
        return Value::Null;
    };
    Value::Float(match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
    })
}

impl Expr {
    fn eval<'a>(&'a self, cx: &Cx<'a>) -> Value<'a> {
        match self {
            Expr::Bool(b) => Value::Bool(*b),
            Expr::Int(i) => Value::Int(*i),
            Expr::Float(f) => Value::Float(*f),
            Expr::Str(s) => Value::Str(s),
            Expr::Field(f) => f.get(cx),
            Expr::Neg(e) => match e.eval(cx) {
                Value::Int(i) => i
                    .checked_neg()
                    .map_or(Value::Float(-(i as f64)), Value::Int),
                Value::Float(f) => Value::Float(-f),
                _ => Value::Null,
            },
            Expr::Arith(op, a, b) => arith(*op, a.eval(cx), b.eval(cx)),
            Expr::Cmp(op, a, b) => truth(compare(*op, a.eval(cx), b.eval(cx))),
            Expr::Between {
                negated,
                value,
                low,
                high,
            } => {
                let v = value.eval(cx);
                let lo = compare(Cmp::Ge, v, low.eval(cx));
                let hi = compare(Cmp::Le, v, high.eval(cx));
                let within = and(lo, hi);
                truth(if *negated { within.map(|b| !b) } else { within })
            }
            Expr::In {
                negated,
                field,
                list,
            } => match field.get(cx) {
                Value::Str(s) => Value::Bool(list.iter().any(|x| **x == *s) != *negated),
                _ => Value::Null,
            },
            Expr::Like {
                negated,
                field,
                pattern,
            } => match field.get(cx) {
                Value::Str(s) => Value::Bool(like_matches(pattern, s) != *negated),
                _ => Value::Null,
            },
            Expr::IsNull { negated, field } => {
                Value::Bool(matches!(field.get(cx), Value::Null) != *negated)
            }
            Expr::Not(e) => truth(as_truth(e.eval(cx)).map(|b| !b)),
            Expr::And(terms) => {
                let mut acc = Some(true);
                for t in terms.iter() {
                    acc = and(acc, as_truth(t.eval(cx)));
                    if acc == Some(false) {
                        break;
                    }
                }
                truth(acc)
            }
            Expr::Or(terms) => {
                let mut acc = Some(false);
                for t in terms.iter() {
                    acc = match (acc, as_truth(t.eval(cx))) {
                        (Some(true), _) | (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    };
                    if acc == Some(true) {
                        break;
                    }
                }
                truth(acc)
            }
        }
    }
}

fn as_truth(v: Value<'_>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}

fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}
