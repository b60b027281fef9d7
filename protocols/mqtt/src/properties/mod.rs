//! MQTT 5 properties: identifiers, where each may appear, the per-packet
//! property structs, and the generic list reader and writer.
//!
//! # Rules enforced while decoding
//!
//! * An unknown identifier, or a known one in a packet that may not carry
//!   it, is a Malformed Packet (MQTT 5 section 2.2.2.2).
//! * A property present twice is a Protocol Error, except User Property
//!   (anywhere) and Subscription Identifier (in PUBLISH).
//! * Values the specification forbids are Protocol Errors: 0 for Receive
//!   Maximum, Maximum Packet Size and Subscription Identifier; anything but
//!   0 or 1 for the flag properties and Maximum QoS; anything but 0 or 1 for
//!   Payload Format Indicator. A Topic Alias of 0 is "Topic Alias invalid".
//! * The property length must fit the packet and every value must fit the
//!   property length (Malformed Packet otherwise).
//! * At most `Limits::properties_max` entries per list ("Quota exceeded").
//!
//! Rules that need the rest of the packet (Authentication Data without a
//! method, a Subscription Identifier in a client's PUBLISH, Response Topic
//! syntax) are checked by the packet's decoder.

mod id;
pub(crate) mod list;
mod sets;

pub use id::{PropertyContext, PropertyId, ValueType};
pub use sets::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PublishProperties, SubscribeProperties, UnsubscribeProperties, UserProperties,
    WillProperties,
};
