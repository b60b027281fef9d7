//! Loose (untight, uncached) marshalling of every command in `command.rs`, for
//! versions 9 to 12. Versions differ only in three fields, noted where they are read:
//! `MessageId.textView`, `ConsumerInfo.clientId` and
//! `Message.jmsXGroupFirstForConsumer` exist from version 10 on.
//!
//! Layout of a loose command: the type byte, then for commands the `int` command id and
//! the `boolean` response-required flag, then the fields in declaration order. Nested
//! structures are a presence boolean, their type byte and their fields.

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;

use crate::command::*;
use crate::error::DecodeError;
use crate::primitive;
use crate::wire::{put_bool, put_opt_bytes, put_opt_string, Reader};

/// What decoding depends on besides the bytes.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    /// The negotiated version (9..=12).
    pub version: i32,
    /// Whether throwables carry stack traces (negotiated `StackTraceEnabled`).
    pub stack_trace: bool,
    /// Nesting bound for maps and lists in properties, and for exception causes.
    pub depth_max: usize,
}

impl Default for Format {
    fn default() -> Self {
        Self {
            version: 12,
            stack_trace: false,
            depth_max: 16,
        }
    }
}

// ---- reading -------------------------------------------------------------------------

fn nested<T>(
    r: &mut Reader,
    what: &'static str,
    f: impl FnOnce(u8, &mut Reader) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if !r.bool(what)? {
        return Ok(None);
    }
    let ty = r.u8(what)?;
    f(ty, r).map(Some)
}

fn expect(ty: u8, want: u8, what: &'static str) -> Result<(), DecodeError> {
    if ty == want {
        Ok(())
    } else {
        Err(DecodeError::UnexpectedType { what, ty })
    }
}

fn connection_id(r: &mut Reader, what: &'static str) -> Result<Option<ByteString>, DecodeError> {
    Ok(nested(r, what, |ty, r| {
        expect(ty, types::CONNECTION_ID, what)?;
        r.opt_string(what)
    })?
    .flatten())
}

fn session_id_fields(r: &mut Reader) -> Result<SessionId, DecodeError> {
    Ok(SessionId {
        connection: r.opt_string("SessionId.connectionId")?.unwrap_or_default(),
        value: r.i64("SessionId.value")?,
    })
}

fn producer_id_fields(r: &mut Reader) -> Result<ProducerId, DecodeError> {
    Ok(ProducerId {
        connection: r.opt_string("ProducerId.connectionId")?.unwrap_or_default(),
        value: r.i64("ProducerId.value")?,
        session: r.i64("ProducerId.sessionId")?,
    })
}

fn consumer_id_fields(r: &mut Reader) -> Result<ConsumerId, DecodeError> {
    Ok(ConsumerId {
        connection: r.opt_string("ConsumerId.connectionId")?.unwrap_or_default(),
        session: r.i64("ConsumerId.sessionId")?,
        value: r.i64("ConsumerId.value")?,
    })
}

fn producer_id(r: &mut Reader, what: &'static str) -> Result<Option<ProducerId>, DecodeError> {
    nested(r, what, |ty, r| {
        expect(ty, types::PRODUCER_ID, what)?;
        producer_id_fields(r)
    })
}

fn consumer_id(r: &mut Reader, what: &'static str) -> Result<Option<ConsumerId>, DecodeError> {
    nested(r, what, |ty, r| {
        expect(ty, types::CONSUMER_ID, what)?;
        consumer_id_fields(r)
    })
}

fn destination(r: &mut Reader, what: &'static str) -> Result<Option<Destination>, DecodeError> {
    nested(r, what, |ty, r| {
        let name = r.opt_string(what)?.unwrap_or_default();
        Ok(match ty {
            types::QUEUE => Destination::Queue(name),
            types::TOPIC => Destination::Topic(name),
            types::TEMP_QUEUE => Destination::TempQueue(name),
            types::TEMP_TOPIC => Destination::TempTopic(name),
            ty => return Err(DecodeError::UnexpectedType { what, ty }),
        })
    })
}

fn message_id(
    r: &mut Reader,
    f: &Format,
    what: &'static str,
) -> Result<Option<MessageId>, DecodeError> {
    nested(r, what, |ty, r| {
        expect(ty, types::MESSAGE_ID, what)?;
        let text_view = if f.version >= 10 {
            r.opt_string("MessageId.textView")?
        } else {
            None
        };
        Ok(MessageId {
            text_view,
            producer: producer_id(r, "MessageId.producerId")?,
            producer_seq: r.i64("MessageId.producerSequenceId")?,
            broker_seq: r.i64("MessageId.brokerSequenceId")?,
        })
    })
}

fn transaction_id(
    r: &mut Reader,
    what: &'static str,
) -> Result<Option<TransactionId>, DecodeError> {
    nested(r, what, |ty, r| match ty {
        types::LOCAL_TRANSACTION_ID => Ok(TransactionId::Local {
            value: r.i64("LocalTransactionId.value")?,
            connection: connection_id(r, "LocalTransactionId.connectionId")?,
        }),
        types::XA_TRANSACTION_ID => Ok(TransactionId::Xa {
            format: r.i32("XATransactionId.formatId")?,
            global: r.opt_bytes("XATransactionId.globalTransactionId")?,
            branch: r.opt_bytes("XATransactionId.branchQualifier")?,
        }),
        ty => Err(DecodeError::UnexpectedType { what, ty }),
    })
}

fn broker_ids(r: &mut Reader, what: &'static str) -> Result<Vec<ByteString>, DecodeError> {
    if !r.bool(what)? {
        return Ok(Vec::new());
    }
    let n = r.i16(what)?;
    if n < 0 || n as usize > r.remaining() {
        return Err(DecodeError::BadLength(what, n as i64));
    }
    let mut v = Vec::new();
    for _ in 0..n {
        let id = nested(r, what, |ty, r| {
            expect(ty, types::BROKER_ID, what)?;
            r.opt_string(what)
        })?;
        if let Some(Some(id)) = id {
            v.push(id);
        }
    }
    Ok(v)
}

fn throwable(r: &mut Reader, f: &Format, depth: usize) -> Result<Option<Throwable>, DecodeError> {
    if !r.bool("Throwable")? {
        return Ok(None);
    }
    if depth >= f.depth_max {
        return Err(DecodeError::TooDeep(f.depth_max));
    }
    let class = r.opt_string("Throwable.class")?;
    let message = r.opt_string("Throwable.message")?;
    if f.stack_trace {
        let n = r.i16("Throwable.stackTrace")?;
        if n < 0 {
            return Err(DecodeError::BadLength("Throwable.stackTrace", n as i64));
        }
        for _ in 0..n {
            r.opt_string("StackTraceElement.class")?;
            r.opt_string("StackTraceElement.method")?;
            r.opt_string("StackTraceElement.file")?;
            r.i32("StackTraceElement.line")?;
        }
        throwable(r, f, depth + 1)?;
    }
    Ok(Some(Throwable { class, message }))
}

fn broker_info_fields(r: &mut Reader, f: &Format, depth: usize) -> Result<BrokerInfo, DecodeError> {
    let broker_id = nested(r, "BrokerInfo.brokerId", |ty, r| {
        expect(ty, types::BROKER_ID, "BrokerInfo.brokerId")?;
        r.opt_string("BrokerId.value")
    })?
    .flatten();
    let broker_url = r.opt_string("BrokerInfo.brokerURL")?;
    let mut peers = Vec::new();
    if r.bool("BrokerInfo.peerBrokerInfos")? {
        let n = r.i16("BrokerInfo.peerBrokerInfos")?;
        if n < 0 || depth >= f.depth_max {
            return Err(DecodeError::BadLength(
                "BrokerInfo.peerBrokerInfos",
                n as i64,
            ));
        }
        for _ in 0..n {
            if let Some(p) = nested(r, "BrokerInfo.peer", |ty, r| {
                expect(ty, types::BROKER_INFO, "BrokerInfo.peer")?;
                r.i32("command id")?;
                r.bool("response required")?;
                broker_info_fields(r, f, depth + 1)
            })? {
                peers.push(p);
            }
        }
    }
    Ok(BrokerInfo {
        broker_id,
        broker_url,
        peers,
        broker_name: r.opt_string("BrokerInfo.brokerName")?,
        slave_broker: r.bool("BrokerInfo.slaveBroker")?,
        master_broker: r.bool("BrokerInfo.masterBroker")?,
        fault_tolerant: r.bool("BrokerInfo.faultTolerantConfiguration")?,
        duplex: r.bool("BrokerInfo.duplexConnection")?,
        network: r.bool("BrokerInfo.networkConnection")?,
        connection_id: r.i64("BrokerInfo.connectionId")?,
        upload_url: r.opt_string("BrokerInfo.brokerUploadUrl")?,
        network_properties: r.opt_string("BrokerInfo.networkProperties")?,
    })
}

fn destination_info_fields(r: &mut Reader) -> Result<DestinationInfo, DecodeError> {
    Ok(DestinationInfo {
        connection_id: connection_id(r, "DestinationInfo.connectionId")?,
        destination: destination(r, "DestinationInfo.destination")?,
        operation: r.u8("DestinationInfo.operationType")?,
        timeout: r.i64("DestinationInfo.timeout")?,
        broker_path: broker_ids(r, "DestinationInfo.brokerPath")?,
    })
}

fn message_fields(kind: u8, r: &mut Reader, f: &Format) -> Result<Message, DecodeError> {
    let mut m = Message::new(kind);
    m.producer_id = producer_id(r, "Message.producerId")?;
    m.destination = destination(r, "Message.destination")?;
    m.transaction_id = transaction_id(r, "Message.transactionId")?;
    m.original_destination = destination(r, "Message.originalDestination")?;
    m.message_id = message_id(r, f, "Message.messageId")?;
    m.original_transaction_id = transaction_id(r, "Message.originalTransactionId")?;
    m.group_id = r.opt_string("Message.groupID")?;
    m.group_seq = r.i32("Message.groupSequence")?;
    m.correlation_id = r.opt_string("Message.correlationId")?;
    m.persistent = r.bool("Message.persistent")?;
    m.expiration = r.i64("Message.expiration")?;
    m.priority = r.u8("Message.priority")? as i8;
    m.reply_to = destination(r, "Message.replyTo")?;
    m.timestamp = r.i64("Message.timestamp")?;
    m.jms_type = r.opt_string("Message.type")?;
    m.content = r.opt_bytes("Message.content")?;
    m.properties = r.opt_bytes("Message.marshalledProperties")?;
    // Only advisory messages made by brokers carry one: a nested command (with its
    // command id and response flag), of the one kind this broker writes.
    m.data_structure = nested(r, "Message.dataStructure", |ty, r| {
        expect(ty, types::DESTINATION_INFO, "Message.dataStructure")?;
        r.i32("command id")?;
        r.bool("response required")?;
        Ok(Box::new(DataStructure::DestinationInfo(
            destination_info_fields(r)?,
        )))
    })?;
    m.target_consumer_id = consumer_id(r, "Message.targetConsumerId")?;
    m.compressed = r.bool("Message.compressed")?;
    m.redelivery_counter = r.i32("Message.redeliveryCounter")?;
    m.broker_path = broker_ids(r, "Message.brokerPath")?;
    m.arrival = r.i64("Message.arrival")?;
    m.user_id = r.opt_string("Message.userID")?;
    m.received_by_df_bridge = r.bool("Message.recievedByDFBridge")?;
    m.droppable = r.bool("Message.droppable")?;
    m.cluster = broker_ids(r, "Message.cluster")?;
    m.broker_in_time = r.i64("Message.brokerInTime")?;
    m.broker_out_time = r.i64("Message.brokerOutTime")?;
    if f.version >= 10 {
        m.jmsx_group_first_for_consumer = r.bool("Message.jmsXGroupFirstForConsumer")?;
    }
    Ok(m)
}

/// Reads one command of type `ty` (the type byte already read) to the end of `r`.
pub fn read_command(ty: u8, r: &mut Reader, f: &Format) -> Result<Command, DecodeError> {
    use types::*;
    if ty == WIREFORMAT_INFO {
        let magic = r.bytes(8, "WireFormatInfo.magic")?;
        if &magic[..] != b"ActiveMQ" {
            return Err(DecodeError::NotOpenWire("bad magic"));
        }
        let version = r.i32("WireFormatInfo.version")?;
        let properties = match r.opt_bytes("WireFormatInfo.marshalledProperties")? {
            Some(b) => {
                let mut pr = Reader::new(b);
                let t = primitive::read_map(&mut pr, f.depth_max)?;
                if pr.remaining() > 0 {
                    return Err(DecodeError::Trailing(pr.remaining()));
                }
                t
            }
            None => Default::default(),
        };
        return finish(
            r,
            Command::new(
                0,
                Body::WireFormatInfo(WireFormatInfo {
                    version,
                    properties,
                }),
            ),
        );
    }
    let command_id = r.i32("command id")?;
    let response_required = r.bool("response required")?;
    let body = match ty {
        BROKER_INFO => Body::BrokerInfo(Box::new(broker_info_fields(r, f, 0)?)),
        CONNECTION_INFO => Body::ConnectionInfo(Box::new(ConnectionInfo {
            connection_id: connection_id(r, "ConnectionInfo.connectionId")?,
            client_id: r.opt_string("ConnectionInfo.clientId")?,
            password: r.opt_string("ConnectionInfo.password")?,
            user_name: r.opt_string("ConnectionInfo.userName")?,
            broker_path: broker_ids(r, "ConnectionInfo.brokerPath")?,
            broker_master_connector: r.bool("ConnectionInfo.brokerMasterConnector")?,
            manageable: r.bool("ConnectionInfo.manageable")?,
            client_master: r.bool("ConnectionInfo.clientMaster")?,
            fault_tolerant: r.bool("ConnectionInfo.faultTolerant")?,
            failover_reconnect: r.bool("ConnectionInfo.failoverReconnect")?,
            client_ip: r.opt_string("ConnectionInfo.clientIp")?,
        })),
        SESSION_INFO => Body::SessionInfo(
            nested(r, "SessionInfo.sessionId", |ty, r| {
                expect(ty, SESSION_ID, "SessionInfo.sessionId")?;
                session_id_fields(r)
            })?
            .ok_or(DecodeError::Truncated("SessionInfo.sessionId"))?,
        ),
        PRODUCER_INFO => Body::ProducerInfo(Box::new(ProducerInfo {
            producer_id: producer_id(r, "ProducerInfo.producerId")?
                .ok_or(DecodeError::Truncated("ProducerInfo.producerId"))?,
            destination: destination(r, "ProducerInfo.destination")?,
            broker_path: broker_ids(r, "ProducerInfo.brokerPath")?,
            dispatch_async: r.bool("ProducerInfo.dispatchAsync")?,
            window_size: r.i32("ProducerInfo.windowSize")?,
        })),
        CONSUMER_INFO => {
            let id = consumer_id(r, "ConsumerInfo.consumerId")?
                .ok_or(DecodeError::Truncated("ConsumerInfo.consumerId"))?;
            let browser = r.bool("ConsumerInfo.browser")?;
            let destination = destination(r, "ConsumerInfo.destination")?;
            let prefetch = r.i32("ConsumerInfo.prefetchSize")?;
            let maximum_pending_message_limit = r.i32("ConsumerInfo.maximumPendingMessageLimit")?;
            let dispatch_async = r.bool("ConsumerInfo.dispatchAsync")?;
            let selector = r.opt_string("ConsumerInfo.selector")?;
            let client_id = if f.version >= 10 {
                r.opt_string("ConsumerInfo.clientId")?
            } else {
                None
            };
            let subscription_name = r.opt_string("ConsumerInfo.subscriptionName")?;
            let no_local = r.bool("ConsumerInfo.noLocal")?;
            let exclusive = r.bool("ConsumerInfo.exclusive")?;
            let retroactive = r.bool("ConsumerInfo.retroactive")?;
            let priority = r.u8("ConsumerInfo.priority")? as i8;
            let broker_path = broker_ids(r, "ConsumerInfo.brokerPath")?;
            if r.bool("ConsumerInfo.additionalPredicate")? {
                // Set by brokers in a network, never by clients.
                let ty = r.u8("ConsumerInfo.additionalPredicate")?;
                return Err(DecodeError::UnexpectedType {
                    what: "ConsumerInfo.additionalPredicate",
                    ty,
                });
            }
            let network_subscription = r.bool("ConsumerInfo.networkSubscription")?;
            let optimized_acknowledge = r.bool("ConsumerInfo.optimizedAcknowledge")?;
            let no_range_acks = r.bool("ConsumerInfo.noRangeAcks")?;
            if r.bool("ConsumerInfo.networkConsumerPath")? {
                let n = r.i16("ConsumerInfo.networkConsumerPath")?;
                if n < 0 {
                    return Err(DecodeError::BadLength(
                        "ConsumerInfo.networkConsumerPath",
                        n as i64,
                    ));
                }
                for _ in 0..n {
                    consumer_id(r, "ConsumerInfo.networkConsumerPath")?;
                }
            }
            Body::ConsumerInfo(Box::new(ConsumerInfo {
                consumer_id: id,
                browser,
                destination,
                prefetch,
                maximum_pending_message_limit,
                dispatch_async,
                selector,
                client_id,
                subscription_name,
                no_local,
                exclusive,
                retroactive,
                priority,
                broker_path,
                network_subscription,
                optimized_acknowledge,
                no_range_acks,
            }))
        }
        TRANSACTION_INFO => Body::TransactionInfo(Box::new(TransactionInfo {
            connection_id: connection_id(r, "TransactionInfo.connectionId")?,
            transaction_id: transaction_id(r, "TransactionInfo.transactionId")?,
            kind: r.u8("TransactionInfo.type")?,
        })),
        DESTINATION_INFO => Body::DestinationInfo(Box::new(destination_info_fields(r)?)),
        REMOVE_SUBSCRIPTION_INFO => {
            Body::RemoveSubscriptionInfo(Box::new(RemoveSubscriptionInfo {
                connection_id: connection_id(r, "RemoveSubscriptionInfo.connectionId")?,
                subscription_name: r.opt_string("RemoveSubscriptionInfo.subcriptionName")?,
                client_id: r.opt_string("RemoveSubscriptionInfo.clientId")?,
            }))
        }
        KEEP_ALIVE_INFO => Body::KeepAliveInfo,
        SHUTDOWN_INFO => Body::ShutdownInfo,
        REMOVE_INFO => {
            let what = "RemoveInfo.objectId";
            let object_id = nested(r, what, |ty, r| {
                Ok(match ty {
                    CONNECTION_ID => ObjectId::Connection(r.opt_string(what)?.unwrap_or_default()),
                    SESSION_ID => ObjectId::Session(session_id_fields(r)?),
                    CONSUMER_ID => ObjectId::Consumer(consumer_id_fields(r)?),
                    PRODUCER_ID => ObjectId::Producer(producer_id_fields(r)?),
                    ty => return Err(DecodeError::UnexpectedType { what, ty }),
                })
            })?
            .ok_or(DecodeError::Truncated(what))?;
            Body::RemoveInfo(Box::new(RemoveInfo {
                object_id,
                last_delivered_sequence_id: r.i64("RemoveInfo.lastDeliveredSequenceId")?,
            }))
        }
        CONTROL_COMMAND => Body::ControlCommand(r.opt_string("ControlCommand.command")?),
        FLUSH_COMMAND => Body::FlushCommand,
        CONNECTION_ERROR => Body::ConnectionError {
            exception: throwable(r, f, 0)?,
            connection_id: connection_id(r, "ConnectionError.connectionId")?,
        },
        CONSUMER_CONTROL => Body::ConsumerControl(Box::new(ConsumerControl {
            destination: destination(r, "ConsumerControl.destination")?,
            close: r.bool("ConsumerControl.close")?,
            consumer_id: consumer_id(r, "ConsumerControl.consumerId")?,
            prefetch: r.i32("ConsumerControl.prefetch")?,
            flush: r.bool("ConsumerControl.flush")?,
            start: r.bool("ConsumerControl.start")?,
            stop: r.bool("ConsumerControl.stop")?,
        })),
        CONNECTION_CONTROL => Body::ConnectionControl(Box::new(ConnectionControl {
            close: r.bool("ConnectionControl.close")?,
            exit: r.bool("ConnectionControl.exit")?,
            fault_tolerant: r.bool("ConnectionControl.faultTolerant")?,
            resume: r.bool("ConnectionControl.resume")?,
            suspend: r.bool("ConnectionControl.suspend")?,
            connected_brokers: r.opt_string("ConnectionControl.connectedBrokers")?,
            reconnect_to: r.opt_string("ConnectionControl.reconnectTo")?,
            rebalance: r.bool("ConnectionControl.rebalanceConnection")?,
            token: r.opt_bytes("ConnectionControl.token")?,
        })),
        PRODUCER_ACK => Body::ProducerAck(ProducerAck {
            producer_id: producer_id(r, "ProducerAck.producerId")?,
            size: r.i32("ProducerAck.size")?,
        }),
        MESSAGE_PULL => Body::MessagePull(Box::new(MessagePull {
            consumer_id: consumer_id(r, "MessagePull.consumerId")?,
            destination: destination(r, "MessagePull.destination")?,
            timeout: r.i64("MessagePull.timeout")?,
            correlation_id: r.opt_string("MessagePull.correlationId")?,
            message_id: message_id(r, f, "MessagePull.messageId")?,
        })),
        MESSAGE_DISPATCH => Body::MessageDispatch(MessageDispatch {
            consumer_id: consumer_id(r, "MessageDispatch.consumerId")?,
            destination: destination(r, "MessageDispatch.destination")?,
            message: nested(r, "MessageDispatch.message", |ty, r| {
                if !(MESSAGE..=BLOB_MESSAGE).contains(&ty) {
                    return Err(DecodeError::UnexpectedType {
                        what: "MessageDispatch.message",
                        ty,
                    });
                }
                r.i32("command id")?;
                r.bool("response required")?;
                message_fields(ty, r, f).map(Box::new)
            })?,
            redelivery_counter: r.i32("MessageDispatch.redeliveryCounter")?,
        }),
        MESSAGE_ACK => Body::MessageAck(Box::new(MessageAck {
            destination: destination(r, "MessageAck.destination")?,
            transaction_id: transaction_id(r, "MessageAck.transactionId")?,
            consumer_id: consumer_id(r, "MessageAck.consumerId")?,
            ack_type: r.u8("MessageAck.ackType")?,
            first_message_id: message_id(r, f, "MessageAck.firstMessageId")?,
            last_message_id: message_id(r, f, "MessageAck.lastMessageId")?,
            message_count: r.i32("MessageAck.messageCount")?,
            poison_cause: throwable(r, f, 0)?,
        })),
        MESSAGE..=BLOB_MESSAGE => Body::Message(Box::new(message_fields(ty, r, f)?)),
        RESPONSE => Body::Response {
            correlation_id: r.i32("Response.correlationId")?,
        },
        EXCEPTION_RESPONSE => Body::ExceptionResponse {
            correlation_id: r.i32("Response.correlationId")?,
            exception: throwable(r, f, 0)?,
        },
        INTEGER_RESPONSE => Body::IntegerResponse {
            correlation_id: r.i32("Response.correlationId")?,
            result: r.i32("IntegerResponse.result")?,
        },
        // Known to ActiveMQ but not to this broker (network bridges, journal records,
        // partial commands...): skip the fields, the frame says where the command ends.
        other if other < 100 => {
            let rest = r.remaining();
            r.bytes(rest, "unknown command")?;
            Body::Unknown(other)
        }
        other => return Err(DecodeError::UnknownCommand(other)),
    };
    finish(
        r,
        Command {
            command_id,
            response_required,
            body,
        },
    )
}

fn finish(r: &Reader, c: Command) -> Result<Command, DecodeError> {
    if r.remaining() > 0 {
        return Err(DecodeError::Trailing(r.remaining()));
    }
    Ok(c)
}

// ---- writing -------------------------------------------------------------------------

fn put_connection_id(out: &mut BytesMut, id: Option<&str>) {
    put_bool(out, id.is_some());
    if let Some(id) = id {
        out.put_u8(types::CONNECTION_ID);
        put_opt_string(out, Some(id));
    }
}

fn put_session_id_fields(out: &mut BytesMut, id: &SessionId) {
    put_opt_string(out, Some(&id.connection));
    out.put_i64(id.value);
}

fn put_producer_id_fields(out: &mut BytesMut, id: &ProducerId) {
    put_opt_string(out, Some(&id.connection));
    out.put_i64(id.value);
    out.put_i64(id.session);
}

fn put_consumer_id_fields(out: &mut BytesMut, id: &ConsumerId) {
    put_opt_string(out, Some(&id.connection));
    out.put_i64(id.session);
    out.put_i64(id.value);
}

fn put_producer_id(out: &mut BytesMut, id: Option<&ProducerId>) {
    put_bool(out, id.is_some());
    if let Some(id) = id {
        out.put_u8(types::PRODUCER_ID);
        put_producer_id_fields(out, id);
    }
}

fn put_consumer_id(out: &mut BytesMut, id: Option<&ConsumerId>) {
    put_bool(out, id.is_some());
    if let Some(id) = id {
        out.put_u8(types::CONSUMER_ID);
        put_consumer_id_fields(out, id);
    }
}

/// Writes an optional destination as a nested structure.
pub fn put_destination(out: &mut BytesMut, d: Option<&Destination>) {
    put_bool(out, d.is_some());
    if let Some(d) = d {
        out.put_u8(d.type_byte());
        put_opt_string(out, Some(d.name()));
    }
}

fn put_message_id(out: &mut BytesMut, f: &Format, id: Option<&MessageId>) {
    put_bool(out, id.is_some());
    if let Some(id) = id {
        out.put_u8(types::MESSAGE_ID);
        if f.version >= 10 {
            put_opt_string(out, id.text_view.as_deref());
        }
        put_producer_id(out, id.producer.as_ref());
        out.put_i64(id.producer_seq);
        out.put_i64(id.broker_seq);
    }
}

fn put_transaction_id(out: &mut BytesMut, id: Option<&TransactionId>) {
    put_bool(out, id.is_some());
    match id {
        None => {}
        Some(TransactionId::Local { value, connection }) => {
            out.put_u8(types::LOCAL_TRANSACTION_ID);
            out.put_i64(*value);
            put_connection_id(out, connection.as_deref());
        }
        Some(TransactionId::Xa {
            format,
            global,
            branch,
        }) => {
            out.put_u8(types::XA_TRANSACTION_ID);
            out.put_i32(*format);
            put_opt_bytes(out, global.as_deref());
            put_opt_bytes(out, branch.as_deref());
        }
    }
}

fn put_broker_ids(out: &mut BytesMut, ids: &[ByteString]) {
    put_bool(out, !ids.is_empty());
    if !ids.is_empty() {
        out.put_i16(ids.len() as i16);
        for id in ids {
            out.put_u8(1);
            out.put_u8(types::BROKER_ID);
            put_opt_string(out, Some(id));
        }
    }
}

fn put_throwable(out: &mut BytesMut, f: &Format, t: Option<&Throwable>) {
    put_bool(out, t.is_some());
    if let Some(t) = t {
        put_opt_string(out, t.class.as_deref());
        put_opt_string(out, t.message.as_deref());
        if f.stack_trace {
            out.put_i16(0);
            put_bool(out, false);
        }
    }
}

fn put_broker_info_fields(out: &mut BytesMut, b: &BrokerInfo) {
    put_bool(out, b.broker_id.is_some());
    if let Some(id) = &b.broker_id {
        out.put_u8(types::BROKER_ID);
        put_opt_string(out, Some(id));
    }
    put_opt_string(out, b.broker_url.as_deref());
    put_bool(out, !b.peers.is_empty());
    if !b.peers.is_empty() {
        out.put_i16(b.peers.len() as i16);
        for p in &b.peers {
            out.put_u8(1);
            out.put_u8(types::BROKER_INFO);
            out.put_i32(0);
            put_bool(out, false);
            put_broker_info_fields(out, p);
        }
    }
    put_opt_string(out, b.broker_name.as_deref());
    put_bool(out, b.slave_broker);
    put_bool(out, b.master_broker);
    put_bool(out, b.fault_tolerant);
    put_bool(out, b.duplex);
    put_bool(out, b.network);
    out.put_i64(b.connection_id);
    put_opt_string(out, b.upload_url.as_deref());
    put_opt_string(out, b.network_properties.as_deref());
}

fn put_destination_info_fields(out: &mut BytesMut, d: &DestinationInfo) {
    put_connection_id(out, d.connection_id.as_deref());
    put_destination(out, d.destination.as_ref());
    out.put_u8(d.operation);
    out.put_i64(d.timeout);
    put_broker_ids(out, &d.broker_path);
}

fn put_message_fields(out: &mut BytesMut, f: &Format, m: &Message) {
    put_producer_id(out, m.producer_id.as_ref());
    put_destination(out, m.destination.as_ref());
    put_transaction_id(out, m.transaction_id.as_ref());
    put_destination(out, m.original_destination.as_ref());
    put_message_id(out, f, m.message_id.as_ref());
    put_transaction_id(out, m.original_transaction_id.as_ref());
    put_opt_string(out, m.group_id.as_deref());
    out.put_i32(m.group_seq);
    put_opt_string(out, m.correlation_id.as_deref());
    put_bool(out, m.persistent);
    out.put_i64(m.expiration);
    out.put_i8(m.priority);
    put_destination(out, m.reply_to.as_ref());
    out.put_i64(m.timestamp);
    put_opt_string(out, m.jms_type.as_deref());
    put_opt_bytes(out, m.content.as_deref());
    put_opt_bytes(out, m.properties.as_deref());
    put_bool(out, m.data_structure.is_some());
    if let Some(ds) = &m.data_structure {
        let DataStructure::DestinationInfo(d) = &**ds;
        out.put_u8(types::DESTINATION_INFO);
        out.put_i32(0);
        put_bool(out, false);
        put_destination_info_fields(out, d);
    }
    put_consumer_id(out, m.target_consumer_id.as_ref());
    put_bool(out, m.compressed);
    out.put_i32(m.redelivery_counter);
    put_broker_ids(out, &m.broker_path);
    out.put_i64(m.arrival);
    put_opt_string(out, m.user_id.as_deref());
    put_bool(out, m.received_by_df_bridge);
    put_bool(out, m.droppable);
    put_broker_ids(out, &m.cluster);
    out.put_i64(m.broker_in_time);
    out.put_i64(m.broker_out_time);
    if f.version >= 10 {
        put_bool(out, m.jmsx_group_first_for_consumer);
    }
}

/// Appends the command's type byte and fields (no size prefix).
pub fn write_command(out: &mut BytesMut, f: &Format, c: &Command) {
    out.put_u8(c.body.type_byte());
    if let Body::WireFormatInfo(w) = &c.body {
        out.put_slice(b"ActiveMQ");
        out.put_i32(w.version);
        let mut props = BytesMut::new();
        primitive::write_map(
            &mut props,
            w.properties
                .iter()
                .map(|(k, v)| (&**k, v))
                .collect::<Vec<_>>()
                .into_iter(),
        );
        put_opt_bytes(out, Some(&props));
        return;
    }
    out.put_i32(c.command_id);
    put_bool(out, c.response_required);
    match &c.body {
        Body::WireFormatInfo(_) | Body::Unknown(_) => {}
        Body::BrokerInfo(b) => put_broker_info_fields(out, b),
        Body::ConnectionInfo(i) => {
            put_connection_id(out, i.connection_id.as_deref());
            put_opt_string(out, i.client_id.as_deref());
            put_opt_string(out, i.password.as_deref());
            put_opt_string(out, i.user_name.as_deref());
            put_broker_ids(out, &i.broker_path);
            put_bool(out, i.broker_master_connector);
            put_bool(out, i.manageable);
            put_bool(out, i.client_master);
            put_bool(out, i.fault_tolerant);
            put_bool(out, i.failover_reconnect);
            put_opt_string(out, i.client_ip.as_deref());
        }
        Body::SessionInfo(id) => {
            put_bool(out, true);
            out.put_u8(types::SESSION_ID);
            put_session_id_fields(out, id);
        }
        Body::ProducerInfo(p) => {
            put_producer_id(out, Some(&p.producer_id));
            put_destination(out, p.destination.as_ref());
            put_broker_ids(out, &p.broker_path);
            put_bool(out, p.dispatch_async);
            out.put_i32(p.window_size);
        }
        Body::ConsumerInfo(c) => {
            put_consumer_id(out, Some(&c.consumer_id));
            put_bool(out, c.browser);
            put_destination(out, c.destination.as_ref());
            out.put_i32(c.prefetch);
            out.put_i32(c.maximum_pending_message_limit);
            put_bool(out, c.dispatch_async);
            put_opt_string(out, c.selector.as_deref());
            if f.version >= 10 {
                put_opt_string(out, c.client_id.as_deref());
            }
            put_opt_string(out, c.subscription_name.as_deref());
            put_bool(out, c.no_local);
            put_bool(out, c.exclusive);
            put_bool(out, c.retroactive);
            out.put_i8(c.priority);
            put_broker_ids(out, &c.broker_path);
            put_bool(out, false); // additionalPredicate
            put_bool(out, c.network_subscription);
            put_bool(out, c.optimized_acknowledge);
            put_bool(out, c.no_range_acks);
            put_bool(out, false); // networkConsumerPath
        }
        Body::TransactionInfo(t) => {
            put_connection_id(out, t.connection_id.as_deref());
            put_transaction_id(out, t.transaction_id.as_ref());
            out.put_u8(t.kind);
        }
        Body::DestinationInfo(d) => put_destination_info_fields(out, d),
        Body::RemoveSubscriptionInfo(s) => {
            put_connection_id(out, s.connection_id.as_deref());
            put_opt_string(out, s.subscription_name.as_deref());
            put_opt_string(out, s.client_id.as_deref());
        }
        Body::KeepAliveInfo | Body::ShutdownInfo | Body::FlushCommand => {}
        Body::RemoveInfo(ri) => {
            put_bool(out, true);
            match &ri.object_id {
                ObjectId::Connection(c) => {
                    out.put_u8(types::CONNECTION_ID);
                    put_opt_string(out, Some(c));
                }
                ObjectId::Session(s) => {
                    out.put_u8(types::SESSION_ID);
                    put_session_id_fields(out, s);
                }
                ObjectId::Consumer(c) => {
                    out.put_u8(types::CONSUMER_ID);
                    put_consumer_id_fields(out, c);
                }
                ObjectId::Producer(p) => {
                    out.put_u8(types::PRODUCER_ID);
                    put_producer_id_fields(out, p);
                }
            }
            out.put_i64(ri.last_delivered_sequence_id);
        }
        Body::ControlCommand(c) => put_opt_string(out, c.as_deref()),
        Body::ConnectionError {
            exception,
            connection_id,
        } => {
            put_throwable(out, f, exception.as_ref());
            put_connection_id(out, connection_id.as_deref());
        }
        Body::ConsumerControl(c) => {
            put_destination(out, c.destination.as_ref());
            put_bool(out, c.close);
            put_consumer_id(out, c.consumer_id.as_ref());
            out.put_i32(c.prefetch);
            put_bool(out, c.flush);
            put_bool(out, c.start);
            put_bool(out, c.stop);
        }
        Body::ConnectionControl(c) => {
            put_bool(out, c.close);
            put_bool(out, c.exit);
            put_bool(out, c.fault_tolerant);
            put_bool(out, c.resume);
            put_bool(out, c.suspend);
            put_opt_string(out, c.connected_brokers.as_deref());
            put_opt_string(out, c.reconnect_to.as_deref());
            put_bool(out, c.rebalance);
            put_opt_bytes(out, c.token.as_deref());
        }
        Body::ProducerAck(a) => {
            put_producer_id(out, a.producer_id.as_ref());
            out.put_i32(a.size);
        }
        Body::MessagePull(p) => {
            put_consumer_id(out, p.consumer_id.as_ref());
            put_destination(out, p.destination.as_ref());
            out.put_i64(p.timeout);
            put_opt_string(out, p.correlation_id.as_deref());
            put_message_id(out, f, p.message_id.as_ref());
        }
        Body::MessageDispatch(d) => {
            put_consumer_id(out, d.consumer_id.as_ref());
            put_destination(out, d.destination.as_ref());
            put_bool(out, d.message.is_some());
            if let Some(m) = &d.message {
                out.put_u8(m.kind);
                out.put_i32(0);
                put_bool(out, false);
                put_message_fields(out, f, m);
            }
            out.put_i32(d.redelivery_counter);
        }
        Body::MessageAck(a) => {
            put_destination(out, a.destination.as_ref());
            put_transaction_id(out, a.transaction_id.as_ref());
            put_consumer_id(out, a.consumer_id.as_ref());
            out.put_u8(a.ack_type);
            put_message_id(out, f, a.first_message_id.as_ref());
            put_message_id(out, f, a.last_message_id.as_ref());
            out.put_i32(a.message_count);
            put_throwable(out, f, a.poison_cause.as_ref());
        }
        Body::Message(m) => put_message_fields(out, f, m),
        Body::Response { correlation_id } => out.put_i32(*correlation_id),
        Body::ExceptionResponse {
            correlation_id,
            exception,
        } => {
            out.put_i32(*correlation_id);
            put_throwable(out, f, exception.as_ref());
        }
        Body::IntegerResponse {
            correlation_id,
            result,
        } => {
            out.put_i32(*correlation_id);
            out.put_i32(*result);
        }
    }
}
