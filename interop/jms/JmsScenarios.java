// JMS scenarios against ferromq with the real ActiveMQ 5.x client (Debian's
// libactivemq-java). One JVM runs every scenario and prints "PASS name" or
// "FAIL name: why" per scenario; the exit status is the number of failures.
// Usage: java -cp ... JmsScenarios <openwire-port> <stomp-port> [scenario...]

import java.io.*;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import javax.jms.*;
import org.apache.activemq.ActiveMQConnection;
import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.RedeliveryPolicy;

public class JmsScenarios {
    static int port;
    static int stompPort;
    static final long WAIT = 5000;

    interface Scenario { void run() throws Exception; }

    static ActiveMQConnectionFactory factory() {
        return factory("tcp://127.0.0.1:" + port);
    }

    /// `url` with the loose, uncached encoding the broker speaks.
    static ActiveMQConnectionFactory factory(String url) {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(
            url + (url.contains("?") ? "&" : "?") + "wireFormat.tightEncodingEnabled=false&wireFormat.cacheEnabled=false");
        f.setUserName("guest");
        f.setPassword("guest");
        f.setTrustAllPackages(true);
        return f;
    }

    static Connection connect(String clientId) throws JMSException {
        Connection c = factory().createConnection();
        if (clientId != null) c.setClientID(clientId);
        c.start();
        return c;
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static void eq(Object want, Object got, String what) {
        if (!Objects.equals(want, got)) throw new AssertionError(what + ": want <" + want + "> got <" + got + ">");
    }

    static String unique(String base) {
        return base + "." + UUID.randomUUID().toString().substring(0, 8);
    }

    /// OpenWire over TLS: the broker's generated certificate is trusted through the
    /// JVM's trust store (the harness imports it with keytool), and the host name checked.
    static void sslSendReceive() throws Exception {
        int sslPort = Integer.getInteger("ferromq.sslPort");
        Connection c = factory("ssl://127.0.0.1:" + sslPort).createConnection();
        try {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.ssl"));
            s.createProducer(q).send(s.createTextMessage("over tls"), DeliveryMode.PERSISTENT, 4, 0);
            TextMessage m = (TextMessage) s.createConsumer(q).receive(WAIT);
            check(m != null, "message received over TLS");
            eq("over tls", m.getText(), "text");
        } finally { c.close(); }
    }

    static void queueSendReceive() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.q"));
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 10; i++) {
                TextMessage m = s.createTextMessage("hello " + i);
                m.setJMSCorrelationID("corr-" + i);
                p.send(m, i % 2 == 0 ? DeliveryMode.PERSISTENT : DeliveryMode.NON_PERSISTENT, 4, 0);
            }
            MessageConsumer mc = s.createConsumer(q);
            for (int i = 0; i < 10; i++) {
                TextMessage m = (TextMessage) mc.receive(WAIT);
                check(m != null, "message " + i + " received");
                eq("hello " + i, m.getText(), "text");
                eq("corr-" + i, m.getJMSCorrelationID(), "correlation id");
                eq(i % 2 == 0 ? DeliveryMode.PERSISTENT : DeliveryMode.NON_PERSISTENT, m.getJMSDeliveryMode(), "delivery mode");
                eq(q, m.getJMSDestination(), "destination");
                check(m.getJMSMessageID() != null, "message id");
            }
            check(mc.receiveNoWait() == null, "queue drained");
        } finally { c.close(); }
    }

    static void messageTypes() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.types"));
            MessageProducer p = s.createProducer(q);
            TextMessage t = s.createTextMessage("héllo € 😀 \u0000 end");
            t.setBooleanProperty("b", true);
            t.setByteProperty("y", (byte) -3);
            t.setShortProperty("s", (short) -300);
            t.setIntProperty("i", 1 << 20);
            t.setLongProperty("l", -(1L << 40));
            t.setFloatProperty("f", 1.5f);
            t.setDoubleProperty("d", 2.25);
            t.setStringProperty("str", "väl");
            t.setJMSType("my-type");
            t.setJMSReplyTo(s.createQueue("reply.here"));
            p.send(t);
            BytesMessage b = s.createBytesMessage();
            b.writeBytes(new byte[] {0, 1, 2, (byte) 255});
            p.send(b);
            MapMessage m = s.createMapMessage();
            m.setString("name", "x");
            m.setInt("n", 7);
            m.setBytes("raw", new byte[] {9, 8});
            m.setDouble("pi", 3.5);
            p.send(m);
            StreamMessage st = s.createStreamMessage();
            st.writeInt(42);
            st.writeString("two");
            st.writeBoolean(true);
            p.send(st);
            ObjectMessage o = s.createObjectMessage(new ArrayList<>(Arrays.asList("a", "b")));
            p.send(o);
            p.send(s.createMessage());
            MessageConsumer mc = s.createConsumer(q);
            TextMessage rt = (TextMessage) mc.receive(WAIT);
            eq("héllo € 😀 \u0000 end", rt.getText(), "text");
            eq(true, rt.getBooleanProperty("b"), "boolean");
            eq((byte) -3, rt.getByteProperty("y"), "byte");
            eq((short) -300, rt.getShortProperty("s"), "short");
            eq(1 << 20, rt.getIntProperty("i"), "int");
            eq(-(1L << 40), rt.getLongProperty("l"), "long");
            eq(1.5f, rt.getFloatProperty("f"), "float");
            eq(2.25, rt.getDoubleProperty("d"), "double");
            eq("väl", rt.getStringProperty("str"), "string");
            eq("my-type", rt.getJMSType(), "type");
            eq(s.createQueue("reply.here"), rt.getJMSReplyTo(), "reply-to");
            BytesMessage rb = (BytesMessage) mc.receive(WAIT);
            byte[] buf = new byte[10];
            eq(4, rb.readBytes(buf), "bytes length");
            eq((byte) 255, buf[3], "byte value");
            MapMessage rm = (MapMessage) mc.receive(WAIT);
            eq("x", rm.getString("name"), "map string");
            eq(7, rm.getInt("n"), "map int");
            eq(3.5, rm.getDouble("pi"), "map double");
            eq(2, rm.getBytes("raw").length, "map bytes");
            StreamMessage rs = (StreamMessage) mc.receive(WAIT);
            eq(42, rs.readInt(), "stream int");
            eq("two", rs.readString(), "stream string");
            eq(true, rs.readBoolean(), "stream boolean");
            ObjectMessage ro = (ObjectMessage) mc.receive(WAIT);
            eq(Arrays.asList("a", "b"), ro.getObject(), "object");
            Message plain = mc.receive(WAIT);
            check(plain != null && !(plain instanceof TextMessage) && !(plain instanceof BytesMessage), "plain message");
        } finally { c.close(); }
    }

    static void compressed() throws Exception {
        ActiveMQConnectionFactory f = factory();
        f.setUseCompression(true);
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.zip"));
            MessageProducer p = s.createProducer(q);
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < 2000; i++) sb.append("compress me ");
            p.send(s.createTextMessage(sb.toString()));
            BytesMessage b = s.createBytesMessage();
            b.writeBytes(sb.toString().getBytes(StandardCharsets.UTF_8));
            p.send(b);
            MessageConsumer mc = s.createConsumer(q);
            eq(sb.toString(), ((TextMessage) mc.receive(WAIT)).getText(), "compressed text");
            BytesMessage rb = (BytesMessage) mc.receive(WAIT);
            eq((long) sb.length(), rb.getBodyLength(), "compressed bytes length");
        } finally { c.close(); }
    }

    static void topicPubSub() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            String base = unique("jms.t");
            Topic t = s.createTopic(base + ".news");
            MessageConsumer a = s.createConsumer(t);
            MessageConsumer b = s.createConsumer(t);
            MessageConsumer wild = s.createConsumer(s.createTopic(base + ".>"));
            MessageConsumer star = s.createConsumer(s.createTopic(base + ".*"));
            MessageProducer p = s.createProducer(t);
            for (int i = 0; i < 3; i++) p.send(s.createTextMessage("n" + i));
            for (MessageConsumer mc : new MessageConsumer[] {a, b, wild, star}) {
                for (int i = 0; i < 3; i++) {
                    TextMessage m = (TextMessage) mc.receive(WAIT);
                    check(m != null, "subscriber got message " + i);
                    eq("n" + i, m.getText(), "topic text");
                    eq(t, m.getJMSDestination(), "topic destination");
                }
            }
        } finally { c.close(); }
    }

    static void durableSubscriber() throws Exception {
        String cid = unique("durable-client");
        Topic t;
        {
            Connection c = connect(cid);
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            t = s.createTopic(unique("jms.durable"));
            s.createDurableSubscriber(t, "sub1").close();
            c.close();
        }
        {
            Connection c = connect(null);
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(t);
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            p.send(s.createTextMessage("while away"));
            c.close();
        }
        {
            Connection c = connect(cid);
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TopicSubscriber sub = s.createDurableSubscriber(t, "sub1");
            TextMessage m = (TextMessage) sub.receive(WAIT);
            check(m != null, "durable subscriber got the message sent while it was away");
            eq("while away", m.getText(), "text");
            sub.close();
            s.unsubscribe("sub1");
            c.close();
        }
    }

    /** Message groups: two consumers compete for one queue; each group's messages
     *  (JMSXGroupID) all go to one of them, in order, and the first of each carries
     *  JMSXGroupFirstForConsumer. */
    static void messageGroups() throws Exception {
        Connection c = connect(null);
        try {
            c.start();
            String name = unique("jms.groups");
            Session s1 = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Session s2 = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer[] consumers = {
                s1.createConsumer(s1.createQueue(name)), s2.createConsumer(s2.createQueue(name))};
            Session ps = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = ps.createProducer(ps.createQueue(name));
            String[] groups = {"g1", "g2", "g3"};
            int perGroup = 10;
            for (int i = 0; i < perGroup; i++) {
                for (String g : groups) {
                    TextMessage m = ps.createTextMessage(g + ":" + i);
                    m.setStringProperty("JMSXGroupID", g);
                    m.setIntProperty("JMSXGroupSeq", i + 1);
                    p.send(m);
                }
            }
            Map<String, Integer> owner = new HashMap<>();
            Map<String, Integer> next = new HashMap<>();
            int received = 0;
            long deadline = System.currentTimeMillis() + WAIT;
            while (received < groups.length * perGroup && System.currentTimeMillis() < deadline) {
                for (int k = 0; k < consumers.length; k++) {
                    TextMessage m = (TextMessage) consumers[k].receive(50);
                    if (m == null) continue;
                    received++;
                    String g = m.getStringProperty("JMSXGroupID");
                    eq(g, m.getText().split(":")[0], "group property of " + m.getText());
                    Integer was = owner.putIfAbsent(g, k);
                    check(was == null || was == k, "group " + g + " went to consumers " + was + " and " + k);
                    int i = next.getOrDefault(g, 0);
                    eq(g + ":" + i, m.getText(), "order within " + g);
                    next.put(g, i + 1);
                    eq(i == 0, m.getBooleanProperty("JMSXGroupFirstForConsumer"), "first-for-consumer flag of " + m.getText());
                }
            }
            eq(groups.length * perGroup, received, "messages received");
        } finally { c.close(); }
    }

    static void queueSelectors() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.sel"));
            MessageProducer p = s.createProducer(q);
            String[] colors = {"red", "blue", "green", "red", "blue"};
            for (int i = 0; i < colors.length; i++) {
                TextMessage m = s.createTextMessage(colors[i] + i);
                m.setStringProperty("color", colors[i]);
                m.setIntProperty("n", i);
                m.setJMSType(i % 2 == 0 ? "even" : "odd");
                p.send(m, DeliveryMode.NON_PERSISTENT, i == 4 ? 9 : 4, 0);
            }
            MessageConsumer red = s.createConsumer(q, "color = 'red' AND n BETWEEN 0 AND 10");
            MessageConsumer high = s.createConsumer(q, "JMSPriority > 5 OR (JMSType = 'even' AND color LIKE 'g%')");
            for (String want : new String[] {"red0", "red3"}) {
                TextMessage m = (TextMessage) red.receive(WAIT);
                check(m != null, "red consumer got " + want);
                eq(want, m.getText(), "selected text");
            }
            check(red.receiveNoWait() == null, "red consumer gets only reds");
            for (String want : new String[] {"green2", "blue4"}) {
                TextMessage m = (TextMessage) high.receive(WAIT);
                check(m != null, "second consumer got " + want);
                eq(want, m.getText(), "selected text");
            }
            // What nobody selected waits for another consumer.
            MessageConsumer rest = s.createConsumer(q, "color IS NOT NULL AND color NOT IN ('red', 'green')");
            TextMessage m = (TextMessage) rest.receive(WAIT);
            check(m != null, "the left-over blue message");
            eq("blue1", m.getText(), "left-over");
            try {
                s.createConsumer(q, "color = = 'x'");
                throw new AssertionError("a malformed selector was accepted");
            } catch (InvalidSelectorException expected) {
                // The client checks selectors itself too; the broker's own refusal (the same
                // exception class) is covered by the core and STOMP tests.
            }
            // The session still works after the refusal.
            p.send(s.createTextMessage("after"));
            MessageConsumer any = s.createConsumer(q);
            eq("after", ((TextMessage) any.receive(WAIT)).getText(), "after a refused selector");
        } finally { c.close(); }
    }

    static void topicAndDurableSelectors() throws Exception {
        String cid = unique("sel-client");
        Topic t;
        {
            Connection c = connect(cid);
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            t = s.createTopic(unique("jms.selt"));
            MessageConsumer big = s.createConsumer(t, "size > 10");
            MessageConsumer all = s.createConsumer(t);
            s.createDurableSubscriber(t, "bigs", "size > 10", false).close();
            MessageProducer p = s.createProducer(t);
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int size : new int[] {5, 50, 7, 70}) {
                TextMessage m = s.createTextMessage("size" + size);
                m.setIntProperty("size", size);
                p.send(m);
            }
            eq("size50", ((TextMessage) big.receive(WAIT)).getText(), "topic selector");
            eq("size70", ((TextMessage) big.receive(WAIT)).getText(), "topic selector");
            for (int size : new int[] {5, 50, 7, 70}) {
                eq("size" + size, ((TextMessage) all.receive(WAIT)).getText(), "unfiltered subscriber");
            }
            check(big.receiveNoWait() == null, "no small message for the selective subscriber");
            c.close();
        }
        {
            Connection c = connect(cid);
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TopicSubscriber sub = s.createDurableSubscriber(t, "bigs", "size > 10", false);
            eq("size50", ((TextMessage) sub.receive(WAIT)).getText(), "durable selector kept");
            eq("size70", ((TextMessage) sub.receive(WAIT)).getText(), "durable selector kept");
            check(sub.receive(200) == null, "only selected messages were stored for the durable subscriber");
            sub.close();
            // Coming back with another selector is a new subscription.
            MessageProducer p = s.createProducer(t);
            TextMessage m = s.createTextMessage("size99");
            m.setIntProperty("size", 99);
            p.send(m);
            sub = s.createDurableSubscriber(t, "bigs", "size < 10", false);
            check(sub.receive(200) == null, "the new subscription starts empty");
            m = s.createTextMessage("size3");
            m.setIntProperty("size", 3);
            p.send(m);
            eq("size3", ((TextMessage) sub.receive(WAIT)).getText(), "new selector applies");
            sub.close();
            s.unsubscribe("bigs");
            c.close();
        }
    }

    // The test harness (tests/openwire.rs) acts on "SYNC <action> <args>" lines and answers
    // "GO" or "GO <result>" on stdin: restarting the broker, or being the AMQP / MQTT peer.
    static final BufferedReader harness = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

    static String sync(String action) throws IOException {
        System.out.println("SYNC " + action);
        System.out.flush();
        String line = harness.readLine();
        if (line == null || !line.startsWith("GO")) throw new AssertionError("harness did not answer '" + action + "': " + line);
        return line.length() > 3 ? line.substring(3) : "";
    }

    static void peerOk(String action) throws IOException {
        String r = sync(action);
        eq("ok", r, "harness check '" + action + "'");
    }

    static void failover() throws Exception {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(
            "failover:(tcp://127.0.0.1:" + port + "?wireFormat.tightEncodingEnabled=false)"
            + "?initialReconnectDelay=50&maxReconnectDelay=500&useExponentialBackOff=true&maxReconnectAttempts=400&timeout=20000");
        f.setUserName("guest");
        f.setPassword("guest");
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.failover"));
            MessageProducer p = s.createProducer(q);
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < 20; i++) p.send(s.createTextMessage("before-" + i));
            Map<String, Integer> seen = new LinkedHashMap<>();
            MessageConsumer mc = s.createConsumer(q);
            for (int i = 0; i < 10; i++) {
                TextMessage m = (TextMessage) mc.receive(WAIT);
                check(m != null, "before restart: message " + i);
                eq("before-" + i, m.getText(), "order before restart");
                seen.merge(m.getText(), 1, Integer::sum);
            }
            sync("restart");
            // Sends block until the transport has reconnected; then everything carries on.
            for (int i = 0; i < 20; i++) p.send(s.createTextMessage("after-" + i));
            List<String> want = new ArrayList<>();
            for (int i = 10; i < 20; i++) want.add("before-" + i);
            for (int i = 0; i < 20; i++) want.add("after-" + i);
            List<String> got = new ArrayList<>();
            while (got.size() < want.size()) {
                TextMessage m = (TextMessage) mc.receive(20000);
                check(m != null, "after restart: got " + got);
                if (seen.containsKey(m.getText())) {
                    // Acked just before the restart but the ack did not reach the journal:
                    // redelivered, and flagged so.
                    check(m.getJMSRedelivered(), "duplicate " + m.getText() + " is flagged redelivered");
                    continue;
                }
                got.add(m.getText());
            }
            eq(want, got, "persistent messages survived the restart, in order, none lost");
            check(mc.receive(200) == null, "nothing extra");
        } finally { c.close(); }
    }

    static void amqpInterop() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            // AMQP -> JMS.
            String in = unique("xp_in");
            Queue qin = s.createQueue(in);
            MessageConsumer mc = s.createConsumer(qin);
            sync("amqp_send " + in);
            Message m = mc.receive(WAIT);
            check(m instanceof TextMessage, "AMQP text/plain arrives as a TextMessage, got " + m);
            eq("from amqp", ((TextMessage) m).getText(), "text");
            eq("red", m.getStringProperty("color"), "string header -> property");
            eq(7, m.getIntProperty("n"), "int header -> property");
            eq("c-amqp", m.getJMSCorrelationID(), "correlation id");
            eq("t-amqp", m.getJMSType(), "type");
            eq(6, m.getJMSPriority(), "priority");
            eq(DeliveryMode.PERSISTENT, m.getJMSDeliveryMode(), "delivery mode 2 -> PERSISTENT");
            Message b = mc.receive(WAIT);
            check(b instanceof BytesMessage, "AMQP octet-stream arrives as a BytesMessage, got " + b);
            byte[] raw = new byte[3];
            eq(3, ((BytesMessage) b).readBytes(raw), "bytes length");
            eq("[0, 1, 2]", Arrays.toString(raw), "bytes");
            // JMS -> AMQP.
            String out = unique("xp_out");
            MessageProducer p = s.createProducer(s.createQueue(out));
            TextMessage t = s.createTextMessage("from jms ü");
            t.setStringProperty("color", "blue");
            t.setIntProperty("n", 42);
            t.setJMSCorrelationID("c-jms");
            t.setJMSType("t-jms");
            p.send(t, DeliveryMode.PERSISTENT, 3, 0);
            BytesMessage bm = s.createBytesMessage();
            bm.writeBytes(new byte[] {9, 8, 7});
            p.send(bm);
            peerOk("amqp_recv " + out);
        } finally { c.close(); }
    }

    static void mqttInterop() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            String base = "xp_" + UUID.randomUUID().toString().substring(0, 8);
            // MQTT -> JMS: topic a/b is topic://a.b, the payload a BytesMessage.
            Topic t = s.createTopic(base + ".news");
            MessageConsumer mc = s.createConsumer(t);
            MessageConsumer wild = s.createConsumer(s.createTopic(base + ".>"));
            sync("mqtt_send " + base + "/news");
            for (MessageConsumer each : new MessageConsumer[] {mc, wild}) {
                Message m = each.receive(WAIT);
                check(m instanceof BytesMessage, "an MQTT publish is a BytesMessage, got " + m);
                BytesMessage bm = (BytesMessage) m;
                byte[] raw = new byte[(int) bm.getBodyLength()];
                bm.readBytes(raw);
                eq("from mqtt", new String(raw, StandardCharsets.UTF_8), "payload");
                eq(t, m.getJMSDestination(), "topic with '/' -> '.'");
                eq(DeliveryMode.PERSISTENT, m.getJMSDeliveryMode(), "QoS 1 -> PERSISTENT");
            }
            // JMS -> MQTT: topic://a.b reaches an MQTT subscriber of a/b and a/#.
            sync("mqtt_sub " + base + "/reply");
            MessageProducer p = s.createProducer(s.createTopic(base + ".reply"));
            p.send(s.createTextMessage("from jms ü"));
            BytesMessage bm = s.createBytesMessage();
            bm.writeBytes(new byte[] {1, 2, 3});
            p.send(bm);
            peerOk("mqtt_recv " + base + "/reply");
        } finally { c.close(); }
    }

    static void clientAcknowledge() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.cack"));
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 3; i++) p.send(s.createTextMessage("m" + i));
            MessageConsumer mc = s.createConsumer(q);
            Message m0 = mc.receive(WAIT);
            Message m1 = mc.receive(WAIT);
            check(m0 != null && m1 != null, "two received");
            s.recover();
            Message again = mc.receive(WAIT);
            eq("m0", ((TextMessage) again).getText(), "recovered redelivery");
            check(again.getJMSRedelivered(), "redelivered flag");
            mc.receive(WAIT);
            Message m2 = mc.receive(WAIT);
            eq("m2", ((TextMessage) m2).getText(), "third");
            m2.acknowledge();
            mc.close();
            MessageConsumer after = s.createConsumer(q);
            check(after.receive(500) == null, "acknowledged messages are gone");
        } finally { c.close(); }
    }

    static void individualAcknowledge() throws Exception {
        Queue q;
        {
            Connection c = connect(null);
            Session s = c.createSession(false, ActiveMQSessionConsts.INDIVIDUAL_ACKNOWLEDGE);
            q = s.createQueue(unique("jms.iack"));
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 3; i++) p.send(s.createTextMessage("m" + i));
            MessageConsumer mc = s.createConsumer(q);
            mc.receive(WAIT);
            Message m1 = mc.receive(WAIT);
            mc.receive(WAIT);
            m1.acknowledge();
            c.close();
        }
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer mc = s.createConsumer(q);
            List<String> got = new ArrayList<>();
            for (Message m; (m = mc.receive(1000)) != null; ) got.add(((TextMessage) m).getText());
            Collections.sort(got);
            eq(Arrays.asList("m0", "m2"), got, "only the individually acked one is gone");
        } finally { c.close(); }
    }

    static void transactions() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(true, Session.SESSION_TRANSACTED);
            Queue q = s.createQueue(unique("jms.tx"));
            MessageProducer p = s.createProducer(q);
            p.send(s.createTextMessage("rolled back"));
            s.rollback();
            p.send(s.createTextMessage("committed"));
            s.commit();
            MessageConsumer mc = s.createConsumer(q);
            TextMessage m = (TextMessage) mc.receive(WAIT);
            eq("committed", m.getText(), "only the committed send arrives");
            s.rollback();
            TextMessage again = (TextMessage) mc.receive(WAIT);
            eq("committed", again.getText(), "rolled-back receive is redelivered");
            check(again.getJMSRedelivered(), "redelivered");
            s.commit();
            check(mc.receive(500) == null, "committed receive is gone");
            s.commit();
        } finally { c.close(); }
    }

    static void deadLetter() throws Exception {
        ActiveMQConnectionFactory f = factory();
        RedeliveryPolicy rp = new RedeliveryPolicy();
        rp.setMaximumRedeliveries(2);
        rp.setInitialRedeliveryDelay(0);
        rp.setRedeliveryDelay(0);
        f.setRedeliveryPolicy(rp);
        Connection c = f.createConnection();
        c.start();
        try {
            Session s = c.createSession(true, Session.SESSION_TRANSACTED);
            Queue q = s.createQueue(unique("jms.poison"));
            s.createProducer(q).send(s.createTextMessage("poison"));
            s.commit();
            MessageConsumer mc = s.createConsumer(q);
            for (int i = 0; i < 3; i++) {
                Message m = mc.receive(WAIT);
                check(m != null, "delivery " + i);
                s.rollback();
            }
            check(mc.receive(500) == null, "no more deliveries after the maximum");
            mc.close();
            s.commit();
            Session s2 = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer dlq = s2.createConsumer(s2.createQueue("ActiveMQ.DLQ"));
            boolean found = false;
            for (Message m; (m = dlq.receive(2000)) != null; ) {
                if (m instanceof TextMessage && "poison".equals(((TextMessage) m).getText())) found = true;
            }
            check(found, "poison message is in ActiveMQ.DLQ");
        } finally { c.close(); }
    }

    static void ttlExpiry() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.ttl"));
            MessageProducer p = s.createProducer(q);
            p.send(s.createTextMessage("short"), DeliveryMode.NON_PERSISTENT, 4, 50);
            p.send(s.createTextMessage("long"), DeliveryMode.NON_PERSISTENT, 4, 600000);
            Thread.sleep(300);
            MessageConsumer mc = s.createConsumer(q);
            TextMessage m = (TextMessage) mc.receive(WAIT);
            eq("long", m.getText(), "expired message is not delivered");
            check(m.getJMSExpiration() > System.currentTimeMillis(), "expiration is in the future");
        } finally { c.close(); }
    }

    static void requestReply() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue service = s.createQueue(unique("jms.service"));
            MessageConsumer server = s.createConsumer(service);
            TemporaryQueue reply = s.createTemporaryQueue();
            MessageConsumer replies = s.createConsumer(reply);
            TextMessage req = s.createTextMessage("ping");
            req.setJMSReplyTo(reply);
            req.setJMSCorrelationID("r1");
            s.createProducer(service).send(req);
            Message got = server.receive(WAIT);
            eq(reply, got.getJMSReplyTo(), "reply-to is the temporary queue");
            TextMessage resp = s.createTextMessage("pong");
            resp.setJMSCorrelationID(got.getJMSCorrelationID());
            s.createProducer(got.getJMSReplyTo()).send(resp);
            TextMessage r = (TextMessage) replies.receive(WAIT);
            eq("pong", r.getText(), "reply");
            eq("r1", r.getJMSCorrelationID(), "correlation");
            replies.close();
            reply.delete();
            TemporaryTopic tt = s.createTemporaryTopic();
            MessageConsumer tc = s.createConsumer(tt);
            s.createProducer(tt).send(s.createTextMessage("temp topic"));
            eq("temp topic", ((TextMessage) tc.receive(WAIT)).getText(), "temporary topic");
        } finally { c.close(); }
    }

    /// Request/reply across connections. The 5.x client watches the temporary-destination
    /// advisories (ActiveMQ.Advisory.TempQueue / TempTopic) and refuses to send to a
    /// temporary destination it has not heard of ("Cannot publish to a deleted
    /// Destination"). A responder connected before the requester made its temporary
    /// queue and topic hears of them live; one connected after gets them replayed when
    /// its advisory consumer subscribes; a plain consumer of the advisory topic sees
    /// DestinationInfo add and remove; once the requester's connection closes, both
    /// responders' clients treat the temporary queue as deleted, and the broker refuses
    /// a send to it from a client that does not watch advisories.
    static void replyAcrossConnections() throws Exception {
        Connection requester = connect(null);
        Connection early = connect(null);
        Connection late = null;
        Connection blind = null;
        try {
            Session rs = requester.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue service = rs.createQueue(unique("jms.service"));
            TemporaryQueue replyQ = rs.createTemporaryQueue();
            TemporaryTopic replyT = rs.createTemporaryTopic();
            MessageConsumer qReplies = rs.createConsumer(replyQ);
            MessageConsumer tReplies = rs.createConsumer(replyT);
            MessageProducer requests = rs.createProducer(service);
            late = connect(null);
            int n = 0;
            for (Connection responder : new Connection[] {early, late}) {
                Session ss = responder.createSession(false, Session.AUTO_ACKNOWLEDGE);
                MessageConsumer server = ss.createConsumer(service);
                for (Destination replyTo : new Destination[] {replyQ, replyT}) {
                    n++;
                    TextMessage req = rs.createTextMessage("ping " + n);
                    req.setJMSReplyTo(replyTo);
                    req.setJMSCorrelationID("c" + n);
                    requests.send(req);
                    Message got = server.receive(WAIT);
                    check(got != null, "request " + n + " received");
                    eq(replyTo, got.getJMSReplyTo(), "reply-to");
                    TextMessage resp = ss.createTextMessage("pong " + n);
                    resp.setJMSCorrelationID(got.getJMSCorrelationID());
                    ss.createProducer(got.getJMSReplyTo()).send(resp);
                    TextMessage r = (TextMessage) (replyTo == replyQ ? qReplies : tReplies).receive(WAIT);
                    check(r != null, "reply " + n + " received");
                    eq("pong " + n, r.getText(), "reply");
                    eq("c" + n, r.getJMSCorrelationID(), "correlation");
                }
                server.close();
            }
            Session ls = late.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer adv = ls.createConsumer(ls.createTopic("ActiveMQ.Advisory.TempQueue"));
            check(advisoryFor(adv, replyQ, org.apache.activemq.command.DestinationInfo.ADD_OPERATION_TYPE),
                "the live temporary queue replayed to a new advisory consumer");
            requester.close();
            check(advisoryFor(adv, replyQ, org.apache.activemq.command.DestinationInfo.REMOVE_OPERATION_TYPE),
                "remove advisory once the requester's connection closed");
            for (Connection responder : new Connection[] {early, late}) {
                ActiveMQConnection ac = (ActiveMQConnection) responder;
                long until = System.currentTimeMillis() + WAIT;
                while (!(ac.isDeleted((org.apache.activemq.command.ActiveMQDestination) replyQ)
                        && ac.isDeleted((org.apache.activemq.command.ActiveMQDestination) replyT))
                        && System.currentTimeMillis() < until) {
                    Thread.sleep(10);
                }
                Session ss = responder.createSession(false, Session.AUTO_ACKNOWLEDGE);
                try {
                    ss.createProducer(replyQ).send(ss.createTextMessage("too late"));
                    check(false, "send to the deleted temporary queue refused");
                } catch (InvalidDestinationException e) {
                    check(String.valueOf(e.getMessage()).contains("deleted"), "refused as deleted: " + e);
                }
            }
            ActiveMQConnectionFactory f = factory();
            f.setWatchTopicAdvisories(false);
            blind = f.createConnection();
            blind.start();
            Session bs = blind.createSession(false, Session.AUTO_ACKNOWLEDGE);
            try {
                bs.createProducer(replyQ).send(bs.createTextMessage("too late"), DeliveryMode.PERSISTENT, 4, 0);
                check(false, "the broker refuses a send to the deleted temporary queue");
            } catch (InvalidDestinationException e) {
                check(String.valueOf(e.getMessage()).contains("deleted"), "refused as deleted: " + e);
            }
        } finally {
            requester.close();
            early.close();
            if (late != null) late.close();
            if (blind != null) blind.close();
        }
    }

    /// Reads advisories from `adv` until one says `op` (add 0, remove 1) for `dest`.
    static boolean advisoryFor(MessageConsumer adv, Destination dest, byte op) throws JMSException {
        for (Message m; (m = adv.receive(WAIT)) != null; ) {
            eq("Advisory", m.getJMSType(), "advisory JMSType");
            Object ds = ((org.apache.activemq.command.ActiveMQMessage) m).getDataStructure();
            check(ds instanceof org.apache.activemq.command.DestinationInfo, "advisory carries a DestinationInfo, got " + ds);
            org.apache.activemq.command.DestinationInfo di = (org.apache.activemq.command.DestinationInfo) ds;
            if (di.getDestination().equals(dest) && di.getOperationType() == op) return true;
        }
        return false;
    }

    static void prefetch() throws Exception {
        for (int prefetch : new int[] {0, 1, 5000}) {
            ActiveMQConnectionFactory f = factory();
            f.getPrefetchPolicy().setAll(prefetch);
            Connection c = f.createConnection();
            c.start();
            try {
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                Queue q = s.createQueue(unique("jms.prefetch" + prefetch));
                MessageConsumer mc = s.createConsumer(q);
                check(mc.receiveNoWait() == null, "empty queue, no wait");
                check(mc.receive(200) == null, "empty queue, timed receive");
                MessageProducer p = s.createProducer(q);
                int n = prefetch == 5000 ? 2000 : 20;
                for (int i = 0; i < n; i++) p.send(s.createTextMessage("p" + i));
                for (int i = 0; i < n; i++) {
                    TextMessage m = (TextMessage) mc.receive(WAIT);
                    check(m != null, "prefetch " + prefetch + " message " + i);
                    eq("p" + i, m.getText(), "order");
                }
                check(mc.receiveNoWait() == null || prefetch != 0, "drained");
            } finally { c.close(); }
        }
    }

    static void compositeAndVirtualTopics() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            String a = unique("jms.ca"), b = unique("jms.cb");
            s.createProducer(s.createQueue(a + "," + b)).send(s.createTextMessage("both"));
            eq("both", ((TextMessage) s.createConsumer(s.createQueue(a)).receive(WAIT)).getText(), "composite a");
            eq("both", ((TextMessage) s.createConsumer(s.createQueue(b)).receive(WAIT)).getText(), "composite b");
            String vt = unique("VirtualTopic.Orders");
            MessageConsumer g1 = s.createConsumer(s.createQueue("Consumer.A." + vt));
            MessageConsumer g2 = s.createConsumer(s.createQueue("Consumer.B." + vt));
            s.createProducer(s.createTopic(vt)).send(s.createTextMessage("order"));
            eq("order", ((TextMessage) g1.receive(WAIT)).getText(), "virtual topic group A");
            eq("order", ((TextMessage) g2.receive(WAIT)).getText(), "virtual topic group B");
        } finally { c.close(); }
    }

    static void clientIdUnique() throws Exception {
        String cid = unique("unique-client");
        Connection c = connect(cid);
        try {
            try {
                connect(cid).close();
                throw new AssertionError("a second connection with the same client id was accepted");
            } catch (InvalidClientIDException expected) {
            }
        } finally { c.close(); }
        connect(cid).close();
    }

    static void badCredentials() throws Exception {
        ActiveMQConnectionFactory f = factory();
        f.setPassword("wrong");
        try {
            Connection c = f.createConnection();
            c.start();
            c.close();
            throw new AssertionError("wrong password accepted");
        } catch (JMSSecurityException expected) {
        }
    }

    /** A raw STOMP client: SEND with and without content-length, and a SUBSCRIBE that
     *  receives a JMS TextMessage. */
    static void stompInterop() throws Exception {
        String qname = unique("jms.stomp");
        try (Socket sock = new Socket("127.0.0.1", stompPort)) {
            OutputStream out = sock.getOutputStream();
            InputStream in = sock.getInputStream();
            out.write("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0".getBytes(StandardCharsets.UTF_8));
            readFrame(in);
            out.write(("SEND\ndestination:/queue/" + qname + "\n\ntext body\0").getBytes(StandardCharsets.UTF_8));
            out.write(("SEND\ndestination:/queue/" + qname + "\ncontent-length:3\n\nabc\0").getBytes(StandardCharsets.UTF_8));
            out.flush();
            Connection c = connect(null);
            try {
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                MessageConsumer mc = s.createConsumer(s.createQueue(qname));
                Message m1 = mc.receive(WAIT);
                check(m1 instanceof TextMessage, "STOMP SEND without content-length is a TextMessage, got " + m1);
                eq("text body", ((TextMessage) m1).getText(), "text");
                Message m2 = mc.receive(WAIT);
                check(m2 instanceof BytesMessage, "STOMP SEND with content-length is a BytesMessage, got " + m2);
                eq(3L, ((BytesMessage) m2).getBodyLength(), "bytes length");
                String back = unique("jms.tostomp");
                out.write(("SUBSCRIBE\nid:1\ndestination:/queue/" + back + "\n\n\0").getBytes(StandardCharsets.UTF_8));
                out.flush();
                s.createProducer(s.createQueue(back)).send(s.createTextMessage("from jms"));
                String frame = readFrame(in);
                check(frame.startsWith("MESSAGE"), "STOMP got a MESSAGE: " + frame);
                check(frame.contains("content-type:text/plain"), "text content type: " + frame);
                check(frame.endsWith("\n\nfrom jms"), "UTF-8 body: " + frame);
            } finally { c.close(); }
        }
    }

    static String readFrame(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (int ch; (ch = in.read()) != 0; ) {
            if (ch < 0) throw new EOFException("STOMP connection closed");
            if (b.size() == 0 && ch == '\n') continue;
            b.write(ch);
        }
        return b.toString("UTF-8");
    }

    static final class ActiveMQSessionConsts {
        static final int INDIVIDUAL_ACKNOWLEDGE = org.apache.activemq.ActiveMQSession.INDIVIDUAL_ACKNOWLEDGE;
    }

    /// QueueBrowser: the queue's messages in order, with and without a selector, none
    /// taken; the end of a browse is signalled by the broker.
    static void queueBrowser() throws Exception {
        Connection c = connect(null);
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(unique("jms.browse"));
            MessageProducer p = s.createProducer(q);
            for (int i = 0; i < 5; i++) {
                TextMessage m = s.createTextMessage("b" + i);
                m.setIntProperty("n", i);
                p.send(m, i % 2 == 0 ? DeliveryMode.PERSISTENT : DeliveryMode.NON_PERSISTENT, 4, 0);
            }
            eq(Arrays.asList("b0", "b1", "b2", "b3", "b4"), browse(s.createBrowser(q)), "browsed in order");
            eq(Arrays.asList("b1", "b3"), browse(s.createBrowser(q, "n = 1 OR n = 3")), "browsed with a selector");
            // Browsing took nothing: a consumer still gets all five.
            MessageConsumer mc = s.createConsumer(q);
            for (int i = 0; i < 5; i++) {
                TextMessage m = (TextMessage) mc.receive(WAIT);
                check(m != null, "message " + i + " still there after browsing");
                eq("b" + i, m.getText(), "text");
            }
            check(mc.receiveNoWait() == null, "drained");
            mc.close();
            eq(Collections.emptyList(), browse(s.createBrowser(q)), "an empty queue browses empty");
        } finally { c.close(); }
    }

    static List<String> browse(QueueBrowser b) throws JMSException {
        List<String> seen = new ArrayList<>();
        try {
            for (Enumeration<?> e = b.getEnumeration(); e.hasMoreElements();) {
                seen.add(((TextMessage) e.nextElement()).getText());
            }
        } finally { b.close(); }
        return seen;
    }

    /// Every OpenWire version a 5.x client may negotiate down to: the client is told to
    /// offer 9, 10 or 11 (the broker offers 12; the lower one is used), then sends and
    /// receives every message type once.
    static void olderWireFormats() throws Exception {
        for (int version = 9; version <= 11; version++) {
            Connection c = factory("tcp://127.0.0.1:" + port + "?wireFormat.version=" + version).createConnection();
            try {
                c.start();
                org.apache.activemq.transport.tcp.TcpTransport tcp =
                    ((ActiveMQConnection) c).getTransport().narrow(org.apache.activemq.transport.tcp.TcpTransport.class);
                eq(version, ((org.apache.activemq.openwire.OpenWireFormat) tcp.getWireFormat()).getVersion(),
                    "version the client speaks after negotiation");
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                Queue q = s.createQueue(unique("jms.v" + version));
                MessageProducer p = s.createProducer(q);
                TextMessage t = s.createTextMessage("v" + version);
                t.setStringProperty("k", "text");
                p.send(t, DeliveryMode.PERSISTENT, 4, 0);
                BytesMessage b = s.createBytesMessage();
                b.writeBytes(new byte[] {1, 2, 3});
                p.send(b);
                MapMessage m = s.createMapMessage();
                m.setInt("n", version);
                p.send(m);
                MessageConsumer mc = s.createConsumer(q);
                TextMessage gt = (TextMessage) mc.receive(WAIT);
                check(gt != null, "text message over v" + version);
                eq("v" + version, gt.getText(), "text");
                eq("text", gt.getStringProperty("k"), "property");
                BytesMessage gb = (BytesMessage) mc.receive(WAIT);
                check(gb != null, "bytes message over v" + version);
                eq(3L, gb.getBodyLength(), "bytes length");
                MapMessage gm = (MapMessage) mc.receive(WAIT);
                check(gm != null, "map message over v" + version);
                eq(version, gm.getInt("n"), "map entry");
            } finally { c.close(); }
        }
    }

    /// Inactivity monitoring: with a 1 s maximum inactivity on both sides, an idle
    /// connection lives on KeepAliveInfo for several periods and still works.
    /** Connections idle longer than their inactivity settings allow without keep-alives,
     *  in parallel: 1 s with a 500 ms initial delay, and 2 s with a 2 s initial delay (the
     *  default 10 s / 10 s scaled down: the client's first keep-alive comes a third of a
     *  period after the delay, so a broker that expects one within a period of negotiation
     *  drops it). Either side's monitor would end them without the other's KeepAliveInfo. */
    static void keepAlive() throws Exception {
        String[][] settings = {{"1000", "500"}, {"2000", "2000"}};
        List<Connection> cs = new ArrayList<>();
        final List<String> failures = Collections.synchronizedList(new ArrayList<>());
        try {
            for (String[] st : settings) {
                Connection c = factory("tcp://127.0.0.1:" + port + "?wireFormat.maxInactivityDuration=" + st[0]
                    + "&wireFormat.maxInactivityDurationInitalDelay=" + st[1]).createConnection();
                cs.add(c);
                String name = st[0] + "/" + st[1] + " ms";
                c.setExceptionListener(e -> failures.add(name + ": " + e));
                c.start();
            }
            Thread.sleep(7000);
            check(failures.isEmpty(), "connections alive after 7 idle seconds: " + failures);
            for (Connection c : cs) {
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                Queue q = s.createQueue(unique("jms.keepalive"));
                s.createProducer(q).send(s.createTextMessage("still here"));
                TextMessage m = (TextMessage) s.createConsumer(q).receive(WAIT);
                check(m != null, "message after idling");
                eq("still here", m.getText(), "text");
            }
        } finally { for (Connection c : cs) c.close(); }
    }

    public static void main(String[] args) throws Exception {
        port = Integer.parseInt(args[0]);
        stompPort = Integer.parseInt(args[1]);
        Map<String, Scenario> all = new LinkedHashMap<>();
        all.put("queue_send_receive", JmsScenarios::queueSendReceive);
        all.put("ssl_send_receive", JmsScenarios::sslSendReceive);
        all.put("message_and_property_types", JmsScenarios::messageTypes);
        all.put("compressed_bodies", JmsScenarios::compressed);
        all.put("topic_pub_sub", JmsScenarios::topicPubSub);
        all.put("durable_subscriber", JmsScenarios::durableSubscriber);
        all.put("client_acknowledge", JmsScenarios::clientAcknowledge);
        all.put("individual_acknowledge", JmsScenarios::individualAcknowledge);
        all.put("transactions", JmsScenarios::transactions);
        all.put("dead_letter_queue", JmsScenarios::deadLetter);
        all.put("ttl_expiry", JmsScenarios::ttlExpiry);
        all.put("temp_queue_request_reply", JmsScenarios::requestReply);
        all.put("temp_reply_across_connections", JmsScenarios::replyAcrossConnections);
        all.put("prefetch", JmsScenarios::prefetch);
        all.put("composite_and_virtual_topics", JmsScenarios::compositeAndVirtualTopics);
        all.put("client_id_unique", JmsScenarios::clientIdUnique);
        all.put("bad_credentials", JmsScenarios::badCredentials);
        all.put("stomp_interop", JmsScenarios::stompInterop);
        all.put("queue_selectors", JmsScenarios::queueSelectors);
        all.put("message_groups", JmsScenarios::messageGroups);
        all.put("queue_browser", JmsScenarios::queueBrowser);
        all.put("older_wire_formats", JmsScenarios::olderWireFormats);
        all.put("keep_alive", JmsScenarios::keepAlive);
        all.put("topic_and_durable_selectors", JmsScenarios::topicAndDurableSelectors);
        all.put("amqp_interop", JmsScenarios::amqpInterop);
        all.put("mqtt_interop", JmsScenarios::mqttInterop);
        all.put("failover_across_restart", JmsScenarios::failover);
        List<String> chosen = args.length > 2 ? Arrays.asList(args).subList(2, args.length) : new ArrayList<>(all.keySet());
        int failures = 0;
        for (String name : chosen) {
            Scenario sc = all.get(name);
            if (sc == null) { System.out.println("FAIL " + name + ": no such scenario"); failures++; continue; }
            try {
                sc.run();
                System.out.println("PASS " + name);
            } catch (Throwable t) {
                failures++;
                StringWriter sw = new StringWriter();
                t.printStackTrace(new PrintWriter(sw));
                System.out.println("FAIL " + name + ": " + t + "\n" + sw);
            }
            System.out.flush();
        }
        System.exit(failures);
    }
}
