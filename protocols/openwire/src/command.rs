//! OpenWire commands and the data structures inside them, as plain data. Field names
//! follow ActiveMQ's command classes; `marshal.rs` reads and writes them.

use bytes::Bytes;
use bytestring::ByteString;

/// Data structure type bytes (ActiveMQ's `CommandTypes`) this broker reads or writes.
#[allow(missing_docs)]
pub mod types {
    pub const NULL: u8 = 0;
    pub const WIREFORMAT_INFO: u8 = 1;
    pub const BROKER_INFO: u8 = 2;
    pub const CONNECTION_INFO: u8 = 3;
    pub const SESSION_INFO: u8 = 4;
    pub const CONSUMER_INFO: u8 = 5;
    pub const PRODUCER_INFO: u8 = 6;
    pub const TRANSACTION_INFO: u8 = 7;
    pub const DESTINATION_INFO: u8 = 8;
    pub const REMOVE_SUBSCRIPTION_INFO: u8 = 9;
    pub const KEEP_ALIVE_INFO: u8 = 10;
    pub const SHUTDOWN_INFO: u8 = 11;
    pub const REMOVE_INFO: u8 = 12;
    pub const CONTROL_COMMAND: u8 = 14;
    pub const FLUSH_COMMAND: u8 = 15;
    pub const CONNECTION_ERROR: u8 = 16;
    pub const CONSUMER_CONTROL: u8 = 17;
    pub const CONNECTION_CONTROL: u8 = 18;
    pub const PRODUCER_ACK: u8 = 19;
    pub const MESSAGE_PULL: u8 = 20;
    pub const MESSAGE_DISPATCH: u8 = 21;
    pub const MESSAGE_ACK: u8 = 22;
    pub const MESSAGE: u8 = 23;
    pub const BYTES_MESSAGE: u8 = 24;
    pub const MAP_MESSAGE: u8 = 25;
    pub const OBJECT_MESSAGE: u8 = 26;
    pub const STREAM_MESSAGE: u8 = 27;
    pub const TEXT_MESSAGE: u8 = 28;
    pub const BLOB_MESSAGE: u8 = 29;
    pub const RESPONSE: u8 = 30;
    pub const EXCEPTION_RESPONSE: u8 = 31;
    pub const DATA_RESPONSE: u8 = 32;
    pub const DATA_ARRAY_RESPONSE: u8 = 33;
    pub const INTEGER_RESPONSE: u8 = 34;
    pub const QUEUE: u8 = 100;
    pub const TOPIC: u8 = 101;
    pub const TEMP_QUEUE: u8 = 102;
    pub const TEMP_TOPIC: u8 = 103;
    pub const MESSAGE_ID: u8 = 110;
    pub const LOCAL_TRANSACTION_ID: u8 = 111;
    pub const XA_TRANSACTION_ID: u8 = 112;
    pub const CONNECTION_ID: u8 = 120;
    pub const SESSION_ID: u8 = 121;
    pub const CONSUMER_ID: u8 = 122;
    pub const PRODUCER_ID: u8 = 123;
    pub const BROKER_ID: u8 = 124;
}

/// `SessionId`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct SessionId {
    pub connection: ByteString,
    pub value: i64,
}

/// `ProducerId` (on the wire: connection, value, session).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct ProducerId {
    pub connection: ByteString,
    pub value: i64,
    pub session: i64,
}

/// `ConsumerId`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct ConsumerId {
    pub connection: ByteString,
    pub session: i64,
    pub value: i64,
}

/// `MessageId`: the producer and its sequence number (`text_view` from version 10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct MessageId {
    pub text_view: Option<ByteString>,
    pub producer: Option<ProducerId>,
    pub producer_seq: i64,
    pub broker_seq: i64,
}

/// A destination: kind and physical name (which may be a composite `a,b`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Destination {
    Queue(ByteString),
    Topic(ByteString),
    TempQueue(ByteString),
    TempTopic(ByteString),
}

impl Destination {
    /// The physical name.
    pub fn name(&self) -> &ByteString {
        match self {
            Destination::Queue(n)
            | Destination::Topic(n)
            | Destination::TempQueue(n)
            | Destination::TempTopic(n) => n,
        }
    }

    /// True for topics and temporary topics.
    pub fn is_topic(&self) -> bool {
        matches!(self, Destination::Topic(_) | Destination::TempTopic(_))
    }

    /// True for temporary destinations.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Destination::TempQueue(_) | Destination::TempTopic(_))
    }

    /// The type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Destination::Queue(_) => types::QUEUE,
            Destination::Topic(_) => types::TOPIC,
            Destination::TempQueue(_) => types::TEMP_QUEUE,
            Destination::TempTopic(_) => types::TEMP_TOPIC,
        }
    }
}

/// A transaction id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum TransactionId {
    Local {
        value: i64,
        connection: Option<ByteString>,
    },
    Xa {
        format: i32,
        global: Option<Bytes>,
        branch: Option<Bytes>,
    },
}

/// A Java exception: class name and message (stack traces are neither sent nor kept).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Throwable {
    pub class: Option<ByteString>,
    pub message: Option<ByteString>,
}

/// `WireFormatInfo`.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct WireFormatInfo {
    pub version: i32,
    /// The options (`TightEncodingEnabled`, `MaxFrameSize`...) as a primitive map.
    pub properties: ferromq_core::FieldTable,
}

/// `BrokerInfo` (the fields a client reads).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct BrokerInfo {
    pub broker_id: Option<ByteString>,
    pub broker_url: Option<ByteString>,
    pub peers: Vec<BrokerInfo>,
    pub broker_name: Option<ByteString>,
    pub slave_broker: bool,
    pub master_broker: bool,
    pub fault_tolerant: bool,
    pub duplex: bool,
    pub network: bool,
    pub connection_id: i64,
    pub upload_url: Option<ByteString>,
    pub network_properties: Option<ByteString>,
}

/// `ConnectionInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct ConnectionInfo {
    pub connection_id: Option<ByteString>,
    pub client_id: Option<ByteString>,
    pub password: Option<ByteString>,
    pub user_name: Option<ByteString>,
    pub broker_path: Vec<ByteString>,
    pub broker_master_connector: bool,
    pub manageable: bool,
    pub client_master: bool,
    pub fault_tolerant: bool,
    pub failover_reconnect: bool,
    pub client_ip: Option<ByteString>,
}

/// `ProducerInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ProducerInfo {
    pub producer_id: ProducerId,
    pub destination: Option<Destination>,
    pub broker_path: Vec<ByteString>,
    pub dispatch_async: bool,
    pub window_size: i32,
}

/// `ConsumerInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ConsumerInfo {
    pub consumer_id: ConsumerId,
    pub browser: bool,
    pub destination: Option<Destination>,
    pub prefetch: i32,
    pub maximum_pending_message_limit: i32,
    pub dispatch_async: bool,
    pub selector: Option<ByteString>,
    /// From version 10.
    pub client_id: Option<ByteString>,
    pub subscription_name: Option<ByteString>,
    pub no_local: bool,
    pub exclusive: bool,
    pub retroactive: bool,
    pub priority: i8,
    pub broker_path: Vec<ByteString>,
    pub network_subscription: bool,
    pub optimized_acknowledge: bool,
    pub no_range_acks: bool,
}

/// `TransactionInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TransactionInfo {
    pub connection_id: Option<ByteString>,
    pub transaction_id: Option<TransactionId>,
    /// 0 begin, 1 prepare, 2 commit one phase, 3 commit two phase, 4 rollback, 5 recover,
    /// 6 forget, 7 end.
    pub kind: u8,
}

/// `DestinationInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DestinationInfo {
    pub connection_id: Option<ByteString>,
    pub destination: Option<Destination>,
    /// 0 add, 1 remove.
    pub operation: u8,
    pub timeout: i64,
    pub broker_path: Vec<ByteString>,
}

/// `RemoveSubscriptionInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RemoveSubscriptionInfo {
    pub connection_id: Option<ByteString>,
    pub subscription_name: Option<ByteString>,
    pub client_id: Option<ByteString>,
}

/// What a `RemoveInfo` removes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ObjectId {
    Connection(ByteString),
    Session(SessionId),
    Consumer(ConsumerId),
    Producer(ProducerId),
}

/// `RemoveInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RemoveInfo {
    pub object_id: ObjectId,
    pub last_delivered_sequence_id: i64,
}

/// `ConnectionControl`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct ConnectionControl {
    pub close: bool,
    pub exit: bool,
    pub fault_tolerant: bool,
    pub resume: bool,
    pub suspend: bool,
    pub connected_brokers: Option<ByteString>,
    pub reconnect_to: Option<ByteString>,
    pub rebalance: bool,
    pub token: Option<Bytes>,
}

/// `ConsumerControl`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ConsumerControl {
    pub destination: Option<Destination>,
    pub close: bool,
    pub consumer_id: Option<ConsumerId>,
    pub prefetch: i32,
    pub flush: bool,
    pub start: bool,
    pub stop: bool,
}

/// `MessagePull`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MessagePull {
    pub consumer_id: Option<ConsumerId>,
    pub destination: Option<Destination>,
    /// -1 no wait, 0 wait forever, >0 milliseconds.
    pub timeout: i64,
    pub correlation_id: Option<ByteString>,
    pub message_id: Option<MessageId>,
}

/// `MessageAck`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MessageAck {
    pub destination: Option<Destination>,
    pub transaction_id: Option<TransactionId>,
    pub consumer_id: Option<ConsumerId>,
    pub ack_type: u8,
    pub first_message_id: Option<MessageId>,
    pub last_message_id: Option<MessageId>,
    pub message_count: i32,
    pub poison_cause: Option<Throwable>,
}

/// MessageAck types.
#[allow(missing_docs)]
pub mod ack {
    pub const DELIVERED: u8 = 0;
    pub const POISON: u8 = 1;
    pub const STANDARD: u8 = 2;
    pub const REDELIVERED: u8 = 3;
    pub const INDIVIDUAL: u8 = 4;
    pub const UNMATCHED: u8 = 5;
    pub const EXPIRED: u8 = 6;
}

/// `ProducerAck`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ProducerAck {
    pub producer_id: Option<ProducerId>,
    pub size: i32,
}

/// An ActiveMQ message of any kind (`types::MESSAGE`..`types::BLOB_MESSAGE`).
///
/// `content` and `properties` are kept marshalled, as slices of the frame: the broker
/// reads properties only to convert or select, and never touches the body unless another
/// protocol consumes it.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Message {
    pub kind: u8,
    pub producer_id: Option<ProducerId>,
    pub destination: Option<Destination>,
    pub transaction_id: Option<TransactionId>,
    pub original_destination: Option<Destination>,
    pub message_id: Option<MessageId>,
    pub original_transaction_id: Option<TransactionId>,
    pub group_id: Option<ByteString>,
    pub group_seq: i32,
    pub correlation_id: Option<ByteString>,
    pub persistent: bool,
    pub expiration: i64,
    pub priority: i8,
    pub reply_to: Option<Destination>,
    pub timestamp: i64,
    pub jms_type: Option<ByteString>,
    pub content: Option<Bytes>,
    pub properties: Option<Bytes>,
    /// What an advisory message is about (set by brokers only).
    pub data_structure: Option<Box<DataStructure>>,
    pub target_consumer_id: Option<ConsumerId>,
    pub compressed: bool,
    pub redelivery_counter: i32,
    pub broker_path: Vec<ByteString>,
    pub arrival: i64,
    pub user_id: Option<ByteString>,
    pub received_by_df_bridge: bool,
    pub droppable: bool,
    pub cluster: Vec<ByteString>,
    pub broker_in_time: i64,
    pub broker_out_time: i64,
    /// From version 10.
    pub jmsx_group_first_for_consumer: bool,
}

impl Message {
    /// An empty message of `kind`.
    pub fn new(kind: u8) -> Self {
        Self {
            kind,
            producer_id: None,
            destination: None,
            transaction_id: None,
            original_destination: None,
            message_id: None,
            original_transaction_id: None,
            group_id: None,
            group_seq: 0,
            correlation_id: None,
            persistent: false,
            expiration: 0,
            priority: 4,
            reply_to: None,
            timestamp: 0,
            jms_type: None,
            content: None,
            properties: None,
            data_structure: None,
            target_consumer_id: None,
            compressed: false,
            redelivery_counter: 0,
            broker_path: Vec::new(),
            arrival: 0,
            user_id: None,
            received_by_df_bridge: false,
            droppable: false,
            cluster: Vec::new(),
            broker_in_time: 0,
            broker_out_time: 0,
            jmsx_group_first_for_consumer: false,
        }
    }
}

/// A structure nested in a message's `dataStructure` field. Brokers put the subject of
/// an advisory there; the temporary-destination advisories carry a DestinationInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum DataStructure {
    DestinationInfo(DestinationInfo),
}

/// `MessageDispatch`; a `None` message tells a pulling consumer that nothing came.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct MessageDispatch {
    pub consumer_id: Option<ConsumerId>,
    pub destination: Option<Destination>,
    pub message: Option<Box<Message>>,
    pub redelivery_counter: i32,
}

/// Every command this broker reads or writes.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Body {
    WireFormatInfo(WireFormatInfo),
    BrokerInfo(Box<BrokerInfo>),
    ConnectionInfo(Box<ConnectionInfo>),
    SessionInfo(SessionId),
    ConsumerInfo(Box<ConsumerInfo>),
    ProducerInfo(Box<ProducerInfo>),
    TransactionInfo(Box<TransactionInfo>),
    DestinationInfo(Box<DestinationInfo>),
    RemoveSubscriptionInfo(Box<RemoveSubscriptionInfo>),
    KeepAliveInfo,
    ShutdownInfo,
    RemoveInfo(Box<RemoveInfo>),
    ControlCommand(Option<ByteString>),
    FlushCommand,
    ConnectionError {
        exception: Option<Throwable>,
        connection_id: Option<ByteString>,
    },
    ConsumerControl(Box<ConsumerControl>),
    ConnectionControl(Box<ConnectionControl>),
    ProducerAck(ProducerAck),
    MessagePull(Box<MessagePull>),
    MessageDispatch(MessageDispatch),
    MessageAck(Box<MessageAck>),
    Message(Box<Message>),
    Response {
        correlation_id: i32,
    },
    ExceptionResponse {
        correlation_id: i32,
        exception: Option<Throwable>,
    },
    IntegerResponse {
        correlation_id: i32,
        result: i32,
    },
    /// A command type this broker does not implement; its fields were skipped (frames
    /// are length-prefixed), so it can be answered with an ExceptionResponse naming it.
    Unknown(u8),
}

impl Body {
    /// The command's type byte.
    pub fn type_byte(&self) -> u8 {
        use types::*;
        match self {
            Body::WireFormatInfo(_) => WIREFORMAT_INFO,
            Body::BrokerInfo(_) => BROKER_INFO,
            Body::ConnectionInfo(_) => CONNECTION_INFO,
            Body::SessionInfo(_) => SESSION_INFO,
            Body::ConsumerInfo(_) => CONSUMER_INFO,
            Body::ProducerInfo(_) => PRODUCER_INFO,
            Body::TransactionInfo(_) => TRANSACTION_INFO,
            Body::DestinationInfo(_) => DESTINATION_INFO,
            Body::RemoveSubscriptionInfo(_) => REMOVE_SUBSCRIPTION_INFO,
            Body::KeepAliveInfo => KEEP_ALIVE_INFO,
            Body::ShutdownInfo => SHUTDOWN_INFO,
            Body::RemoveInfo(_) => REMOVE_INFO,
            Body::ControlCommand(_) => CONTROL_COMMAND,
            Body::FlushCommand => FLUSH_COMMAND,
            Body::ConnectionError { .. } => CONNECTION_ERROR,
            Body::ConsumerControl(_) => CONSUMER_CONTROL,
            Body::ConnectionControl(_) => CONNECTION_CONTROL,
            Body::ProducerAck(_) => PRODUCER_ACK,
            Body::MessagePull(_) => MESSAGE_PULL,
            Body::MessageDispatch(_) => MESSAGE_DISPATCH,
            Body::MessageAck(_) => MESSAGE_ACK,
            Body::Message(m) => m.kind,
            Body::Response { .. } => RESPONSE,
            Body::ExceptionResponse { .. } => EXCEPTION_RESPONSE,
            Body::IntegerResponse { .. } => INTEGER_RESPONSE,
            Body::Unknown(t) => *t,
        }
    }

    /// ActiveMQ's class name for the command, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Body::WireFormatInfo(_) => "WireFormatInfo",
            Body::BrokerInfo(_) => "BrokerInfo",
            Body::ConnectionInfo(_) => "ConnectionInfo",
            Body::SessionInfo(_) => "SessionInfo",
            Body::ConsumerInfo(_) => "ConsumerInfo",
            Body::ProducerInfo(_) => "ProducerInfo",
            Body::TransactionInfo(_) => "TransactionInfo",
            Body::DestinationInfo(_) => "DestinationInfo",
            Body::RemoveSubscriptionInfo(_) => "RemoveSubscriptionInfo",
            Body::KeepAliveInfo => "KeepAliveInfo",
            Body::ShutdownInfo => "ShutdownInfo",
            Body::RemoveInfo(_) => "RemoveInfo",
            Body::ControlCommand(_) => "ControlCommand",
            Body::FlushCommand => "FlushCommand",
            Body::ConnectionError { .. } => "ConnectionError",
            Body::ConsumerControl(_) => "ConsumerControl",
            Body::ConnectionControl(_) => "ConnectionControl",
            Body::ProducerAck(_) => "ProducerAck",
            Body::MessagePull(_) => "MessagePull",
            Body::MessageDispatch(_) => "MessageDispatch",
            Body::MessageAck(_) => "MessageAck",
            Body::Message(_) => "Message",
            Body::Response { .. } => "Response",
            Body::ExceptionResponse { .. } => "ExceptionResponse",
            Body::IntegerResponse { .. } => "IntegerResponse",
            Body::Unknown(_) => "unknown command",
        }
    }
}

/// A command with its header (every command but WireFormatInfo has one).
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The sender's sequence number for it; responses carry it as correlation id.
    pub command_id: i32,
    /// The sender waits for a Response / ExceptionResponse.
    pub response_required: bool,
    /// The command.
    pub body: Body,
}

impl Command {
    /// A command that asks for no response.
    pub fn new(command_id: i32, body: Body) -> Self {
        Self {
            command_id,
            response_required: false,
            body,
        }
    }
}
